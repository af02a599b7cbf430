//! `trove bench mount`'s write rows: the writable overlay against ext4
//! (a directory beside the checkout, on the same disk), in the same run.
//! - small-file create + write 4 KiB + fsync + close, p50 and p99;
//! - untar a tree of up to 10k of the repo's files (no fsync);
//! - the first write to the largest hydrated base file (its copy-up),
//!   against `cp` of the same file on ext4;
//! - rewrite 4 KiB of a written file, then read it back through a second
//!   descriptor, p50;
//! - a 4 KiB read of an untouched hydrated file after all those writes,
//!   page cache warm, p50.
//!
//! Each step writes to a directory of its own, made fresh: nothing is
//! deleted between timed steps.

use crate::mount_proc::MountProc;
use crate::reads::read_all;
use crate::rows::{ratio, Met, Row};
use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// What the write rows need of the run.
pub(crate) struct Ctx<'a> {
    pub trove: &'a Path,
    pub node: String,
    pub repo: &'a str,
    pub commit: &'a str,
    pub mounts: &'a Path,
    pub scratch: &'a Path,
    pub checkout: &'a Path,
    /// The tree's regular files, relative.
    pub files: &'a [String],
}

/// Files each latency row times.
const OPS: usize = 1000;

fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("a histogram of 3 significant digits")
}

/// Microseconds at quantile `q` of a histogram of nanoseconds.
fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// `OPS` times: create a file in `dir`, write 4 KiB, fsync, close.
fn create_write_fsync(dir: &Path) -> Result<Histogram<u64>> {
    std::fs::create_dir_all(dir)?;
    let block = vec![7u8; 4096];
    let mut h = histogram();
    for i in 0..OPS {
        let t = Instant::now();
        let mut f = std::fs::File::create(dir.join(format!("f{i}")))?;
        f.write_all(&block)?;
        f.sync_all()?;
        drop(f);
        h.record(t.elapsed().as_nanos() as u64)?;
    }
    Ok(h)
}

/// `OPS` times: write 4 KiB at an offset of a written file, then read it
/// back through a second descriptor.
fn rewrite_read_back(dir: &Path) -> Result<Histogram<u64>> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("written");
    std::fs::write(&path, vec![1u8; 1 << 20])?;
    let (w, r) = (std::fs::OpenOptions::new().write(true).open(&path)?, std::fs::File::open(&path)?);
    let mut h = histogram();
    let mut back = vec![0u8; 4096];
    for i in 0..OPS {
        let block = vec![i as u8; 4096];
        let at = (i as u64 * 4096 * 7) % (1 << 20);
        let t = Instant::now();
        w.write_all_at(&block, at)?;
        r.read_exact_at(&mut back, at)?;
        h.record(t.elapsed().as_nanos() as u64)?;
        anyhow::ensure!(back == block, "a read through a second descriptor saw old bytes");
    }
    Ok(h)
}

/// Seconds to untar `tar` into a new directory `dir`.
fn untar(tar: &Path, dir: &Path) -> Result<f64> {
    std::fs::create_dir_all(dir)?;
    let t = Instant::now();
    let st = Command::new("tar").arg("xf").arg(tar).current_dir(dir).status()?;
    anyhow::ensure!(st.success(), "tar xf into {} failed", dir.display());
    Ok(t.elapsed().as_secs_f64())
}

/// `OPS` warm 4 KiB reads of `path`.
fn warm_reads(path: &Path) -> Result<Histogram<u64>> {
    let f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    f.read_at(&mut buf, 0)?;
    let mut h = histogram();
    for _ in 0..OPS {
        let t = Instant::now();
        f.read_at(&mut buf, 0)?;
        h.record(t.elapsed().as_nanos() as u64)?;
    }
    Ok(h)
}

pub(crate) fn rows(ctx: &Ctx) -> Result<Vec<Row>> {
    let m = MountProc::start(
        ctx.trove,
        &ctx.node,
        ctx.repo,
        &ctx.mounts.join("writes"),
        &ctx.mounts.join("data-writes"),
        &["--commit", ctx.commit],
    )?;
    let settings = format!("{}, overlay", m.read_path());
    let ext4 = ctx.scratch.join("writes-ext4");
    let mut rows = Vec::new();

    let (cm, ce) = (create_write_fsync(&m.dir.join("new-small"))?, create_write_fsync(&ext4.join("new-small"))?);
    for (pct, q) in [("p50", 0.5), ("p99", 0.99)] {
        let (a, b) = (us(&cm, q), us(&ce, q));
        rows.push(Row::within(
            format!("create + write 4 KiB + fsync + close, {OPS} files, {pct}"),
            settings.clone(),
            format!("{a:.0} us"),
            format!("ext4 {b:.0} us"),
            a,
            b,
            2.0,
        ));
    }

    // A source tree: up to 10k of the repo's files, as a tar on ext4.
    let list: Vec<&String> = ctx.files.iter().take(10_000).collect();
    let tar = ctx.scratch.join("tree.tar");
    let mut cmd = Command::new("tar");
    cmd.arg("cf").arg(&tar).arg("-T").arg("-").current_dir(ctx.checkout).stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    child
        .stdin
        .take()
        .context("tar's stdin")?
        .write_all(list.iter().map(|f| format!("{f}\n")).collect::<String>().as_bytes())?;
    anyhow::ensure!(child.wait()?.success(), "tar cf of the checkout failed");
    read_all(&tar)?;
    let (um, ue) = (untar(&tar, &m.dir.join("untar"))?, untar(&tar, &ext4.join("untar"))?);
    rows.push(Row::within(
        format!("untar {} files (no fsync)", list.len()),
        settings.clone(),
        format!("{um:.2} s"),
        format!("ext4 {ue:.2} s"),
        um,
        ue,
        2.0,
    ));

    // Copy-up: the largest file, hydrated and warm, first written.
    let big = ctx
        .files
        .iter()
        .max_by_key(|f| std::fs::metadata(ctx.checkout.join(f)).map(|m| m.len()).unwrap_or(0))
        .context("no files")?;
    let size = read_all(&m.dir.join(big))?;
    read_all(&ctx.checkout.join(big))?;
    let t = Instant::now();
    std::fs::OpenOptions::new().write(true).open(m.dir.join(big))?.write_all_at(b"x", 0)?;
    let copy_up = t.elapsed().as_secs_f64();
    std::fs::create_dir_all(&ext4)?;
    let t = Instant::now();
    let st = Command::new("cp").arg(ctx.checkout.join(big)).arg(ext4.join("copied")).status()?;
    let cp = t.elapsed().as_secs_f64();
    anyhow::ensure!(st.success(), "cp failed");
    rows.push(Row::within(
        format!("first write to a hydrated {:.1} MiB base file (copy-up)", size as f64 / (1 << 20) as f64),
        settings.clone(),
        format!("{:.1} ms", copy_up * 1e3),
        format!("`cp` on ext4 {:.1} ms", cp * 1e3),
        copy_up,
        cp,
        1.5,
    ));

    let (rm, re) = (rewrite_read_back(&m.dir.join("rewrite"))?, rewrite_read_back(&ext4.join("rewrite"))?);
    let (a, b) = (us(&rm, 0.5), us(&re, 0.5));
    rows.push(Row::within(
        format!("rewrite 4 KiB of a written file, read it back through a second fd, {OPS} times, p50"),
        settings.clone(),
        format!("{a:.1} us"),
        format!("ext4 {b:.1} us"),
        a,
        b,
        2.0,
    ));

    // An untouched file, hydrated, after all of the above.
    let untouched = ctx
        .files
        .iter()
        .find(|f| *f != big && std::fs::metadata(ctx.checkout.join(f)).is_ok_and(|m| m.len() >= 4096))
        .context("no file of 4 KiB")?;
    read_all(&m.dir.join(untouched))?;
    let (wm, we) = (warm_reads(&m.dir.join(untouched))?, warm_reads(&ctx.checkout.join(untouched))?);
    let (a, b) = (us(&wm, 0.5), us(&we, 0.5));
    rows.push(Row {
        what: format!("4 KiB read of an untouched hydrated file after the writes, warm, {OPS} times, p50"),
        settings,
        trove: format!("{a:.2} us"),
        baseline: format!("ext4 page cache {b:.2} us"),
        ratio: ratio(a, b),
        target: "<= 1.2x".into(),
        met: Met::of(a <= 1.2 * b.max(0.01)),
    });
    drop(m);
    Ok(rows)
}
