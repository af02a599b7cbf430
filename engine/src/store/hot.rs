//! The memory tier of one shard: whole sealed files of small objects.
//!
//! A small object (sealed file <= SMALL_FILE_BYTES) that was read and
//! verified once is kept in memory, up to a byte budget per shard, least
//! recently used out first. A copy remembers the change counter of its
//! object (versions.rs) read before its file was opened, and is served only
//! while that counter has not moved: a PUT that replaced the object, a
//! DELETE, an eviction or an expiry removal on the owner shard is never
//! answered from here. A hit costs one atomic load; it never touches the
//! filesystem.
//!
//! It is per shard and never shared, like everything else a shard owns;
//! any shard caches any object it served. It must never hold bytes that
//! were not checked against their block sums.

use crate::store::format::ObjectMeta;
use crate::store::lru::Lru;
use crate::store::versions::FileVersions;
use bytes::Bytes;

/// A cached small object: its verified trailer and the whole file, copied
/// to the heap so the shard's registered I/O memory only ever holds reads
/// in flight.
#[derive(Clone)]
pub struct HotObject {
    pub meta: ObjectMeta,
    pub whole: Bytes,
    /// The object's change counter before its file was read.
    seen: u64,
}

pub struct HotCache {
    capacity_bytes: u64,
    lru: Lru<u128, HotObject>,
}

impl HotCache {
    pub fn new(capacity_bytes: u64) -> Self {
        Self { capacity_bytes, lru: Lru::default() }
    }

    /// The cached object if its file has not changed since it was read.
    pub fn get(&mut self, hash: u128, versions: &FileVersions) -> Option<HotObject> {
        let hot = self.lru.get(&hash)?;
        if versions.current(hash) != hot.seen {
            self.lru.remove(&hash);
            return None;
        }
        let hot = hot.clone();
        self.lru.touch(&hash);
        Some(hot)
    }

    /// Keeps a verified copy of the whole file, read after the object's
    /// change counter was `seen`.
    pub fn insert(&mut self, hash: u128, meta: ObjectMeta, whole: &[u8], seen: u64) {
        let size = whole.len() as u64;
        if size > self.capacity_bytes {
            return;
        }
        let whole = Bytes::copy_from_slice(whole);
        self.lru.remove(&hash);
        while self.lru.weight() + size > self.capacity_bytes && self.lru.pop_lru().is_some() {}
        self.lru.insert(hash, HotObject { meta, whole, seen }, size);
    }

    pub fn remove(&mut self, hash: u128) {
        self.lru.remove(&hash);
    }
}
