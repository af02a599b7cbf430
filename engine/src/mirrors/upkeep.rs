//! Mirror upkeep: a mirror that has fetched for weeks serves as fast as a
//! fresh clone.
//!
//! A clone is indexed for serving once (multi-pack-index with a bitmap,
//! commit-graph). Every fetch after that leaves a small pack, or loose
//! objects when it brought under 100, outside the bitmap; on a busy repo
//! they pile up and every upload-pack pays for them. So, on the owner
//! shard, a mirror whose refs a fetch moved is repacked at most once per
//! `--upkeep-interval`: a geometric repack (new packs are rolled together
//! until each is at least twice the next, so the big base pack is left
//! alone), with the multi-pack-index and its bitmap rewritten. The
//! commit-graph follows each fetch already (fetch.writeCommitGraph).
//!
//! Readers and fetches run on meanwhile, as on any git server: upload-packs
//! keep the packs they opened, and a fetch's new pack is not rolled up.
//! What must not overlap is the tar of a mirror snapshot, which could
//! archive an index naming packs that are gone: both hold the repo's
//! housekeeping permit. This module never runs on a repo with a clone in
//! flight, never on a mirror that nothing changed, and never blocks the shard
//! (git runs as a child process).

use super::service::Mirrors;
use crate::repo::git::Git;
use crate::repo::{RepoError, RepoKey};
use crate::stats::bump;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

impl Mirrors {
    /// Repacks this shard's mirrors that fetches changed, where the last
    /// upkeep is at least `--upkeep-interval` old. Runs them one at a time.
    pub(super) async fn upkeep_mirrors(self: &Rc<Self>) {
        let interval = self.config().upkeep_interval;
        let due: Vec<_> = self
            .repos
            .borrow()
            .values()
            .filter(|st| st.ready && st.changed_since_upkeep && st.upkept_at.is_none_or(|t| t.elapsed() >= interval))
            .map(|st| (st.key.clone(), st.housekeeping.clone()))
            .collect();
        for (key, housekeeping) in due {
            let Ok(_permit) = housekeeping.acquire_permit(1).await else { continue };
            // Cleared first: a fetch that lands during the repack marks it again.
            self.with_repo(&key, |st| st.changed_since_upkeep = false);
            let started = Instant::now();
            let done = repack(&key, &self.mirror_path(&key), self.config().clone_timeout).await;
            self.with_repo(&key, |st| {
                st.upkept_at = Some(Instant::now());
                if done.is_err() {
                    st.changed_since_upkeep = true;
                }
            });
            match done {
                Ok(()) => {
                    bump(&self.shard.stats().mirror_upkeeps, 1);
                    tracing::info!(repo = %key, elapsed = ?started.elapsed(), "mirror repacked for serving");
                }
                Err(e) => tracing::warn!(repo = %key, error = %e, "mirror upkeep failed; it is served as it is"),
            }
        }
    }
}

async fn repack(key: &RepoKey, dir: &Path, timeout: std::time::Duration) -> Result<(), RepoError> {
    let out = Git::new(["repack", "-d", "-q", "--geometric=2", "--write-midx", "--write-bitmap-index"])
        .dir(dir)
        .run(Vec::new(), timeout)
        .await?;
    if !out.ok() {
        return Err(RepoError::Git { what: format!("git repack of {key}"), stderr: out.stderr });
    }
    Ok(())
}
