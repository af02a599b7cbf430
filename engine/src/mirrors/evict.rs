//! Mirrors under a byte budget: `--mirror-capacity`, split evenly over the
//! shards as the local tier's capacity is.
//!
//! After each clone, and at every background tick, an owner adds up the
//! disk its mirrors use (off the shard: a walk of each mirror's files) and,
//! while over its share, evicts whole mirrors, least recently used first
//! (use is what reaches the owner: every clone, fetch and ref listing). A
//! mirror is unpublished by a rename into `evicted/`, so the requests and
//! git processes already reading it finish as they started, and a new
//! request finds no mirror and clones again (or restores from S3). The
//! renamed copies are deleted once `EVICTED_GRACE` has passed.
//!
//! Never evicted: the most recently used mirror (it may be the one a
//! request is waiting for), a mirror with a job in flight, and one whose
//! housekeeping permit is taken (a repack or a mirror snapshot's tar).
//! Snapshots and bundles are objects in the local tier and follow its
//! capacity (`--local-capacity`), not this one.
//!
//! Recency is in memory; after a restart a mirror's is its directory's
//! modification time (its last fetch or publish).

use super::events::MirrorEvent;
use super::service::Mirrors;
use crate::repo::off_shard;
use crate::stats::bump;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

/// How long an evicted mirror's files stay for the readers that had them.
const EVICTED_GRACE: Duration = Duration::from_secs(600);

impl Mirrors {
    /// Evicts this shard's least recently used mirrors until the rest fit
    /// its share of `--mirror-capacity`.
    pub(super) async fn evict_mirrors(self: &Rc<Self>) {
        let share = self.config().mirror_capacity / self.shard.nr_shards().max(1) as u64;
        let mut mirrors: Vec<_> = self
            .repos
            .borrow()
            .values()
            .filter(|st| st.ready)
            .map(|st| (st.key.clone(), st.used_at, self.mirror_path(&st.key)))
            .collect();
        let paths: Vec<PathBuf> = mirrors.iter().map(|(_, _, p)| p.clone()).collect();
        let evicted_dir = self.shard.layout().shard_dir(self.shard.id).join("evicted");
        let sized = off_shard("trove-mirror-du", move || {
            purge_old(&evicted_dir);
            paths.iter().map(|p| disk_bytes(p)).collect::<Vec<u64>>()
        })
        .await;
        let Ok(sizes) = sized else { return };
        let mut total: u64 = sizes.iter().sum();
        self.shard.stats().mirror_bytes.store(total, std::sync::atomic::Ordering::Relaxed);
        if total <= share {
            return;
        }
        let mut by_use: Vec<_> = mirrors.drain(..).zip(sizes).collect();
        by_use.sort_by_key(|((_, used, _), _)| *used);
        by_use.pop(); // the most recently used stays
        for ((key, _, path), bytes) in by_use {
            if total <= share {
                break;
            }
            let housekeeping = self.with_repo(&key, |st| st.housekeeping.clone());
            let Ok(_permit) = housekeeping.try_acquire_permit(1) else { continue };
            let taken = self.with_repo(&key, |st| st.forget_mirror());
            if !taken {
                continue;
            }
            self.tell(key.hash(), MirrorEvent::Evicted);
            match unpublish(&path, &self.shard.layout().shard_dir(self.shard.id).join("evicted")) {
                Ok(()) => {
                    total = total.saturating_sub(bytes);
                    bump(&self.shard.stats().mirror_evictions, 1);
                    tracing::info!(repo = %key, bytes, "mirror evicted to stay within --mirror-capacity; the next request clones it again");
                }
                Err(e) => {
                    tracing::warn!(repo = %key, error = %e, "could not evict the mirror; keeping it");
                    self.with_repo(&key, |st| st.ready = true);
                }
            }
        }
        self.shard.stats().mirror_bytes.store(total, std::sync::atomic::Ordering::Relaxed);
    }
}

/// When a mirror found at startup was last used, as well as the disk
/// knows: its directory's modification time.
pub(super) fn used_at_from_disk(path: &Path) -> Instant {
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
}

fn unpublish(path: &Path, evicted: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(evicted)?;
    let name = format!(
        "{}-{}",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        crate::clock::now_ms()
    );
    std::fs::rename(path, evicted.join(name))
}

/// Deletes the evicted copies older than the grace period.
fn purge_old(evicted: &Path) {
    let Ok(entries) = std::fs::read_dir(evicted) else { return };
    for e in entries.flatten() {
        let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if old.is_some_and(|age| age >= EVICTED_GRACE) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Bytes a directory tree holds on disk (allocated blocks), links not
/// followed.
fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}
