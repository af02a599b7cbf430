//! The mirrors found in a shard's directory at startup: Ready, and moved
//! to their owner's directory when the shard count changed.

use super::evict::used_at_from_disk;
use super::service::{mirror_path_in, Mirrors};
use super::state::RepoState;
use crate::key::ShardId;
use crate::repo::git::Git;
use crate::repo::plumbing::{publish, SHORT_GIT_TIMEOUT};
use crate::repo::{RepoError, RepoKey};

impl Mirrors {
    /// Finds the mirrors in this shard's directory (startup): they are
    /// Ready. A mirror whose owner changed with the shard count moves to
    /// its owner's directory.
    pub(super) async fn discover(&self) {
        let dir = self.shard.layout().shard_dir(self.shard.id).join("mirrors");
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            let out = Git::new(["config", "--get", "trove.key"]).dir(&p).run(Vec::new(), SHORT_GIT_TIMEOUT).await;
            let key = match out.ok().filter(|o| o.ok()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()) {
                Some(k) => RepoKey::parse_canonical(&k),
                None => Err(RepoError::BadName(p.display().to_string())),
            };
            let Ok(key) = key else {
                tracing::warn!(path = %p.display(), "not a trove mirror; leaving it alone");
                continue;
            };
            let owner: ShardId = key.owner(self.shard.nr_shards());
            let want = mirror_path_in(&self.shard.layout().shard_dir(owner), key.hash());
            if want != p {
                if let Err(e) = publish(&p, &want) {
                    tracing::warn!(repo = %key, error = %e, "could not move mirror to its new owner");
                }
            }
            if owner == self.shard.id {
                let mut st = RepoState::new(key, true);
                st.used_at = used_at_from_disk(&want);
                self.repos.borrow_mut().insert(st.key.hash(), st);
            }
        }
        let n = self.repos.borrow().len();
        if n > 0 {
            tracing::info!(shard = self.shard.id, mirrors = n, "found mirrors");
        }
    }
}
