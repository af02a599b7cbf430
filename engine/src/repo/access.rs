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
//! itself. Only a tag of it is kept: HMAC-SHA256 under a key drawn at
//! random when the process starts, so nobody who can send headers can aim
//! one at another client's cached yes (an unkeyed fast hash could be), and
//! the tags mean nothing outside this process. git gets the header
//! through the environment.

use crate::limits::ACCESS_CACHE_MAX;
use crate::repo::git::Git;
use crate::repo::mirror::SHORT_GIT_TIMEOUT;
use crate::repo::{RepoError, RepoKey};
use crate::secret::Secret;
use crate::shard::Shard;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

/// The file in a mirror that says it is private.
pub(crate) const PRIVATE_MARKER: &str = "trove-private";

/// Whether the mirror at `mirror` is of a private repo.
pub fn is_private(mirror: &Path) -> bool {
    mirror.join(PRIVATE_MARKER).exists()
}

/// After a clone into `dir` made with `auth`: marks the mirror private if
/// the upstream refuses anonymous access. Any failure counts as refusal.
pub(crate) async fn mark_if_private(url: &str, dir: &Path, auth: Option<&Secret>) -> Result<bool, RepoError> {
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

/// The access cache's tag of an Authorization header: its HMAC-SHA256
/// under this process's key, cut to 128 bits.
pub(crate) fn header_tag(auth: &Secret) -> u128 {
    static KEY: OnceLock<ring::hmac::Key> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .expect("the kernel's random source works")
    });
    let tag = ring::hmac::sign(key, auth.expose().as_bytes());
    u128::from_le_bytes(tag.as_ref()[..16].try_into().expect("a SHA-256 tag has 32 bytes"))
}

impl Shard {
    /// Lets the request through if `key` is public, or if the upstream
    /// accepts `auth` for it.
    pub async fn check_access(&self, key: &RepoKey, private: bool, auth: Option<&Secret>) -> Result<(), RepoError> {
        if !private {
            return Ok(());
        }
        let auth = auth.ok_or_else(|| RepoError::Unauthorized(key.canonical()))?;
        let id = (key.hash(), header_tag(auth));
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

#[cfg(test)]
mod tests {
    use super::header_tag;
    use crate::secret::Secret;

    #[test]
    fn header_tags_are_keyed_and_stable_within_the_process() {
        let a = Secret::new("Bearer one");
        assert_eq!(header_tag(&a), header_tag(&a.clone()));
        assert_ne!(header_tag(&a), header_tag(&Secret::new("Bearer two")));
        // Not a plain hash anyone could compute from the header alone.
        assert_ne!(header_tag(&a), xxhash_rust::xxh3::xxh3_128(a.expose().as_bytes()));
        let unkeyed = ring::digest::digest(&ring::digest::SHA256, a.expose().as_bytes());
        assert_ne!(header_tag(&a).to_le_bytes(), unkeyed.as_ref()[..16]);
    }
}
