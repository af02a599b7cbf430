//! `trove bench mount`: the lazy mount against what a user would do
//! instead (clone, restore, read an ext4 checkout), in one run on one
//! machine, with a node and a git daemon upstream beside it.
//!
//! Measured (each row's baseline in the same run):
//! - mount ready (spawn to "ready", warm node), next to `git clone` and
//!   `trove restore` of the same commit;
//! - `find -type f` plus a stat of every file, on a fresh mount (kernel
//!   cache empty, `--prefetch off`) and on the ext4 checkout, with the
//!   node's blobs served counted (target: 0);
//! - first reads of small files: fetched from the node, and already in
//!   the local tier (a remount on the same data dir). Open loop at a fixed
//!   rate, latency from each read's scheduled start (CO-corrected);
//! - 4 KiB preads of a hydrated file, open loop, against the same preads
//!   of the ext4 checkout's copy (page cache warm on both);
//! - a sequential read of a hydrated 256 MiB file, warm, against ext4;
//! - the whole tree read cold by 4 readers (a fresh mount, prefetch on),
//!   against ext4 cold, with the node's blob requests counted;
//! - 32 concurrent first reads of one file: blobs fetched.
//!
//! It drives trove as a user does: the `trove mount` CLI, stock reads of
//! the mount, HTTP stats. The generated repo adds one 256 MiB file to the
//! `trove bench git` generator's tree (written into the bare repo with
//! plumbing, so the tree is not regenerated).

use crate::node::{work_subdir, BenchNode};
use crate::reads::{find_and_stat, open_loop, read_all, read_tree, tree_files};
use crate::steps::{median, Steps};
use crate::upstream::{generate, git, repo_size, serve_ready, Daemon};
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use std::io::BufRead;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
const BIG_BYTES: usize = 256 << 20;
const BIG_PATH: &str = "assets/big.bin";

/// A `trove mount` child; SIGTERM on drop, then `umount -l` if needed.
struct MountProc {
    child: Option<Child>,
    dir: PathBuf,
    ready_after: Duration,
}

impl MountProc {
    fn start(trove: &Path, node: &str, repo: &str, dir: &Path, data: &Path, extra: &[&str]) -> Result<MountProc> {
        std::fs::create_dir_all(dir)?;
        let started = Instant::now();
        let mut child = Command::new(trove)
            .args(["mount", repo])
            .arg(dir)
            .args(["--node", node, "--data-dir"])
            .arg(data)
            .args(extra)
            .env("TROVE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let out = child.stdout.take().expect("piped");
        let mut line = String::new();
        std::io::BufReader::new(out).read_line(&mut line)?;
        let ready_after = started.elapsed();
        let m = MountProc { child: Some(child), dir: dir.to_owned(), ready_after };
        if !line.starts_with("ready:") {
            bail!("trove mount did not get ready: {line:?}");
        }
        Ok(m)
    }
}

impl Drop for MountProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
        if std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| m.contains(&*self.dir.to_string_lossy())) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

fn served(node: &BenchNode) -> Result<(u64, u64)> {
    let s = node.stats()?;
    Ok((s["git"]["blobs_served"].as_u64().unwrap_or(0), s["git"]["blob_requests"].as_u64().unwrap_or(0)))
}

/// The generated repo with one 256 MiB file added at `BIG_PATH`.
fn generated_with_big(work: &Path, root: &Path, files: usize, total: u64) -> Result<PathBuf> {
    let bare = root.join(format!("gen/mount-files-{files}-bytes-{total}.git"));
    if bare.exists() {
        return Ok(bare);
    }
    let tmp = bare.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    generate(&work.join("gen-work"), &tmp, files, total)?;
    eprintln!("adding a {} MiB file", BIG_BYTES >> 20);
    let big = work.join("big.bin");
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut data = Vec::with_capacity(BIG_BYTES);
    while data.len() < BIG_BYTES {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        data.extend_from_slice(&rng.to_le_bytes());
    }
    std::fs::write(&big, &data)?;
    drop(data);
    let blob = git(&tmp, &["hash-object", "-w", &big.to_string_lossy()])?;
    let _ = std::fs::remove_file(&big);
    let sub = git_stdin(&tmp, &["mktree"], &format!("100644 blob {blob}\tbig.bin\n"))?;
    let mut root_tree = git(&tmp, &["ls-tree", "HEAD"])?;
    root_tree.push_str(&format!("\n040000 tree {sub}\tassets\n"));
    let tree = git_stdin(&tmp, &["mktree"], &root_tree)?;
    let head = git(&tmp, &["rev-parse", "HEAD"])?;
    let commit = git(&tmp, &["commit-tree", &tree, "-p", &head, "-m", "a large asset"])?;
    git(&tmp, &["update-ref", "HEAD", &commit])?;
    serve_ready(&tmp)?;
    std::fs::rename(&tmp, &bare)?;
    Ok(bare)
}

fn git_stdin(dir: &Path, args: &[&str], input: &str) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("piped").write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "git {args:?} failed");
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
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
    let mounts = work.join("mounts");
    let _ = std::fs::remove_dir_all(&mounts);
    let mount = |tag: &str, data: &str, extra: &[&str]| -> Result<MountProc> {
        let mut args = vec!["--commit", commit.as_str()];
        args.extend_from_slice(extra);
        MountProc::start(&cfg.trove, &node.url(), &repo, &mounts.join(tag), &mounts.join(data), &args)
    };

    // Warm the node (mirror, tree index), then the baselines and the mount.
    drop(mount("warmup", "data-warmup", &["--prefetch", "off"])?);
    let checkout = scratch.join("checkout");
    let mut clone_s = Vec::new();
    let mut restore_s = Vec::new();
    let mut ready_s = Vec::new();
    for round in 0..cfg.rounds {
        let dst = if round == 0 { checkout.clone() } else { scratch.join(format!("clone{round}")) };
        clone_s.push(steps.clone(&upstream_url, &dst, &[])?);
        restore_s.push(steps.restore(&cfg.trove, &node.url(), &repo, &scratch.join(format!("restore{round}")))?);
        steps.settle()?;
        let m = mount(&format!("ready{round}"), &format!("data-ready{round}"), &["--prefetch", "off"])?;
        ready_s.push(m.ready_after);
        eprintln!(
            "round {round}: git clone {:.2?}, trove restore {:.2?}, mount ready {:.0?}",
            clone_s[round], restore_s[round], m.ready_after
        );
    }
    let (clone_m, restore_m, ready_m) = (median(&clone_s), median(&restore_s), median(&ready_s));
    for round in 1..cfg.rounds {
        let _ = std::fs::remove_dir_all(scratch.join(format!("clone{round}")));
    }

    // Metadata: find + stat, fresh mount vs ext4, cold.
    let meta = mount("meta", "data-meta", &["--prefetch", "off"])?;
    steps.settle()?;
    let (before, _) = served(&node)?;
    let find_mount = find_and_stat(&meta.dir)?;
    let (after, _) = served(&node)?;
    let meta_blobs = after - before;
    steps.settle()?;
    let find_ext4 = find_and_stat(&checkout)?;
    drop(meta);
    eprintln!("find+stat: mount {find_mount:.2} s ({meta_blobs} blobs fetched), ext4 {find_ext4:.2} s");

    // First reads: from the node, then from the local tier (remount).
    let all_files = tree_files(&checkout)?;
    let small: Vec<&String> = all_files
        .iter()
        .filter(|f| std::fs::metadata(checkout.join(f)).is_ok_and(|m| m.is_file() && m.len() <= 64 << 10))
        .take(2000)
        .collect();
    let first = mount("first", "data-first", &["--prefetch", "off"])?;
    let fetched = open_loop(cfg.first_read_rate, small.len(), 8, |i| read_all(&first.dir.join(small[i])).map(|_| ()))?;
    drop(first);
    let local = mount("local", "data-first", &["--prefetch", "off"])?;
    let local_first =
        open_loop(cfg.first_read_rate, small.len(), 8, |i| read_all(&local.dir.join(small[i])).map(|_| ()))?;

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

    // Sequential read of the big file, hydrated and warm, against ext4 warm.
    let big = if checkout.join(BIG_PATH).exists() { Some(BIG_PATH.to_owned()) } else { None };
    let big = big.or_else(|| {
        all_files.iter().max_by_key(|f| std::fs::metadata(checkout.join(f)).map(|m| m.len()).unwrap_or(0)).cloned()
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
    drop(local);

    // The whole tree cold, 4 readers, prefetch on, against ext4 cold.
    let (s0, r0) = served(&node)?;
    let whole = mount("whole", "data-whole", &[])?;
    steps.settle()?;
    let tree_mount = read_tree(&whole.dir, &all_files, 4)?;
    let (s1, r1) = served(&node)?;
    drop(whole);
    steps.settle()?;
    let tree_ext4 = read_tree(&checkout, &all_files, 4)?;
    eprintln!(
        "whole tree, 4 readers: mount {tree_mount:.2} s ({} blobs in {} requests), ext4 {tree_ext4:.2} s",
        s1 - s0,
        r1 - r0
    );

    // 32 concurrent first reads of one file.
    let one = mount("one", "data-one", &["--prefetch", "off"])?;
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
    let _ = std::fs::remove_dir_all(&scratch);
    let _ = std::fs::remove_dir_all(&mounts);

    let lat = |h: &Histogram<u64>| crate::report::Latency::of(h);
    let (lf, ll, lpm, lpe) = (lat(&fetched), lat(&local_first), lat(&pread_mount), lat(&pread_ext4));
    let json = serde_json::json!({
        "bench": "mount",
        "repo": { "name": name, "files": files, "pack_bytes": pack_bytes, "commit": commit },
        "rounds": cfg.rounds,
        "page_cache_dropped_before_each_step": steps.drop_caches,
        "mount_ready_seconds": ready_s.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
        "git_clone_seconds": clone_s.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
        "trove_restore_seconds": restore_s.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
        "find_stat_seconds": { "mount": find_mount, "ext4": find_ext4, "blobs_fetched": meta_blobs },
        "first_read_from_node_us": lf,
        "first_read_from_local_tier_us": ll,
        "first_read_rate_per_s": cfg.first_read_rate,
        "hydrated_pread_4k_us": { "mount": lpm, "ext4": lpe, "rate_per_s": cfg.pread_rate },
        "sequential_read_bytes_per_s": { "mount": seq_mount, "ext4": seq_ext4, "file": big, "bytes": big_bytes },
        "whole_tree_4_readers_seconds": { "mount": tree_mount, "ext4": tree_ext4, "blobs_served": s1 - s0, "blob_requests": r1 - r0 },
        "concurrent_first_reads_32_blobs_fetched": b1 - b0,
    });
    let md = format!(
        "# trove bench mount\n\nRepo `{name}`: {files} files, {:.0} MB of packs, commit {}. Node and mount on this machine; \
         medians of {} rounds where timed repeatedly. {}\n\n\
         | What | trove mount | Baseline (same run) | Ratio | Target |\n|---|---|---|---|---|\n\
         | mount ready (warm node) | {:.3} s | `git clone` {clone_m:.2} s; `trove restore` {restore_m:.2} s | {:.0}x / {:.0}x faster | 0.5 s or less |\n\
         | `find -type f` + stat of every file (cold) | {find_mount:.2} s, {meta_blobs} blobs fetched | ext4 {find_ext4:.2} s | {:.2}x | 0 blobs |\n\
         | first read of a small file, from the node ({} files at {}/s, open loop) | p50 {} us, p99 {} us, p99.9 {} us | | | p99 <= 5 ms |\n\
         | first read of a small file, in the local tier | p50 {} us, p99 {} us, p99.9 {} us | | | p99 <= 1 ms |\n\
         | hydrated 4 KiB pread ({}/s, open loop) | p50 {} us, p99 {} us | ext4 p50 {} us, p99 {} us | p50 {:.2}x | p50 <= 1.2x |\n\
         | sequential read, hydrated {:.0} MiB, warm | {:.2} GB/s | ext4 {:.2} GB/s | {:.2}x | >= 0.9x |\n\
         | whole tree cold, 4 readers | {tree_mount:.2} s; {} blobs in {} requests | ext4 cold {tree_ext4:.2} s | {:.2}x | as close as batching gets |\n\
         | 32 concurrent first reads of one file | {} blob(s) fetched | | | 1 |\n",
        pack_bytes as f64 / 1e6,
        &commit[..12],
        cfg.rounds,
        steps.describe(),
        ready_m,
        clone_m / ready_m,
        restore_m / ready_m,
        find_mount / find_ext4,
        small.len(),
        cfg.first_read_rate,
        lf.p50_us,
        lf.p99_us,
        lf.p99_9_us,
        ll.p50_us,
        ll.p99_us,
        ll.p99_9_us,
        cfg.pread_rate,
        lpm.p50_us,
        lpm.p99_us,
        lpe.p50_us,
        lpe.p99_us,
        lpm.p50_us as f64 / lpe.p50_us.max(1) as f64,
        big_bytes as f64 / (1 << 20) as f64,
        seq_mount / 1e9,
        seq_ext4 / 1e9,
        seq_mount / seq_ext4,
        s1 - s0,
        r1 - r0,
        tree_mount / tree_ext4,
        b1 - b0,
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
