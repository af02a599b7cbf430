//! The reads the mount bench times, the way users read a tree: an open
//! loop of single operations (latency from each one's scheduled start, so
//! a stall counts for everything queued behind it), whole files, a whole
//! tree by parallel readers, and `find` with a stat of every file.

use crate::upstream::git;
use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs `op(i)` for i in 0..n, the i-th scheduled at start + i/rate, on
/// `threads` threads; records each latency from its scheduled start (so a
/// stall counts for everything queued behind it), in microseconds.
pub(crate) fn open_loop(
    rate: u64,
    n: usize,
    threads: usize,
    op: impl Fn(usize) -> Result<()> + Sync,
) -> Result<Histogram<u64>> {
    let next = AtomicUsize::new(0);
    let start = Instant::now() + Duration::from_millis(20);
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let hists: Vec<Result<Histogram<u64>>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<Histogram<u64>> {
                    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(h);
                        }
                        let due = start + interval * i as u32;
                        while Instant::now() < due {
                            let left = due - Instant::now();
                            if left > Duration::from_micros(200) {
                                std::thread::sleep(left - Duration::from_micros(100));
                            } else {
                                std::hint::spin_loop();
                            }
                        }
                        op(i)?;
                        h.record((due.elapsed().as_micros() as u64).max(1))?;
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("a bench thread panicked")).collect()
    });
    let mut all = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for h in hists {
        all.add(h?)?;
    }
    Ok(all)
}

pub(crate) fn read_all(path: &Path) -> Result<u64> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            return Ok(n);
        }
        n += k as u64;
    }
}

/// Files (relative paths) of a checkout, from git, sorted.
pub(crate) fn tree_files(checkout: &Path) -> Result<Vec<String>> {
    let out = git(checkout, &["ls-files", "-z"])?;
    Ok(out.split('\0').filter(|s| !s.is_empty()).map(str::to_owned).collect())
}

/// Reads every file in `files` under `root` with `threads` readers; seconds.
pub(crate) fn read_tree(root: &Path, files: &[String], threads: usize) -> Result<f64> {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(f) = files.get(i) else { return Ok(()) };
                        let p = root.join(f);
                        if std::fs::symlink_metadata(&p)?.is_file() {
                            read_all(&p)?;
                        }
                    }
                })
            })
            .collect();
        hs.into_iter().try_for_each(|h| h.join().expect("a reader panicked"))
    })?;
    Ok(started.elapsed().as_secs_f64())
}

/// `find DIR -type f` and a stat of each file; seconds.
pub(crate) fn find_and_stat(dir: &Path) -> Result<f64> {
    let started = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg("find . -type f -print0 | xargs -0 stat -c '%s' > /dev/null")
        .current_dir(dir)
        .status()?;
    anyhow::ensure!(out.success(), "find/stat failed in {}", dir.display());
    Ok(started.elapsed().as_secs_f64())
}

/// `n` of `files` picked at random from the fixed seed `seed` (xorshift),
/// the same each run.
pub(crate) fn random_picks(files: &[String], n: usize, seed: u64) -> Vec<&String> {
    let mut rng = seed;
    (0..n)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            &files[(rng % files.len() as u64) as usize]
        })
        .collect()
}

/// open+read+close of `n` files picked at random (a fixed seed) from
/// `files` under `root`, one after another; each one's latency in
/// nanoseconds (closed loop: these are warm, nothing queues; a warm open
/// takes a few microseconds, too few for whole microseconds to compare).
pub(crate) fn random_opens(root: &Path, files: &[String], n: usize) -> Result<Histogram<u64>> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut buf = vec![0u8; 1 << 20];
    for name in random_picks(files, n, 0x2545_F491_4F6C_DD1D) {
        let p = root.join(name);
        let t = Instant::now();
        let mut f = std::fs::File::open(&p).with_context(|| format!("opening {}", p.display()))?;
        while f.read(&mut buf)? > 0 {}
        drop(f);
        h.record((t.elapsed().as_nanos() as u64).max(1))?;
    }
    Ok(h)
}

/// Runs `sh -c script` in `dir`; seconds. Its output is discarded, and
/// exit 1 (grep's "no match") is success.
pub(crate) fn timed_sh(dir: &Path, script: &str) -> Result<f64> {
    let started = Instant::now();
    let out = Command::new("sh").arg("-c").arg(script).current_dir(dir).output()?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        matches!(out.status.code(), Some(0 | 1)),
        "`{script}` failed in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(secs)
}

/// Paths where the trees under `a` and `b` differ (`diff -rq`, links not
/// followed, `.git` left out): 0 means equal.
pub(crate) fn differences(a: &Path, b: &Path) -> Result<usize> {
    let out = Command::new("diff").args(["-rq", "--no-dereference", "--exclude=.git"]).arg(a).arg(b).output()?;
    anyhow::ensure!(matches!(out.status.code(), Some(0 | 1)), "diff failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines().take(10) {
        eprintln!("  differs: {line}");
    }
    Ok(text.lines().count())
}
