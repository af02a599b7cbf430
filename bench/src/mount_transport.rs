//! `trove bench mount`'s transport rows: the same hydrated data dir
//! mounted over `/dev/fuse` and over FUSE over io_uring in one run, and
//! what differs between them measured side by side with ext4: a metadata
//! walk and a whole-tree read with the kernel's caches dropped (every
//! lookup and read goes to the daemon), and warm opens (which, on the
//! kernel read path, reach neither).
//!
//! Where the kernel has the ring off, the io_uring mount falls back and
//! its rows say so (their settings name the transport it got).

use crate::mount_proc::MountProc;
use crate::reads::{find_and_stat, random_opens, read_tree};
use crate::rows::{ratio, Met, Row};
use crate::steps::{median_f, Steps};
use anyhow::Result;
use std::path::Path;

/// What the transport rows need of the bench run.
pub(crate) struct Ctx<'a> {
    pub trove: &'a Path,
    pub node: String,
    pub repo: &'a str,
    /// Where mounts go, and the data dir (already hydrated) they share.
    pub mounts: &'a Path,
    pub data: &'a str,
    pub checkout: &'a Path,
    pub files: &'a [String],
    pub steps: Steps,
}

struct Measured {
    settings: String,
    find_s: f64,
    read_s: f64,
    open_p50_us: f64,
    open_p99_us: f64,
}

/// The median of three runs of `step`, each after a sync and a dropped
/// page cache.
fn cold_median(steps: Steps, step: impl Fn() -> Result<f64>) -> Result<f64> {
    let mut runs = Vec::new();
    for _ in 0..3 {
        steps.settle()?;
        runs.push(step()?);
    }
    Ok(median_f(&runs))
}

fn measure(ctx: &Ctx, transport: &str) -> Result<Measured> {
    let dir = ctx.mounts.join(format!("transport-{transport}"));
    let data = ctx.mounts.join(ctx.data);
    let m = MountProc::start(ctx.trove, &ctx.node, ctx.repo, &dir, &data, &["--transport", transport])?;
    let find_s = cold_median(ctx.steps, || find_and_stat(&m.dir))?;
    let read_s = cold_median(ctx.steps, || read_tree(&m.dir, ctx.files, 8))?;
    read_tree(&m.dir, ctx.files, 8)?;
    let opens = random_opens(&m.dir, ctx.files, 1000)?;
    let us = |q: f64| opens.value_at_quantile(q) as f64 / 1000.0;
    Ok(Measured { settings: m.read_path(), find_s, read_s, open_p50_us: us(0.5), open_p99_us: us(0.99) })
}

/// The rows: io_uring against /dev/fuse (the target: no slower), each
/// with ext4 beside it.
pub(crate) fn rows(ctx: &Ctx) -> Result<Vec<Row>> {
    let dev = measure(ctx, "dev-fuse")?;
    let ring = measure(ctx, "io-uring")?;
    let ext4_find = cold_median(ctx.steps, || find_and_stat(ctx.checkout))?;
    let ext4_read = cold_median(ctx.steps, || read_tree(ctx.checkout, ctx.files, 8))?;
    read_tree(ctx.checkout, ctx.files, 8)?;
    let ext4_opens = random_opens(ctx.checkout, ctx.files, 1000)?;
    let e = |q: f64| ext4_opens.value_at_quantile(q) as f64 / 1000.0;
    let settings = format!("{}; vs {}", ring.settings, dev.settings);
    // Where the kernel asks the daemon, the ring must be no slower; a warm
    // open on the kernel read path asks neither transport, so its rows
    // have figures and no target (a target there would judge noise).
    let row = |what: &str, [r, d, ext4]: [f64; 3], unit: &str, asked: bool| {
        let digits = if unit == "s" { 3 } else { 1 };
        Row {
            what: what.into(),
            settings: settings.clone(),
            trove: format!("{r:.digits$} {unit}"),
            baseline: format!("/dev/fuse {d:.digits$} {unit}; ext4 {ext4:.digits$} {unit} ({} ext4)", ratio(r, ext4)),
            ratio: ratio(r, d),
            target: if asked { "io_uring <= /dev/fuse".into() } else { "- (no transport is asked)".into() },
            met: if asked { Met::of(r <= d) } else { Met::NoTarget },
        }
    };
    let read_what = format!(
        "whole tree read from the local tier, 8 readers, caches dropped ({} files, median of 3)",
        ctx.files.len()
    );
    Ok(vec![
        row(
            "`find` + stat, hydrated, kernel caches dropped (median of 3)",
            [ring.find_s, dev.find_s, ext4_find],
            "s",
            true,
        ),
        row(&read_what, [ring.read_s, dev.read_s, ext4_read], "s", true),
        row(
            "open+read+close of 1,000 random files, warm, p50",
            [ring.open_p50_us, dev.open_p50_us, e(0.5)],
            "us",
            false,
        ),
        row(
            "open+read+close of 1,000 random files, warm, p99",
            [ring.open_p99_us, dev.open_p99_us, e(0.99)],
            "us",
            false,
        ),
    ])
}
