//! `trove bench mount`: the lazy mount against what a user would do
//! instead (clone, restore, read an ext4 checkout), in one run on one
//! machine, with a node and a git daemon upstream beside it.
//!
//! Every row names its settings (prefetch, passthrough as the kernel
//! granted it, transport, by ref or by commit), has its baseline from the
//! same run, and says whether it met its target (`rows.rs`). Rows:
//! - mount ready, warm node, by ref (the user's default) and by commit,
//!   next to `git clone` and `trove restore` (each mount its own daemon,
//!   `--foreground`); and a mount asked of the data dir's daemon while it
//!   serves another, next to that;
//! - `find` + stat of every file, cold, default settings: blobs fetched;
//! - first reads of small files from the node, and from the local tier
//!   with the page cache dropped (open loop, CO-corrected);
//! - hydrated 4 KiB preads (open loop) and a sequential read, warm;
//! - the whole tree searched cold by 8 readers (the way rg reads; fresh
//!   data dir, default settings), then warm; `grep -r` cold (one reader);
//! - 1,000 random warm open+read+close, p50 and p99; `ls -lR` warm;
//! - the two transports, io_uring and /dev/fuse, side by side on one
//!   hydrated data dir (`mount_transport.rs`);
//! - 50 random first reads with prefetch on and off (`mount_random.rs`);
//! - a hung node: unfetched files read one after another
//!   (`mount_hung.rs`);
//! - writes to the overlay against ext4 (`mount_writes.rs`);
//! - whether the mounted tree equals `git checkout`'s (`diff -rq`);
//! - 32 concurrent first reads of one file: blobs fetched.
//!
//! It drives trove as a user does: the `trove mount` CLI, stock tools on
//! the mount, HTTP stats.

use crate::mount_proc::MountProc;
use crate::mount_repo::{generated_with_big, BIG_PATH};
use crate::node::{work_subdir, BenchNode};
use crate::reads::{differences, find_and_stat, open_loop, random_opens, read_all, read_tree, timed_sh, tree_files};
use crate::report::Latency;
use crate::rows::{ratio, Met, Row, Table};
use crate::steps::{median, Steps};
use crate::upstream::{git, repo_size, Daemon};
use anyhow::{Context, Result};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct MountBench {
    pub trove: PathBuf,
    pub repo: Option<PathBuf>,
    pub files: usize,
    pub total_bytes: u64,
    pub rounds: usize,
    pub work_dir: PathBuf,
    pub out: PathBuf,
    pub keep_page_cache: bool,
    /// First reads per second in the open-loop phases.
    pub first_read_rate: u64,
    /// Preads per second in the hydrated-pread phase.
    pub pread_rate: u64,
}

const HOST: &str = "bench.test";

fn served(node: &BenchNode) -> Result<(u64, u64)> {
    let s = node.stats()?;
    Ok((s["git"]["blobs_served"].as_u64().unwrap_or(0), s["git"]["blob_requests"].as_u64().unwrap_or(0)))
}

/// The median of three runs of a timed step, in seconds.
fn median_of_3(step: impl Fn() -> Result<f64>) -> Result<f64> {
    Ok(crate::steps::median_f(&[step()?, step()?, step()?]))
}

pub fn run(cfg: MountBench) -> Result<PathBuf> {
    let work = work_subdir(&cfg.work_dir, "mount")?;
    let root = work.join("upstream");
    let (name, bare) = match &cfg.repo {
        Some(r) => crate::upstream::real_repo(&work, &root, r)?,
        None => {
            let bare = generated_with_big(&work, &root, cfg.files, cfg.total_bytes)?;
            (format!("gen/{}", bare.file_name().expect("named").to_string_lossy()), bare)
        }
    };
    let (files, pack_bytes) = repo_size(&bare)?;
    let commit = git(&bare, &["rev-parse", "HEAD"])?;
    eprintln!("repo {name}: {files} files at HEAD, {:.0} MB of packs", pack_bytes as f64 / 1e6);

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let _daemon = Daemon::start(&root, port, &work.join("daemon.log"))?;
    let upstream_url = format!("git://127.0.0.1:{port}/{name}");
    let node_dir = work.join("node");
    let _ = std::fs::remove_dir_all(&node_dir);
    std::fs::create_dir_all(&node_dir)?;
    let node =
        BenchNode::start_with(&cfg.trove, &node_dir, &["--upstream", &format!("{HOST}=git://127.0.0.1:{port}")])?;
    let repo = format!("{HOST}/{name}");
    let scratch = work.join("scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let steps = Steps::new(cfg.keep_page_cache);
    // Each mount gets a data dir never used before: ext4 slows inode
    // allocation for a while after a large delete (its recently-deleted
    // scan), so nothing is deleted between timed steps.
    let mounts = work.join(format!("mounts-{}", crate::object::timestamp()));
    let by_commit = |tag: &str, data: &str, extra: &[&str]| -> Result<MountProc> {
        let mut args = vec!["--commit", commit.as_str()];
        args.extend_from_slice(extra);
        MountProc::start(&cfg.trove, &node.url(), &repo, &mounts.join(tag), &mounts.join(data), &args)
    };
    let by_ref = |tag: &str, data: &str| -> Result<MountProc> {
        MountProc::start(&cfg.trove, &node.url(), &repo, &mounts.join(tag), &mounts.join(data), &[])
    };
    let settings =
        |m: &MountProc, prefetch: &str, how: &str| format!("prefetch {prefetch}, {}, by {how}", m.read_path());
    let mut table = Table::default();

    // Warm the node (mirror, tree index), then the baselines and the mount.
    drop(by_commit("warmup", "data-warmup", &["--prefetch", "off"])?);
    drop(by_ref("warmup-ref", "data-warmup-ref")?);
    let checkout = scratch.join("checkout");
    let (mut clone_s, mut restore_s, mut ready_ref, mut ready_commit) = (vec![], vec![], vec![], vec![]);
    let mut ready_settings = String::new();
    for round in 0..cfg.rounds {
        let dst = if round == 0 { checkout.clone() } else { scratch.join(format!("clone{round}")) };
        clone_s.push(steps.clone(&upstream_url, &dst, &[])?);
        restore_s.push(steps.restore(&cfg.trove, &node.url(), &repo, &scratch.join(format!("restore{round}")))?);
        steps.settle()?;
        let m = by_ref(&format!("ready{round}"), &format!("data-ready{round}"))?;
        ready_ref.push(m.ready_after);
        ready_settings = settings(&m, "dir", "ref");
        drop(m);
        steps.settle()?;
        let m = by_commit(&format!("readyc{round}"), &format!("data-readyc{round}"), &[])?;
        ready_commit.push(m.ready_after);
        eprintln!(
            "round {round}: git clone {:.2?}, trove restore {:.2?}, mount ready by ref {:.0?}, by commit {:.0?}",
            clone_s[round], restore_s[round], ready_ref[round], m.ready_after
        );
    }
    let (clone_m, restore_m) = (median(&clone_s), median(&restore_s));
    let (ref_m, commit_m) = (median(&ready_ref), median(&ready_commit));
    let ready_target = 0.1 * (files as f64 / 100_000.0).max(1.0);
    for (how, secs) in [("ref", ref_m), ("commit", commit_m)] {
        table.add(Row {
            what: format!("mount ready by {how}, warm node"),
            settings: ready_settings.replace("by ref", &format!("by {how}")),
            trove: format!("{:.3} s", secs),
            baseline: format!("`git clone` {clone_m:.2} s; `trove restore` {restore_m:.2} s"),
            ratio: format!("{:.0}x / {:.0}x faster", clone_m / secs, restore_m / secs),
            target: format!("<= {ready_target:.2} s (0.1 s per 100k files)"),
            met: Met::of(secs <= ready_target),
        });
    }

    // One daemon, many mounts: a mount of the repo asked of the daemon
    // that already serves another (of the same commit, on the same data
    // dir), against part 1's ready (each mount its own process, above).
    let shared_data = mounts.join("data-shared");
    let shared_run = mounts.join("shared.run");
    let join = |tag: &str| {
        MountProc::join(
            &cfg.trove,
            &node.url(),
            &repo,
            &mounts.join(tag),
            &shared_data,
            &shared_run,
            &["--commit", &commit],
        )
    };
    let first = join("shared-first")?;
    let mut joined = Vec::new();
    let mut joined_settings = String::new();
    for round in 0..cfg.rounds {
        steps.settle()?;
        let m = join(&format!("shared{round}"))?;
        joined.push(m.ready_after);
        joined_settings = format!("by commit, {}; the daemon serves 1 other mount", m.read_path());
        eprintln!("round {round}: mount ready with the daemon serving another: {:.0?}", m.ready_after);
    }
    drop(first);
    let joined_m = median(&joined);
    table.add(Row::within(
        "mount ready when the daemon already serves another mount".into(),
        joined_settings,
        format!("{joined_m:.3} s"),
        format!("part 1's ready (own process, by commit) {commit_m:.3} s"),
        joined_m,
        commit_m,
        1.0,
    ));

    // Metadata: find + stat, cold, default settings, fresh mount vs ext4.
    let meta = by_ref("meta", "data-meta")?;
    steps.settle()?;
    let (before, _) = served(&node)?;
    let find_mount = find_and_stat(&meta.dir)?;
    let (after, _) = served(&node)?;
    let meta_blobs = after - before;
    steps.settle()?;
    let find_ext4 = find_and_stat(&checkout)?;
    table.add(Row {
        what: "`find` + stat of every file, cold".into(),
        settings: settings(&meta, "dir (default)", "ref"),
        trove: format!("{find_mount:.2} s, {meta_blobs} blobs fetched"),
        baseline: format!("ext4 cold {find_ext4:.2} s"),
        ratio: ratio(find_mount, find_ext4),
        target: "<= 1.2x, 0 blobs".into(),
        met: Met::of(find_mount <= 1.2 * find_ext4 && meta_blobs == 0),
    });
    drop(meta);

    // First reads: from the node, then from the local tier (a remount,
    // page cache dropped).
    let all_files = tree_files(&checkout)?;
    let regular: Vec<String> = all_files
        .iter()
        .filter(|f| std::fs::symlink_metadata(checkout.join(f)).is_ok_and(|m| m.is_file()))
        .cloned()
        .collect();
    let small: Vec<&String> = regular
        .iter()
        .filter(|f| std::fs::metadata(checkout.join(f)).is_ok_and(|m| m.len() <= 64 << 10))
        .take(2000)
        .collect();
    let first = by_commit("first", "data-first", &["--prefetch", "off"])?;
    let first_settings = settings(&first, "off", "commit");
    let fetched = open_loop(cfg.first_read_rate, small.len(), 8, |i| read_all(&first.dir.join(small[i])).map(|_| ()))?;
    drop(first);
    steps.settle()?;
    let local = by_commit("local", "data-first", &["--prefetch", "off"])?;
    let local_first =
        open_loop(cfg.first_read_rate, small.len(), 8, |i| read_all(&local.dir.join(small[i])).map(|_| ()))?;
    let (lf, ll) = (Latency::of(&fetched), Latency::of(&local_first));
    let open_loop_what = format!("{} files at {}/s, open loop, 8 threads", small.len(), cfg.first_read_rate);
    table.add(Row {
        what: format!("first read of a small file from the node ({open_loop_what})"),
        settings: first_settings.clone(),
        trove: format!("p50 {} us, p99 {} us, p99.9 {} us", lf.p50_us, lf.p99_us, lf.p99_9_us),
        baseline: String::new(),
        ratio: String::new(),
        target: "p99 <= 5 ms".into(),
        met: Met::of(lf.p99_us <= 5000),
    });
    table.add(Row {
        what: format!("first read from the local tier, page cache dropped ({open_loop_what})"),
        settings: first_settings,
        trove: format!("p50 {} us, p99 {} us, p99.9 {} us", ll.p50_us, ll.p99_us, ll.p99_9_us),
        baseline: String::new(),
        ratio: String::new(),
        target: "p99 <= 1 ms".into(),
        met: Met::of(ll.p99_us <= 1000),
    });

    // Hydrated 4 KiB preads, page cache warm on both sides.
    let target = small.iter().find(|f| std::fs::metadata(checkout.join(f)).is_ok_and(|m| m.len() >= 4096)).copied();
    let target = target.context("no small file of at least 4 KiB to pread")?;
    let (pm, pe) = (std::fs::File::open(local.dir.join(target))?, std::fs::File::open(checkout.join(target))?);
    let mut buf = vec![0u8; 4096];
    pm.read_exact_at(&mut buf, 0)?;
    pe.read_exact_at(&mut buf, 0)?;
    let n = (cfg.pread_rate * 5) as usize;
    let pread = |f: &std::fs::File| {
        open_loop(cfg.pread_rate, n, 1, |_| {
            let mut b = [0u8; 4096];
            f.read_exact_at(&mut b, 0)?;
            Ok(())
        })
    };
    let pread_mount = pread(&pm)?;
    let pread_ext4 = pread(&pe)?;
    drop((pm, pe));
    let (lpm, lpe) = (Latency::of(&pread_mount), Latency::of(&pread_ext4));
    let local_settings = settings(&local, "off", "commit");
    table.add(Row {
        what: format!("hydrated 4 KiB pread ({}/s, open loop)", cfg.pread_rate),
        settings: local_settings.clone(),
        trove: format!("p50 {} us, p99 {} us", lpm.p50_us, lpm.p99_us),
        baseline: format!("ext4 p50 {} us, p99 {} us", lpe.p50_us, lpe.p99_us),
        ratio: ratio(lpm.p50_us as f64, lpe.p50_us.max(1) as f64),
        target: "p50 <= 1.2x".into(),
        met: Met::of(lpm.p50_us as f64 <= 1.2 * lpe.p50_us.max(1) as f64),
    });

    // Sequential read of the largest file, hydrated and warm, against ext4 warm.
    let big = if checkout.join(BIG_PATH).exists() { Some(BIG_PATH.to_owned()) } else { None };
    let big = big.or_else(|| {
        regular.iter().max_by_key(|f| std::fs::metadata(checkout.join(f)).map(|m| m.len()).unwrap_or(0)).cloned()
    });
    let big = big.context("no files")?;
    read_all(&local.dir.join(&big))?; // hydrate
    read_all(&local.dir.join(&big))?; // warm
    read_all(&checkout.join(&big))?;
    let seq = |p: &Path| -> Result<(f64, u64)> {
        let mut best = f64::MAX;
        let mut bytes = 0;
        for _ in 0..3 {
            let t = Instant::now();
            bytes = read_all(p)?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok((bytes as f64 / best, bytes))
    };
    let (seq_mount, big_bytes) = seq(&local.dir.join(&big))?;
    let (seq_ext4, _) = seq(&checkout.join(&big))?;
    table.add(Row {
        what: format!("sequential read, hydrated {:.1} MiB file, warm", big_bytes as f64 / (1 << 20) as f64),
        settings: local_settings,
        trove: format!("{:.2} GB/s", seq_mount / 1e9),
        baseline: format!("ext4 {:.2} GB/s", seq_ext4 / 1e9),
        ratio: ratio(seq_mount, seq_ext4),
        target: ">= 0.9x".into(),
        met: Met::of(seq_mount >= 0.9 * seq_ext4),
    });
    drop(local);

    // The whole tree searched cold by 8 readers (rg's way), fresh data
    // dir, default settings; then warm; against ext4 the same way.
    let (s0, r0) = served(&node)?;
    let whole = by_ref("whole", "data-whole")?;
    let whole_settings = settings(&whole, "dir (default)", "ref");
    steps.settle()?;
    let cold_mount = read_tree(&whole.dir, &regular, 8)?;
    let (s1, r1) = served(&node)?;
    steps.settle()?;
    let cold_ext4 = read_tree(&checkout, &regular, 8)?;
    table.add(Row {
        what: format!("whole-tree search, 8 readers, cold ({} files)", regular.len()),
        settings: whole_settings.clone(),
        trove: format!("{cold_mount:.2} s; {} blobs in {} requests", s1 - s0, r1 - r0),
        baseline: format!("ext4 cold {cold_ext4:.2} s"),
        ratio: ratio(cold_mount, cold_ext4),
        target: "<= 1.5x".into(),
        met: Met::of(cold_mount <= 1.5 * cold_ext4),
    });
    let diffs = differences(&whole.dir, &checkout)?;
    table.add(Row {
        what: "tree equals `git checkout` (`diff -rq`, every file)".into(),
        settings: whole_settings.clone(),
        trove: format!("{diffs} paths differ"),
        baseline: "`git clone` of the same commit".into(),
        ratio: String::new(),
        target: "0".into(),
        met: Met::of(diffs == 0),
    });
    // Warm: everything hydrated and in the page cache on both sides.
    read_tree(&whole.dir, &regular, 8)?;
    read_tree(&checkout, &regular, 8)?;
    let warm_mount = median_of_3(|| read_tree(&whole.dir, &regular, 8))?;
    let warm_ext4 = median_of_3(|| read_tree(&checkout, &regular, 8))?;
    table.add(Row {
        what: "whole-tree search, 8 readers, warm (median of 3)".into(),
        settings: whole_settings.clone(),
        trove: format!("{warm_mount:.3} s"),
        baseline: format!("ext4 warm {warm_ext4:.3} s"),
        ratio: ratio(warm_mount, warm_ext4),
        target: "<= 1.1x".into(),
        met: Met::of(warm_mount <= 1.1 * warm_ext4),
    });
    // Microseconds at a quantile of a histogram of nanoseconds.
    let us = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let opens_mount = random_opens(&whole.dir, &regular, 1000)?;
    let opens_ext4 = random_opens(&checkout, &regular, 1000)?;
    for (pct, q) in [("p50", 0.5), ("p99", 0.99)] {
        let (m, e) = (us(&opens_mount, q), us(&opens_ext4, q));
        table.add(Row {
            what: format!("open+read+close of 1,000 random files, warm, {pct}"),
            settings: whole_settings.clone(),
            trove: format!("{m:.1} us"),
            baseline: format!("ext4 {e:.1} us"),
            ratio: ratio(m, e),
            target: "<= 1.2x".into(),
            met: Met::of(m <= 1.2 * e),
        });
    }
    timed_sh(&whole.dir, "ls -lR > /dev/null")?;
    timed_sh(&checkout, "ls -lR > /dev/null")?;
    let ls_mount = median_of_3(|| timed_sh(&whole.dir, "ls -lR > /dev/null"))?;
    let ls_ext4 = median_of_3(|| timed_sh(&checkout, "ls -lR > /dev/null"))?;
    table.add(Row {
        what: "`ls -lR`, warm (median of 3)".into(),
        settings: whole_settings,
        trove: format!("{ls_mount:.3} s"),
        baseline: format!("ext4 warm {ls_ext4:.3} s"),
        ratio: ratio(ls_mount, ls_ext4),
        target: "<= 1.2x".into(),
        met: Met::of(ls_mount <= 1.2 * ls_ext4),
    });
    drop(whole);
    let transport = crate::mount_transport::Ctx {
        trove: &cfg.trove,
        node: node.url(),
        repo: &repo,
        mounts: &mounts,
        data: "data-whole",
        checkout: &checkout,
        files: &regular,
        steps,
    };
    for row in crate::mount_transport::rows(&transport)? {
        table.add(row);
    }
    // The same warm opens on the passthrough read path (same data dir,
    // everything hydrated), so the default is chosen on figures.
    let pt_args = ["--read-path", "passthrough"];
    let pt = MountProc::start(
        &cfg.trove,
        &node.url(),
        &repo,
        &mounts.join("whole-pt"),
        &mounts.join("data-whole"),
        &pt_args,
    )?;
    random_opens(&pt.dir, &regular, 1000)?;
    let opens_pt = random_opens(&pt.dir, &regular, 1000)?;
    table.add(Row {
        what: "open+read+close of 1,000 random files, warm, p50 / p99, other read path".into(),
        settings: settings(&pt, "dir (default)", "ref"),
        trove: format!("{:.1} us / {:.1} us", us(&opens_pt, 0.5), us(&opens_pt, 0.99)),
        baseline: format!("ext4 {:.1} us / {:.1} us", us(&opens_ext4, 0.5), us(&opens_ext4, 0.99)),
        ratio: ratio(us(&opens_pt, 0.5), us(&opens_ext4, 0.5)),
        target: "- (the default read path is the faster)".into(),
        met: Met::NoTarget,
    });
    drop(pt);

    // `grep -r`, cold: one reader walking the tree, fresh data dir.
    const GREP: &str = "grep -rI --exclude-dir=.git -c zq9xj7wv4 . > /dev/null";
    let (g0, q0) = served(&node)?;
    let grep = by_ref("grep", "data-grep")?;
    let grep_settings = settings(&grep, "dir (default)", "ref");
    steps.settle()?;
    let grep_mount = timed_sh(&grep.dir, GREP)?;
    let (g1, q1) = served(&node)?;
    drop(grep);
    steps.settle()?;
    let grep_ext4 = timed_sh(&checkout, GREP)?;
    table.add(Row {
        what: "`grep -r`, cold (one reader)".into(),
        settings: grep_settings,
        trove: format!("{grep_mount:.2} s; {} blobs in {} requests", g1 - g0, q1 - q0),
        baseline: format!("ext4 cold {grep_ext4:.2} s"),
        ratio: ratio(grep_mount, grep_ext4),
        target: "<= 2x".into(),
        met: Met::of(grep_mount <= 2.0 * grep_ext4),
    });

    let writes = crate::mount_writes::Ctx {
        trove: &cfg.trove,
        node: node.url(),
        repo: &repo,
        commit: &commit,
        mounts: &mounts,
        scratch: &scratch,
        checkout: &checkout,
        files: &regular,
    };
    for row in crate::mount_writes::rows(&writes)? {
        table.add(row);
    }

    let blobs = || served(&node).map(|(blobs, _)| blobs);
    table.add(crate::mount_random::row(&cfg.trove, &node, &repo, &mounts, &regular, blobs)?);
    if let Some(pid) = node.pid() {
        table.add(crate::mount_hung::row(&cfg.trove, &node.url(), pid, &repo, &mounts, &regular)?);
    }

    // 32 concurrent first reads of one file.
    let one = by_commit("one", "data-one", &["--prefetch", "off"])?;
    let one_settings = settings(&one, "off", "commit");
    let (b0, _) = served(&node)?;
    let gate = std::sync::Barrier::new(32);
    std::thread::scope(|s| {
        for _ in 0..32 {
            s.spawn(|| {
                gate.wait();
                let _ = read_all(&one.dir.join(target));
            });
        }
    });
    let (b1, _) = served(&node)?;
    drop(one);
    table.add(Row {
        what: "32 concurrent first reads of one file".into(),
        settings: one_settings,
        trove: format!("{} blob(s) fetched", b1 - b0),
        baseline: String::new(),
        ratio: String::new(),
        target: "1".into(),
        met: Met::of(b1 - b0 == 1),
    });
    let _ = std::fs::remove_dir_all(&scratch);
    let _ = std::fs::remove_dir_all(&mounts);

    let json = serde_json::json!({
        "bench": "mount",
        "repo": { "name": name, "files": files, "pack_bytes": pack_bytes, "commit": commit },
        "rounds": cfg.rounds,
        "page_cache_dropped_before_each_step": steps.drop_caches,
        "rows": table.json(),
        "mount_ready_by_ref_seconds": ready_ref.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
        "mount_ready_by_commit_seconds": ready_commit.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
        "mount_ready_daemon_serving_another_seconds": joined.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
        "git_clone_seconds": clone_s.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
        "trove_restore_seconds": restore_s.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
        "first_read_from_node_us": lf,
        "first_read_from_local_tier_us": ll,
        "hydrated_pread_4k_us": { "mount": lpm, "ext4": lpe, "rate_per_s": cfg.pread_rate },
        "random_opens_us": {
            "mount": { "p50": us(&opens_mount, 0.5), "p99": us(&opens_mount, 0.99) },
            "ext4": { "p50": us(&opens_ext4, 0.5), "p99": us(&opens_ext4, 0.99) },
        },
    });
    let md = format!(
        "# trove bench mount\n\nRepo `{name}`: {files} files, {:.0} MB of packs, commit {}. Node and mount on this machine; \
         medians of {} rounds where timed repeatedly. {}\n\n{}",
        pack_bytes as f64 / 1e6,
        &commit[..12],
        cfg.rounds,
        steps.describe(),
        table.markdown(),
    );
    let svg = crate::report::svg(
        "trove mount: first reads and hydrated preads (us, by percentile)",
        &[
            ("first read, node", crate::report::curve(&fetched)),
            ("first read, local", crate::report::curve(&local_first)),
            ("pread 4K, mount", crate::report::curve(&pread_mount)),
            ("pread 4K, ext4", crate::report::curve(&pread_ext4)),
        ],
    );
    let dir = cfg.out.join(format!("{}-mount", crate::object::timestamp()));
    crate::report::write_all(&dir, &json, &md, &svg)?;
    println!("{md}\nwritten to {}", dir.display());
    Ok(dir)
}
