//! The owner shard's in-memory index of its sealed objects.
//!
//! Holds, per object hash, the bytes it takes on disk, its expiry and its
//! access recency (an `Lru`, see lru.rs). It is never shared: only the
//! owner shard touches it, so it needs no lock. The index is rebuilt from
//! the files' trailers on start (see recover.rs).

use crate::store::lru::Lru;

/// What the owner knows of one sealed object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub disk_bytes: u64,
    pub expires_ms: u64,
}

/// Weighted by bytes on disk, so `used_bytes` is what capacity bounds.
#[derive(Debug, Default)]
pub struct Index {
    lru: Lru<u128, Entry>,
}

impl Index {
    pub fn len(&self) -> usize {
        self.lru.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lru.is_empty()
    }

    pub fn used_bytes(&self) -> u64 {
        self.lru.weight()
    }

    pub fn get(&self, hash: u128) -> Option<&Entry> {
        self.lru.get(&hash)
    }

    /// Adds or replaces an object as the most recently used.
    pub fn insert(&mut self, hash: u128, disk_bytes: u64, expires_ms: u64) -> Option<Entry> {
        self.lru.insert(hash, Entry { disk_bytes, expires_ms }, disk_bytes)
    }

    /// Marks an object used now. Unknown hashes are ignored: a touch may
    /// arrive after the object was evicted.
    pub fn touch(&mut self, hash: u128) {
        self.lru.touch(&hash);
    }

    pub fn remove(&mut self, hash: u128) -> Option<Entry> {
        self.lru.remove(&hash)
    }

    /// Removes and returns the least recently used object.
    pub fn pop_lru(&mut self) -> Option<(u128, Entry)> {
        self.lru.pop_lru()
    }

    /// Hashes of objects expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> Vec<u128> {
        self.lru.iter().filter(|(_, e)| e.expires_ms != 0 && e.expires_ms <= now_ms).map(|(h, _)| *h).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_by_access_not_by_write() {
        let mut ix = Index::default();
        ix.insert(1, 10, 0);
        ix.insert(2, 10, 0);
        ix.insert(3, 10, 0);
        ix.touch(1);
        assert_eq!(ix.pop_lru().map(|(h, _)| h), Some(2));
        assert_eq!(ix.pop_lru().map(|(h, _)| h), Some(3));
        assert_eq!(ix.pop_lru().map(|(h, _)| h), Some(1));
        assert_eq!(ix.used_bytes(), 0);
    }

    /// Model check against a simple oracle: a Vec in recency order.
    #[test]
    fn matches_an_oracle_under_random_operations() {
        let mut rng = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut ix = Index::default();
        let mut oracle: Vec<(u128, u64)> = Vec::new();
        for _ in 0..20_000 {
            let h = u128::from(next() % 64);
            match next() % 4 {
                0 | 1 => {
                    let size = next() % 1000;
                    oracle.retain(|(k, _)| *k != h);
                    oracle.push((h, size));
                    ix.insert(h, size, 0);
                }
                2 => {
                    if let Some(p) = oracle.iter().position(|(k, _)| *k == h) {
                        let e = oracle.remove(p);
                        oracle.push(e);
                    }
                    ix.touch(h);
                }
                _ => {
                    let want = if oracle.is_empty() { None } else { Some(oracle.remove(0).0) };
                    assert_eq!(ix.pop_lru().map(|(h, _)| h), want);
                }
            }
            assert_eq!(ix.len(), oracle.len());
            assert_eq!(ix.used_bytes(), oracle.iter().map(|(_, s)| s).sum::<u64>());
        }
    }

    #[test]
    fn finds_expired() {
        let mut ix = Index::default();
        ix.insert(1, 1, 100);
        ix.insert(2, 1, 0);
        ix.insert(3, 1, 300);
        assert_eq!(ix.expired(200), vec![1]);
    }
}
