//! Who may read a private repo.
//!
//! A mirror cloned with a client's credentials is checked once more without
//! them; if the upstream refuses anonymous access the mirror is private and
//! carries a marker file (it travels with the mirror snapshot too). A probe
//! that fails for another reason (a timeout, a 5xx) proves nothing: the
//! mirror is then served as private, fail closed, and probed again after
//! the refs TTL until the upstream answers either way. From
//! then on every read of it needs credentials the upstream accepts: the
//! client's Authorization header is tried with `git ls-remote`, and a
//! success is remembered by this shard, as a hash of the header, for the
//! refs TTL. So a cache never hands a private repo to someone the upstream
//! would turn away, and revoked credentials stop working within the TTL.
//!
//! Where it is checked: in `Mirrors::repo`, which every client-facing use of
//! a mirror goes through, and for snapshots, which a cold node serves with
//! no mirror at hand, from the flag in the snapshot pointer.
//!
//! What this module must never do: keep, log or pass in argv the header
//! itself. Only a tag of it is kept: HMAC-SHA256 under a key drawn at
//! random when the process starts, so nobody who can send headers can aim
//! one at another client's cached yes (an unkeyed fast hash could be), and
//! the tags mean nothing outside this process. git gets the header
//! through the environment.

use super::service::Mirrors;
use crate::limits::ACCESS_CACHE_MAX;
use crate::repo::git::Git;
use crate::repo::plumbing::SHORT_GIT_TIMEOUT;
use crate::repo::{RepoError, RepoKey};
use crate::secret::Secret;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use crate::repo::untrusted::PRIVATE_MARKER;

/// What the marker holds when the upstream definitely refused anonymous
/// reads.
const REFUSED: &str = "cloned with credentials the upstream requires\n";
/// What it holds when the anonymous probe failed for another reason (a
/// timeout, a 5xx, DNS): served as private until a probe decides.
const UNCONFIRMED: &str = "unconfirmed: the anonymous probe failed, not refused; probed again\n";

/// Whether the mirror at `mirror` is of a private repo (or not yet known
/// to be public).
pub fn is_private(mirror: &Path) -> bool {
    mirror.join(PRIVATE_MARKER).exists()
}

/// What the upstream said to an anonymous `ls-remote`.
enum Probe {
    Public,
    Refused,
    /// Neither: try again later.
    Unknown(String),
}

/// Whether git's stderr says the upstream refused the credentials (or
/// their absence), as opposed to failing for another reason.
fn refused(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    // Status codes only as git words them: stderr quotes the URL, and a
    // bare "401" matched a port like 34012 (a 503 taken for a refusal).
    let said =
        ["authentication", "returned error: 401", "returned error: 403", "could not read", "not found", "denied"];
    said.iter().any(|r| s.contains(r))
}

async fn probe_anonymous(url: &str, no_progress: Duration) -> Probe {
    let ls = Git::new(["ls-remote", "--quiet", "--", url, "HEAD"]).upstream(no_progress);
    match ls.run(Vec::new(), SHORT_GIT_TIMEOUT).await {
        Ok(o) if o.ok() => Probe::Public,
        Ok(o) if refused(&o.stderr) => Probe::Refused,
        Ok(o) => Probe::Unknown(o.stderr.trim().lines().last().unwrap_or("").to_owned()),
        Err(e) => Probe::Unknown(e.to_string()),
    }
}

fn write_marker(dir: &Path, text: &str) -> Result<(), RepoError> {
    let marker = dir.join(PRIVATE_MARKER);
    std::fs::write(&marker, text).map_err(|e| RepoError::Io(format!("writing {}: {e}", marker.display())))
}

/// After a clone into `dir` made with `auth`: marks the mirror private if
/// the upstream refuses anonymous access. Only a definite refusal marks it
/// for good; any other failure of the probe marks it unconfirmed, which is
/// served as private (fail closed) and probed again (`reprobe_if_due`).
pub(super) async fn mark_if_private(
    url: &str,
    dir: &Path,
    auth: Option<&Secret>,
    no_progress: Duration,
) -> Result<bool, RepoError> {
    if auth.is_none() {
        return Ok(false); // cloned anonymously: public
    }
    match probe_anonymous(url, no_progress).await {
        Probe::Public => Ok(false),
        Probe::Refused => write_marker(dir, REFUSED).map(|()| true),
        Probe::Unknown(why) => {
            tracing::warn!(error = %why, "the anonymous-access probe failed; serving the mirror as private until a probe succeeds");
            write_marker(dir, UNCONFIRMED).map(|()| true)
        }
    }
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

impl Mirrors {
    /// A mirror marked unconfirmed whose marker is older than the refs TTL
    /// gets another anonymous probe, in the background (the request at hand
    /// is served as private): public removes the marker, a refusal makes
    /// it final. The marker's mtime is the time of the last probe.
    pub(super) fn reprobe_if_due(&self, key: &RepoKey, mirror: &Path) {
        let marker = mirror.join(PRIVATE_MARKER);
        let Ok(text) = std::fs::read_to_string(&marker) else { return };
        let age = std::fs::metadata(&marker).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if text != UNCONFIRMED || age.is_none_or(|a| a < self.config().refs_ttl) {
            return;
        }
        // Claim this round: no other request starts a probe meanwhile.
        let touched =
            std::fs::File::options().write(true).open(&marker).and_then(|f| f.set_modified(SystemTime::now()));
        let Ok(url) = self.config().upstreams.url(key) else { return };
        if touched.is_err() {
            return;
        }
        let (key, dir, no_progress) = (key.clone(), mirror.to_owned(), self.config().upstream_timeout);
        glommio::spawn_local(async move {
            match probe_anonymous(&url, no_progress).await {
                Probe::Public => {
                    if std::fs::remove_file(dir.join(PRIVATE_MARKER)).is_ok() {
                        tracing::info!(repo = %key, "the upstream serves anonymous reads after all: the mirror is public");
                    }
                }
                Probe::Refused => {
                    if write_marker(&dir, REFUSED).is_ok() {
                        tracing::info!(repo = %key, "the upstream refuses anonymous reads: the mirror is private");
                    }
                }
                Probe::Unknown(why) => tracing::warn!(repo = %key, error = %why, "the anonymous-access probe failed again"),
            }
        })
        .detach();
    }

    /// Lets the request through if `key` is public, or if the upstream
    /// accepts `auth` for it.
    pub async fn check_access(&self, key: &RepoKey, private: bool, auth: Option<&Secret>) -> Result<(), RepoError> {
        if !private {
            return Ok(());
        }
        let auth = auth.ok_or_else(|| RepoError::Unauthorized(key.canonical()))?;
        let id = (key.hash(), header_tag(auth));
        let ttl = self.config().refs_ttl;
        if self.access.borrow().get(&id).is_some_and(|at| at.elapsed() < ttl) {
            return Ok(());
        }
        let url = self.config().upstreams.url(key)?;
        let out = Git::new(["ls-remote", "--quiet", "--", url.as_str(), "HEAD"])
            .auth(Some(auth))
            .upstream(self.config().upstream_timeout)
            .run(Vec::new(), SHORT_GIT_TIMEOUT)
            .await?;
        if !out.ok() {
            if let Some(status) = crate::repo::git::redirect_status(&out.stderr) {
                let what = "git ls-remote (checking your access)".into();
                return Err(RepoError::Redirected { key: key.canonical(), what, status });
            }
            if refused(&out.stderr) {
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
    fn only_a_refusal_counts_as_one_whatever_the_url_holds() {
        use super::refused;
        let at = |port: u16, code: u16| {
            format!(
                "fatal: unable to access 'http://127.0.0.1:{port}/org/repo/': The requested URL returned error: {code}"
            )
        };
        assert!(!refused(&at(34012, 503)), "a port holding 401 is not a 401");
        assert!(!refused(&at(40399, 502)), "nor one holding 403");
        assert!(refused(&at(8080, 401)) && refused(&at(8080, 403)));
        assert!(refused("fatal: could not read Username for 'https://h': terminal prompts disabled"));
    }

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
