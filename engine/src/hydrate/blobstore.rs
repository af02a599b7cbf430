//! The local tier's blob store: hydrated git blobs, one file each.
//!
//! ```text
//! DATA/blobs/HH/OID     the blob's bytes, exactly: no header, no trailer
//! DATA/blobs/tmp/*      blobs landing; wiped on start
//! ```
//!
//! (all 256 `HH` directories are made when the store opens.)
//!
//! ```text
//! ```
//!
//! `OID` is the blob's 40-hex git id and `HH` its first two digits. A file
//! holds the blob's bytes and nothing else, so the mount can hand it to the
//! kernel as a FUSE passthrough backing file: a read at or past EOF sees
//! EOF, never a trailer (the sealed object format of `store/` puts one
//! after the data, which is why blobs do not use it).
//!
//! The checksum is the name: a blob's git id is the SHA-1 of its bytes.
//! [`fetch`](super::fetch) checks it while the blob lands, before it is
//! published (rename from `tmp/`); a blob found on disk at start is checked
//! again on its first open, so a blob published without an fdatasync (the
//! latency a first read would feel) and torn by a power loss is dropped and
//! fetched again, never served. A mismatch removes the file.
//!
//! Capacity is in bytes; eviction takes the least recently opened blobs
//! (access order in memory, file atime across restarts) down to
//! `HYDRATE_EVICT_TO_PERCENT` of it. An evicted blob that is open keeps
//! reading: its descriptor (or passthrough backing file) holds the inode.
//!
//! It is shared by the mount's FUSE threads (open) and the owner shard
//! (publish, evict) behind one mutex that is held for map updates only,
//! never across I/O.

use super::error::HydrateError;
use super::want::{hex, Oid};
use crate::limits::HYDRATE_EVICT_TO_PERCENT;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

struct Held {
    len: u64,
    /// Checked against its oid in this process (landed, or read whole).
    verified: bool,
    /// Access order: higher is more recent.
    tick: u64,
}

#[derive(Default)]
struct Inner {
    blobs: HashMap<Oid, Held>,
    bytes: u64,
    tick: u64,
}

/// What happened to the store since it opened.
#[derive(Debug, Default)]
pub struct BlobCounters {
    pub landed_blobs: AtomicU64,
    pub landed_bytes: AtomicU64,
    pub evicted_blobs: AtomicU64,
    /// Blobs found on disk whose bytes did not match their oid.
    pub dropped_corrupt: AtomicU64,
}

/// See the module doc.
pub struct BlobStore {
    root: PathBuf,
    capacity_bytes: u64,
    inner: Mutex<Inner>,
    pub counters: BlobCounters,
}

impl BlobStore {
    /// Opens (creating) the store under `data_dir`, wipes what was landing,
    /// and learns what is there.
    pub fn open_dir(data_dir: &Path, capacity_bytes: u64) -> Result<Arc<BlobStore>, HydrateError> {
        let root = data_dir.join("blobs");
        let tmp = root.join("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| HydrateError::store("creating", &tmp, e))?;
        // Every HH directory up front: a landing is then one rename.
        for hh in 0..=255u8 {
            let d = root.join(format!("{hh:02x}"));
            std::fs::create_dir_all(&d).map_err(|e| HydrateError::store("creating", &d, e))?;
        }
        let mut found: Vec<(Oid, u64, std::time::SystemTime)> = Vec::new();
        let dirs = std::fs::read_dir(&root).map_err(|e| HydrateError::store("listing", &root, e))?;
        for dir in dirs.flatten() {
            let name = dir.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() != 2 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let Ok(files) = std::fs::read_dir(dir.path()) else { continue };
            for f in files.flatten() {
                let fname = f.file_name();
                let Some(oid) = fname.to_str().and_then(crate::tree::parse_oid) else { continue };
                let Ok(meta) = f.metadata() else { continue };
                found.push((oid, meta.len(), meta.accessed().unwrap_or(std::time::UNIX_EPOCH)));
            }
        }
        found.sort_by_key(|(_, _, at)| *at);
        let mut inner = Inner::default();
        for (oid, len, _) in found {
            inner.tick += 1;
            inner.bytes += len;
            inner.blobs.insert(oid, Held { len, verified: false, tick: inner.tick });
        }
        let store =
            Arc::new(BlobStore { root, capacity_bytes, inner: Mutex::new(inner), counters: BlobCounters::default() });
        store.evict_to_capacity(None);
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding it left plain counters behind, still true.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where blob `oid` lives once published.
    pub fn path_of(&self, oid: &Oid) -> PathBuf {
        let h = hex(oid);
        self.root.join(&h[..2]).join(h)
    }

    /// A fresh name under `tmp/` for `oid` landing.
    pub fn tmp_path(&self, oid: &Oid) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        self.root.join("tmp").join(format!("{}.{}", hex(oid), NEXT.fetch_add(1, Ordering::Relaxed)))
    }

    pub fn contains(&self, oid: &Oid) -> bool {
        self.lock().blobs.contains_key(oid)
    }

    /// Blobs and bytes held.
    pub fn usage(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.blobs.len() as u64, inner.bytes)
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// Opens blob `oid` for reading if it is here and whole. A blob not yet
    /// checked in this process is read and hashed first; a mismatch (or a
    /// file gone) forgets it and answers None, so the caller fetches it.
    pub fn open(&self, oid: &Oid) -> Result<Option<File>, HydrateError> {
        let verified = {
            let mut inner = self.lock();
            inner.tick += 1;
            let tick = inner.tick;
            match inner.blobs.get_mut(oid) {
                None => return Ok(None),
                Some(h) => {
                    h.tick = tick;
                    h.verified
                }
            }
        };
        let path = self.path_of(oid);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.forget(oid);
                return Ok(None);
            }
            Err(e) => return Err(HydrateError::store("opening", &path, e)),
        };
        if verified {
            return Ok(Some(file));
        }
        let whole = matches_file(&file, oid).map_err(|e| HydrateError::store("reading", &path, e))?;
        if !whole {
            tracing::warn!(oid = %hex(oid), "a hydrated blob on disk does not match its id; dropped, fetching it again");
            self.counters.dropped_corrupt.fetch_add(1, Ordering::Relaxed);
            let _ = std::fs::remove_file(&path);
            self.forget(oid);
            return Ok(None);
        }
        if let Some(h) = self.lock().blobs.get_mut(oid) {
            h.verified = true;
        }
        Ok(Some(file))
    }

    fn forget(&self, oid: &Oid) {
        let mut inner = self.lock();
        if let Some(h) = inner.blobs.remove(oid) {
            inner.bytes -= h.len;
        }
    }

    /// Publishes a landed, checked blob: renames `tmp` into place, then
    /// evicts down to capacity if it is passed.
    pub fn publish(&self, tmp: &Path, oid: &Oid, len: u64) -> Result<(), HydrateError> {
        let path = self.path_of(oid);
        std::fs::rename(tmp, &path).map_err(|e| HydrateError::store("publishing", &path, e))?;
        self.index_landed(oid, len);
        Ok(())
    }

    /// Lands a small blob, already checked against `oid`, in place: written
    /// straight to its own name (one create and one write, no rename), then
    /// entered in the index, which is what makes it visible: no open reads
    /// a blob the index does not hold, and one torn by a crash is caught by
    /// its hash on its first open after the restart (as a renamed one
    /// without an fdatasync would be). A rename from `tmp/` takes the
    /// filesystem-wide rename lock, and landing threads queued on it.
    pub fn land_in_place(&self, oid: &Oid, bytes: &[u8]) -> Result<(), HydrateError> {
        let path = self.path_of(oid);
        let create = || std::fs::File::options().write(true).create_new(true).open(&path);
        let mut file = match create() {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Left by a landing that failed, and in no index: replaced.
                let _ = std::fs::remove_file(&path);
                create()
            }
            r => r,
        }
        .map_err(|e| HydrateError::store("creating", &path, e))?;
        if let Err(e) = std::io::Write::write_all(&mut file, bytes) {
            let _ = std::fs::remove_file(&path);
            return Err(HydrateError::store("writing", &path, e));
        }
        drop(file);
        self.index_landed(oid, bytes.len() as u64);
        Ok(())
    }

    /// Enters a blob that just landed whole in the index.
    fn index_landed(&self, oid: &Oid, len: u64) {
        {
            let mut inner = self.lock();
            inner.tick += 1;
            let tick = inner.tick;
            if let Some(old) = inner.blobs.insert(*oid, Held { len, verified: true, tick }) {
                inner.bytes -= old.len;
            }
            inner.bytes += len;
        }
        self.counters.landed_blobs.fetch_add(1, Ordering::Relaxed);
        self.counters.landed_bytes.fetch_add(len, Ordering::Relaxed);
        self.evict_to_capacity(Some(oid));
    }

    /// Removes the least recently opened blobs while over capacity, never
    /// `keep` (a blob just landed for a waiting open, even one larger than
    /// the whole cache: it goes on the next landing).
    pub fn evict_to_capacity(&self, keep: Option<&Oid>) {
        let victims: Vec<Oid> = {
            let mut inner = self.lock();
            if inner.bytes <= self.capacity_bytes {
                return;
            }
            let target = self.capacity_bytes / 100 * HYDRATE_EVICT_TO_PERCENT;
            let mut order: Vec<(u64, Oid, u64)> = inner.blobs.iter().map(|(o, h)| (h.tick, *o, h.len)).collect();
            order.sort_unstable();
            let mut out = Vec::new();
            for (_, oid, len) in order {
                if inner.bytes <= target {
                    break;
                }
                if Some(&oid) == keep {
                    continue;
                }
                inner.blobs.remove(&oid);
                inner.bytes -= len;
                out.push(oid);
            }
            out
        };
        for oid in &victims {
            let _ = std::fs::remove_file(self.path_of(oid));
        }
        self.counters.evicted_blobs.fetch_add(victims.len() as u64, Ordering::Relaxed);
    }
}

/// Whether `file`'s bytes are the blob `oid`, read from its start.
fn matches_file(file: &File, oid: &Oid) -> std::io::Result<bool> {
    let len = file.metadata()?.len();
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    hasher.update(format!("blob {len}\0").as_bytes());
    let mut reader = file;
    let mut buf = vec![0u8; 256 << 10];
    let mut seen = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        seen += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok(seen == len && hasher.try_finalize().is_ok_and(|h| h.as_bytes() == oid.as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"; // printf hello | git hash-object --stdin

    fn land(store: &BlobStore, oid: &Oid, bytes: &[u8]) {
        let tmp = store.tmp_path(oid);
        std::fs::write(&tmp, bytes).expect("write tmp");
        store.publish(&tmp, oid, bytes.len() as u64).expect("publish");
    }

    #[test]
    fn a_blob_on_disk_is_checked_on_its_first_open_after_a_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let oid = crate::tree::parse_oid(HELLO).expect("hex");
        let store = BlobStore::open_dir(dir.path(), 1 << 20).expect("open");
        land(&store, &oid, b"hello");
        assert!(store.open(&oid).expect("open").is_some());
        drop(store);
        // A torn write (power loss after the rename) looks like this.
        std::fs::write(BlobStore::open_dir(dir.path(), 1 << 20).expect("open").path_of(&oid), b"hel").expect("tear");
        let store = BlobStore::open_dir(dir.path(), 1 << 20).expect("reopen");
        assert!(store.contains(&oid));
        assert!(store.open(&oid).expect("open").is_none(), "a torn blob is never opened");
        assert!(!store.contains(&oid) && !store.path_of(&oid).exists(), "and it is removed");
        assert_eq!(store.counters.dropped_corrupt.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn eviction_takes_the_least_recently_opened_first() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = BlobStore::open_dir(dir.path(), 3000).expect("open");
        let ids: Vec<Oid> = (0..3u8).map(|i| [i + 1; 20]).collect();
        for id in &ids {
            land(&store, id, &[7u8; 1000]);
        }
        // Made recent again (these made-up ids fail verification, so an
        // open cannot be what marks them: a second landing does).
        land(&store, &ids[0], &[7u8; 1000]);
        land(&store, &[9; 20], &[7u8; 1000]);
        assert!(store.contains(&ids[0]), "recently landed stays");
        assert!(!store.contains(&ids[1]), "the oldest goes");
        assert!(store.usage().1 <= 3000);
        // A blob larger than the whole cache stays until the next landing.
        land(&store, &[10; 20], &[7u8; 5000]);
        assert!(store.contains(&[10; 20]));
        land(&store, &[11; 20], &[7u8; 10]);
        assert!(!store.contains(&[10; 20]));
    }
}
