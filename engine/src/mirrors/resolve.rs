//! Names resolved in a mirror, fetching from the upstream once when some
//! are missing, unless every missing one was missed on this shard within
//! the refs TTL (misses.rs). The one way the faces ask "resolve these".

use super::service::Mirrors;
use crate::repo::{Need, RepoError, RepoKey};
use crate::secret::Secret;
use std::path::Path;
use std::rc::Rc;

/// What [`Mirrors::resolve_fetching`] found.
pub struct Resolved {
    /// Each name's object id, in order; None where the mirror lacks it.
    pub ids: Vec<Option<String>>,
    /// Whether the upstream was fetched from for it.
    pub fetched: bool,
}

impl Mirrors {
    /// Resolves `names` (refs or object expressions) in `key`'s mirror at
    /// `mirror`; when some are missing, fetches once from the upstream and
    /// resolves again, unless every missing name was already missed on this
    /// shard within the refs TTL.
    pub async fn resolve_fetching(
        self: &Rc<Self>,
        key: &RepoKey,
        auth: Option<Secret>,
        mirror: &Path,
        names: &[String],
    ) -> Result<Resolved, RepoError> {
        let ids = crate::repo::plumbing::resolve(mirror, names).await?;
        let missing = |ids: &[Option<String>]| -> Vec<&String> {
            names.iter().zip(ids).filter(|(_, id)| id.is_none()).map(|(n, _)| n).collect()
        };
        let (ttl, repo) = (self.config().refs_ttl, key.hash());
        let lacking = missing(&ids);
        if lacking.is_empty() || self.misses.all_recent(repo, &lacking, ttl) {
            return Ok(Resolved { ids, fetched: false });
        }
        // The first answer goes before the second is made: a caller's
        // budget covers one resolve at a time.
        drop((lacking, ids));
        self.repo(key, auth, Need::Fetch).await?;
        let ids = crate::repo::plumbing::resolve(mirror, names).await?;
        self.misses.remember(repo, &missing(&ids), ttl);
        Ok(Resolved { ids, fetched: true })
    }
}
