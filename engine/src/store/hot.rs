//! The memory tier of one shard: whole sealed files of small objects.
//!
//! A small object (sealed file <= SMALL_FILE_BYTES) that was read and
//! verified once is kept in memory, up to a byte budget per shard, least
//! recently used out first. A hit is validated against the file on disk
//! with one `statx` of its path (inode and change time): a PUT that
//! replaced it (rename: new inode) or a DELETE/eviction (gone) is never
//! served from here. That statx is a metadata lookup of a hot inode and
//! does not wait on the device.
//!
//! It is per shard and never shared, like everything else a shard owns;
//! any shard caches any object it served.

use crate::store::format::ObjectMeta;
use crate::store::lru::Lru;
use bytes::Bytes;
use std::os::fd::AsFd;
use std::path::Path;

/// Identity of a file version: a rename or rewrite changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileVersion {
    ino: u64,
    ctime_sec: i64,
    ctime_nsec: u32,
}

impl FileVersion {
    pub fn of_fd(fd: impl AsFd) -> Option<FileVersion> {
        rustix::fs::fstat(fd).ok().map(|st| FileVersion {
            ino: st.st_ino,
            ctime_sec: st.st_ctime,
            ctime_nsec: st.st_ctime_nsec as u32,
        })
    }

    pub fn of_path(path: &Path) -> Option<FileVersion> {
        let st = rustix::fs::statx(
            rustix::fs::CWD,
            path,
            rustix::fs::AtFlags::empty(),
            rustix::fs::StatxFlags::INO | rustix::fs::StatxFlags::CTIME,
        )
        .ok()?;
        Some(FileVersion { ino: st.stx_ino, ctime_sec: st.stx_ctime.tv_sec, ctime_nsec: st.stx_ctime.tv_nsec })
    }
}

/// A cached small object: its verified trailer and the whole file, copied
/// to the heap so the shard's registered I/O memory only ever holds reads
/// in flight.
#[derive(Clone)]
pub struct HotObject {
    pub meta: ObjectMeta,
    pub whole: Bytes,
    version: FileVersion,
}

pub struct HotCache {
    capacity_bytes: u64,
    lru: Lru<u128, HotObject>,
}

impl HotCache {
    pub fn new(capacity_bytes: u64) -> Self {
        Self { capacity_bytes, lru: Lru::default() }
    }

    /// The cached object if the file at `path` is still the version cached.
    pub fn get(&mut self, hash: u128, path: &Path) -> Option<HotObject> {
        let cached_version = self.lru.get(&hash)?.version;
        if FileVersion::of_path(path) != Some(cached_version) {
            self.lru.remove(&hash);
            return None;
        }
        self.lru.touch(&hash);
        self.lru.get(&hash).cloned()
    }

    pub fn insert(&mut self, hash: u128, meta: ObjectMeta, whole: &[u8], version: FileVersion) {
        let size = whole.len() as u64;
        if size > self.capacity_bytes {
            return;
        }
        let whole = Bytes::copy_from_slice(whole);
        self.lru.remove(&hash);
        while self.lru.weight() + size > self.capacity_bytes && self.lru.pop_lru().is_some() {}
        self.lru.insert(hash, HotObject { meta, whole, version }, size);
    }

    pub fn remove(&mut self, hash: u128) {
        self.lru.remove(&hash);
    }
}
