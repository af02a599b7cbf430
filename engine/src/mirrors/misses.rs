//! Names a mirror lacked after a fetch, remembered for the refs TTL, so a
//! client repeating a request for an unknown commit costs the upstream one
//! fetch per TTL, not one per request.
//!
//! [`MissCache`] is per shard (the shard that got the request checks it,
//! with no hop): a node fetches at most once per shard per TTL for one
//! name. It is bounded ([`MISS_CACHE_MAX`]): past the bound the expired
//! entries go, and if all are fresh the cache starts over, which costs
//! only fetches. [`Mirrors::resolve_fetching`] is the one way the faces ask
//! "resolve these, fetching once if needed".

use crate::limits::MISS_CACHE_MAX;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// (repo hash, name) to when a fetch last failed to bring it.
#[derive(Default)]
pub struct MissCache {
    seen: RefCell<HashMap<(u128, String), Instant>>,
}

impl MissCache {
    /// Whether every one of `names` was missed within `ttl`.
    pub(super) fn all_recent(&self, repo: u128, names: &[&String], ttl: Duration) -> bool {
        let seen = self.seen.borrow();
        !names.is_empty() && names.iter().all(|n| seen.get(&(repo, (*n).clone())).is_some_and(|at| at.elapsed() < ttl))
    }

    pub(super) fn remember(&self, repo: u128, names: &[&String], ttl: Duration) {
        let mut seen = self.seen.borrow_mut();
        if seen.len() + names.len() > MISS_CACHE_MAX {
            seen.retain(|_, at| at.elapsed() < ttl);
            if seen.len() + names.len() > MISS_CACHE_MAX {
                seen.clear();
            }
        }
        let now = Instant::now();
        for n in names.iter().take(MISS_CACHE_MAX) {
            seen.insert((repo, (*n).clone()), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_expire_and_stay_bounded() {
        let c = MissCache::default();
        let (a, b) = ("a".to_string(), "b".to_string());
        let ttl = Duration::from_secs(60);
        assert!(!c.all_recent(1, &[&a], ttl));
        c.remember(1, &[&a], ttl);
        assert!(c.all_recent(1, &[&a], ttl));
        assert!(!c.all_recent(1, &[&a, &b], ttl), "one name never missed: fetch");
        assert!(!c.all_recent(2, &[&a], ttl), "per repo");
        assert!(!c.all_recent(1, &[&a], Duration::ZERO), "expired");
        let many: Vec<String> = (0..MISS_CACHE_MAX + 10).map(|i| i.to_string()).collect();
        for n in &many {
            c.remember(3, &[n], ttl);
        }
        assert!(c.seen.borrow().len() <= MISS_CACHE_MAX);
    }
}
