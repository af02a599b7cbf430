//! `trove bench mount`'s random-reads row: 50 files picked at random (a
//! fixed seed), read one after another on a fresh mount, with prefetch on
//! (the default) and off, as an agent opening files here and there would.
//! Prefetch must not make them slow: it once fetched two thirds of a repo
//! for a listing and made 50 random reads 3.4x slower than without it.

use crate::mount_proc::MountProc;
use crate::node::BenchNode;
use crate::rows::{ratio, Met, Row};
use anyhow::Result;
use std::path::Path;
use std::time::Instant;

const READS: usize = 50;

/// Mounts on fresh data dirs under `mounts`, reads READS of `files`
/// (regular files) with `--prefetch dir` then `off`.
pub(crate) fn row(
    trove: &Path,
    node: &BenchNode,
    repo: &str,
    mounts: &Path,
    files: &[String],
    served: impl Fn() -> Result<u64>,
) -> Result<Row> {
    let picked = crate::reads::random_picks(files, READS, 0x9E37_79B9_7F4A_7C15);
    let mut runs = Vec::new();
    let mut settings = String::new();
    for prefetch in ["dir", "off"] {
        let tag = format!("random-{prefetch}");
        let m = MountProc::start(
            trove,
            &node.url(),
            repo,
            &mounts.join(&tag),
            &mounts.join(format!("data-{tag}")),
            &["--prefetch", prefetch],
        )?;
        if settings.is_empty() {
            settings = format!("prefetch dir (default), {}; vs prefetch off", m.read_path());
        }
        let before = served()?;
        let started = Instant::now();
        for f in &picked {
            crate::reads::read_all(&m.dir.join(f))?;
        }
        let took = started.elapsed().as_secs_f64();
        drop(m);
        runs.push((took, served()? - before));
    }
    let [(on_s, on_blobs), (off_s, off_blobs)] = [runs[0], runs[1]];
    Ok(Row {
        what: format!("{READS} random first reads, one after another, fresh mount"),
        settings,
        trove: format!("{on_s:.3} s, {on_blobs} blobs fetched"),
        baseline: format!("prefetch off {off_s:.3} s, {off_blobs} blobs"),
        ratio: ratio(on_s, off_s),
        target: "<= 1.5x of prefetch off".into(),
        met: Met::of(on_s <= 1.5 * off_s),
    })
}
