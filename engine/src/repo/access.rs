//! Who may read a private repo.
//!
//! A mirror cloned with a client's credentials is checked once more without
//! them; if the upstream refuses anonymous access the mirror is private and
//! carries a marker file (it travels with the mirror snapshot too). From
//! then on every read of it needs credentials the upstream accepts: the
//! client's Authorization header is tried with `git ls-remote`, and a
//! success is remembered by this shard, as a hash of the header, for the
//! refs TTL. So a cache never hands a private repo to someone the upstream
//! would turn away, and revoked credentials stop working within the TTL.
//!
//! Where it is checked: in `Shard::repo`, which every client-facing use of
//! a mirror goes through, and for snapshots, which a cold node serves with
//! no mirror at hand, from the flag in the snapshot pointer.
//!
//! What this module must never do: keep, log or pass in argv the header
//! itself (only its xxh3 hash is kept; git gets it through the environment).

use crate::limits::ACCESS_CACHE_MAX;
use crate::repo::git::Git;
use crate::repo::mirror::SHORT_GIT_TIMEOUT;
use crate::repo::{RepoError, RepoKey};
use crate::shard::Shard;
use std::path::Path;
use std::time::Instant;

/// The file in a mirror that says it is private.
pub(crate) const PRIVATE_MARKER: &str = "trove-private";

/// Whether the mirror at `mirror` is of a private repo.
pub fn is_private(mirror: &Path) -> bool {
    mirror.join(PRIVATE_MARKER).exists()
}

/// After a clone into `dir` made with `auth`: marks the mirror private if
/// the upstream refuses anonymous access. Any failure counts as refusal.
pub(crate) async fn mark_if_private(url: &str, dir: &Path, auth: Option<&str>) -> Result<bool, RepoError> {
    if auth.is_none() {
        return Ok(false); // cloned anonymously: public
    }
    let anonymous = Git::new(["ls-remote", "--quiet", "--", url, "HEAD"]).run(Vec::new(), SHORT_GIT_TIMEOUT).await;
    if anonymous.is_ok_and(|o| o.ok()) {
        return Ok(false);
    }
    let marker = dir.join(PRIVATE_MARKER);
    std::fs::write(&marker, "cloned with credentials the upstream requires\n")
        .map_err(|e| RepoError::Io(format!("writing {}: {e}", marker.display())))?;
    Ok(true)
}

impl Shard {
    /// Lets the request through if `key` is public, or if the upstream
    /// accepts `auth` for it.
    pub async fn check_access(&self, key: &RepoKey, private: bool, auth: Option<&str>) -> Result<(), RepoError> {
        if !private {
            return Ok(());
        }
        let auth = auth.ok_or_else(|| RepoError::Unauthorized(key.canonical()))?;
        let id = (key.hash(), xxhash_rust::xxh3::xxh3_64(auth.as_bytes()));
        let ttl = self.config().repo.refs_ttl;
        if self.access.borrow().get(&id).is_some_and(|at| at.elapsed() < ttl) {
            return Ok(());
        }
        let url = self.config().repo.upstreams.url(key)?;
        let out = Git::new(["ls-remote", "--quiet", "--", url.as_str(), "HEAD"])
            .auth(Some(auth))
            .run(Vec::new(), SHORT_GIT_TIMEOUT)
            .await?;
        if !out.ok() {
            let s = out.stderr.to_ascii_lowercase();
            let refused = ["authentication", "401", "403", "could not read", "not found", "denied"];
            if refused.iter().any(|r| s.contains(r)) {
                return Err(RepoError::Unauthorized(key.canonical()));
            }
            return Err(RepoError::Git {
                what: "git ls-remote (checking your access)".into(),
                stderr: out.stderr.trim().lines().last().unwrap_or("").to_owned(),
            });
        }
        let mut cache = self.access.borrow_mut();
        if cache.len() >= ACCESS_CACHE_MAX {
            cache.retain(|_, at| at.elapsed() < ttl);
            if cache.len() >= ACCESS_CACHE_MAX {
                cache.clear(); // all fresh: forgetting costs only re-checks
            }
        }
        cache.insert(id, Instant::now());
        Ok(())
    }
}
