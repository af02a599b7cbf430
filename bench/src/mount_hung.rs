//! `trove bench mount`'s hung-node row: the node stopped (SIGSTOP: its
//! socket still accepts, nothing answers) under a mount with nothing
//! hydrated, and a reader walking unfetched files one after another, as
//! rg or grep would. The first read waits out `--fetch-timeout`; every
//! later one must fail within 100 ms, not wait its own timeout.
//!
//! The node is resumed (SIGCONT) whatever happens, also on an error.

use crate::mount_proc::MountProc;
use crate::rows::{Met, Row};
use anyhow::Result;
use std::path::Path;
use std::time::Instant;

/// Files walked while the node is stopped.
const FILES: usize = 200;
const FETCH_TIMEOUT: &str = "2s";

struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.0 as i32).expect("a pid"),
            rustix::process::Signal::CONT,
        );
    }
}

/// Mounts with a fresh `data` dir under `mounts`, stops the node `pid`,
/// reads FILES of `files` (regular files), resumes it.
pub(crate) fn row(trove: &Path, node: &str, pid: u32, repo: &str, mounts: &Path, files: &[String]) -> Result<Row> {
    let args = ["--prefetch", "off", "--fetch-timeout", FETCH_TIMEOUT];
    let m = MountProc::start(trove, node, repo, &mounts.join("hung"), &mounts.join("data-hung"), &args)?;
    let settings = format!("prefetch off, {}, --fetch-timeout {FETCH_TIMEOUT}", m.read_path());
    let resume = Resume(pid);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).expect("a pid"),
        rustix::process::Signal::STOP,
    )?;
    let mut each = Vec::new();
    let walk = Instant::now();
    for f in files.iter().take(FILES) {
        let t = Instant::now();
        let failed = crate::reads::read_all(&m.dir.join(f)).is_err();
        each.push((t.elapsed().as_secs_f64(), failed));
    }
    let total = walk.elapsed().as_secs_f64();
    drop(resume);
    drop(m);
    let failed = each.iter().filter(|(_, f)| *f).count();
    let first = each.first().map_or(0.0, |e| e.0);
    let mut later: Vec<f64> = each.iter().skip(1).map(|e| e.0).collect();
    later.sort_by(f64::total_cmp);
    let worst_later = later.last().copied().unwrap_or(0.0);
    let p99 = later.get(later.len().saturating_sub(1) * 99 / 100).copied().unwrap_or(0.0);
    Ok(Row {
        what: format!("node hung (SIGSTOP): {} unfetched files read one after another", each.len()),
        settings,
        trove: format!(
            "{failed} failed (EIO) in {total:.2} s: first after {first:.2} s, later p99 {:.1} ms, worst {:.1} ms",
            p99 * 1e3,
            worst_later * 1e3
        ),
        baseline: String::new(),
        ratio: String::new(),
        target: "later reads fail <= 100 ms each".into(),
        met: Met::of(worst_later <= 0.1),
    })
}
