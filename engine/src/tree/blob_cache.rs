//! Blobs the node served to mounts lately, kept in memory, node-wide: a
//! tree that many mounts read (a fleet's CI jobs at one commit, a mount
//! remounted on a fresh data dir) is inflated from its pack and hashed
//! once, then served from here. Inflating and hashing were most of what
//! serving a tree cost (git/git: zlib 35% and SHA-1 11% of the node's
//! time).
//!
//! - Keyed by repo and blob id: a blob is served to a request for a repo
//!   only if it came from that repo's mirror, so the cache never lets one
//!   repo's reader see another's blob.
//! - Only blobs checked against their id enter, and only small ones
//!   (BLOB_SERVE_MAX_BYTES and at most a sixteenth of the budget).
//! - Bounded in bytes (`--blob-cache`; each entry counted with its
//!   overhead); the least recently served go first. 0 turns it off.
//!
//! Shared by every shard's blob reader threads behind one mutex, held
//! for a map lookup or insert, never across I/O. It never reads a mirror.

use bytes::Bytes;
use std::num::NonZeroUsize;
use std::sync::Mutex;

/// Bytes an entry costs past its data (key, list node, table slot).
const ENTRY_OVERHEAD_BYTES: usize = 96;

type Key = (u128, [u8; 20]);

struct Weight;

impl clru::WeightScale<Key, Bytes> for Weight {
    fn weight(&self, _: &Key, data: &Bytes) -> usize {
        data.len() + ENTRY_OVERHEAD_BYTES
    }
}

pub struct BlobCache {
    max_bytes: usize,
    /// None when the budget is 0.
    lru: Option<Mutex<clru::CLruCache<Key, Bytes, std::hash::RandomState, Weight>>>,
}

impl std::fmt::Debug for BlobCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobCache").field("max_bytes", &self.max_bytes).finish_non_exhaustive()
    }
}

impl BlobCache {
    /// A cache of at most `max_bytes` (0: none).
    pub fn new(max_bytes: u64) -> std::sync::Arc<Self> {
        let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let lru = NonZeroUsize::new(max_bytes)
            .map(|cap| Mutex::new(clru::CLruCache::with_config(clru::CLruCacheConfig::new(cap).with_scale(Weight))));
        std::sync::Arc::new(Self { max_bytes, lru })
    }

    /// Blob `oid` of repo `repo` (its key's hash), if served lately.
    pub fn get(&self, repo: u128, oid: &[u8; 20]) -> Option<Bytes> {
        let mut lru = self.lru.as_ref()?.lock().unwrap_or_else(|p| p.into_inner());
        lru.get(&(repo, *oid)).cloned()
    }

    /// Keeps `data`, already checked to be blob `oid` of `repo`.
    pub fn put(&self, repo: u128, oid: &[u8; 20], data: Bytes) {
        let Some(lru) = &self.lru else { return };
        if data.len() > crate::limits::BLOB_SERVE_MAX_BYTES as usize || data.len() > self.max_bytes / 16 {
            return;
        }
        let _ = lru.lock().unwrap_or_else(|p| p.into_inner()).put_with_weight((repo, *oid), data);
    }

    /// Bytes held now, overhead included.
    #[cfg(test)]
    fn held_bytes(&self) -> usize {
        self.lru.as_ref().map_or(0, |l| l.lock().unwrap_or_else(|p| p.into_inner()).weight())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_fits_evicts_the_least_recent_and_keeps_repos_apart() {
        let cache = BlobCache::new(64 * 1024);
        let blob = |i: u8| Bytes::from(vec![i; 1000]);
        for i in 0..100u8 {
            cache.put(1, &[i; 20], blob(i));
            assert!(cache.held_bytes() <= 64 * 1024, "bounded after {i}");
        }
        assert_eq!(cache.get(1, &[99; 20]), Some(blob(99)), "the newest stays");
        assert_eq!(cache.get(1, &[0; 20]), None, "the oldest went");
        assert_eq!(cache.get(2, &[99; 20]), None, "another repo never sees it");
        cache.put(1, &[200; 20], Bytes::from(vec![0u8; 64 * 1024 / 16 + 1]));
        assert_eq!(cache.get(1, &[200; 20]), None, "a blob over a sixteenth of the budget is not kept");
        let off = BlobCache::new(0);
        off.put(1, &[1; 20], blob(1));
        assert_eq!(off.get(1, &[1; 20]), None);
        assert_eq!(off.held_bytes(), 0);
    }
}
