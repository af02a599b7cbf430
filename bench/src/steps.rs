//! How every timed step of the git and mount benches starts (a `sync`,
//! and as root a dropped page cache), the clone and restore steps
//! themselves, and the medians the reports take.

use crate::upstream::git;
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub(crate) fn median_f(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

pub(crate) fn median(v: &[Duration]) -> f64 {
    median_f(&v.iter().map(Duration::as_secs_f64).collect::<Vec<_>>())
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
