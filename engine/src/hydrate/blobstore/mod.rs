//! The local tier's blob store: hydrated git blobs, small ones in slabs,
//! larger ones in a file each.
//!
//! ```text
//! DATA/blobs/slabs/*    blobs of at most HYDRATE_SMALL_BLOB_BYTES, appended
//!                       to slab files (`slab.rs`: the format)
//! DATA/blobs/HH/OID     a larger blob's bytes, exactly: no header, no trailer
//! DATA/blobs/tmp/*      blobs landing; wiped on start
//! ```
//!
//! (an `HH` directory is made by the first blob file that lands in it:
//! a store on the kernel read path may never need one, and 256 of them
//! made at open were a fifth of a 100k-file mount's time to ready.)
//!
//! `OID` is the blob's 40-hex git id and `HH` its first two digits. A blob
//! file holds the blob's bytes and nothing else, so the mount can hand it
//! to the kernel as a FUSE passthrough backing file. A mount on that read
//! path lands small blobs as files too ([`SmallBlobs::OwnFiles`]), and a
//! slab's blob it opens is copied out to its own file first. Everything
//! else reads a [`LocalBlob`]: a range of a file, whichever kind.
//!
//! The checksum is the name: a blob's git id is the SHA-1 of its bytes.
//! [`fetch`](super::fetch) checks it before a blob lands; a blob found on
//! disk at start is checked again on its first open, so a blob landed
//! without an fdatasync (the latency a first read would feel) and torn by
//! a power loss is dropped and fetched again, never served. A mismatch
//! forgets the blob (and removes its own file).
//!
//! Capacity is in bytes on disk. Eviction takes the least recently opened
//! first, down to `HYDRATE_EVICT_TO_PERCENT` of it: a blob file by its own
//! last open, a slab whole by the last open of any blob in it (its disk
//! space comes back only whole), never the slab being appended to. A
//! slab is at most 1/16 of the capacity (and 64 MiB), so that granularity
//! costs little. An evicted blob that is open keeps reading: its
//! [`LocalBlob`] holds the file.
//!
//! It is shared by the mount's FUSE threads (open) and the owner shard's
//! landing threads (land, evict) behind one mutex that is held for map
//! updates only, never across I/O; appends to the slab take a second one
//! (always before the first), so they go one group at a time.

mod local;
mod slab;

pub use local::LocalBlob;

use super::error::HydrateError;
use super::want::{hex, Oid};
use crate::limits::{HYDRATE_EVICT_TO_PERCENT, HYDRATE_SLAB_MAX_BYTES, HYDRATE_SMALL_BLOB_BYTES};
use slab::{Appender, SlabFile};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Where small blobs land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmallBlobs {
    /// Appended to slabs: the fast way, for reads the daemon answers.
    Slabs,
    /// A file each, as a passthrough backing file must be.
    OwnFiles,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Own,
    Slab { id: u32, offset: u64 },
}

struct Held {
    len: u64,
    place: Place,
    /// Checked against its oid in this process (landed, or read whole).
    verified: bool,
    /// Access order: higher is more recent.
    tick: u64,
}

struct Slab {
    file: Arc<SlabFile>,
    /// Bytes on disk (blobs since replaced or dropped included).
    bytes: u64,
    /// The last open (or landing) of a blob in it.
    tick: u64,
}

#[derive(Default)]
struct Inner {
    blobs: HashMap<Oid, Held>,
    slabs: HashMap<u32, Slab>,
    /// The slab being appended to: never evicted.
    active: Option<u32>,
    bytes: u64,
    tick: u64,
}

impl Inner {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Forgets `oid`; the bytes of its own file go with it (a slab's stay
    /// counted until the slab goes). Whether it had its own file.
    fn forget(&mut self, oid: &Oid) -> bool {
        match self.blobs.remove(oid) {
            Some(Held { place: Place::Own, len, .. }) => {
                self.bytes -= len;
                true
            }
            _ => false,
        }
    }
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

/// A victim of eviction.
enum Victim {
    Own(Oid),
    Slab(u32),
}

/// Runs `op`, which puts a file at `path`; if `path`'s `HH` directory is
/// not there yet (see the module doc), makes it and runs `op` again.
fn in_fanout_dir<T>(path: &Path, op: impl Fn() -> std::io::Result<T>) -> std::io::Result<T> {
    match op() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(path.parent().expect("blob paths have a parent"))?;
            op()
        }
        r => r,
    }
}

/// See the module doc.
pub struct BlobStore {
    root: PathBuf,
    slab_dir: PathBuf,
    capacity_bytes: u64,
    slab_bytes: u64,
    /// Whether small blobs get a file each ([`SmallBlobs::OwnFiles`]):
    /// set at open, and from then on by the first passthrough mount a
    /// daemon serving many mounts adds ([`BlobStore::give_every_blob_its_file`]).
    own_files: std::sync::atomic::AtomicBool,
    inner: Mutex<Inner>,
    appender: Mutex<Option<Appender>>,
    next_slab: AtomicU32,
    pub counters: BlobCounters,
}

impl BlobStore {
    /// Opens (creating) the store under `data_dir`, wipes what was landing,
    /// and learns what is there.
    pub fn open_dir(data_dir: &Path, capacity_bytes: u64, small: SmallBlobs) -> Result<Arc<BlobStore>, HydrateError> {
        let root = data_dir.join("blobs");
        let tmp = root.join("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| HydrateError::store("creating", &tmp, e))?;
        let slab_dir = root.join("slabs");
        std::fs::create_dir_all(&slab_dir).map_err(|e| HydrateError::store("creating", &slab_dir, e))?;
        // Everything found, oldest first, so access order survives.
        enum Was {
            Own(Oid, u64),
            Slab(slab::Found),
        }
        let mut found: Vec<(std::time::SystemTime, Was)> = Vec::new();
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
                found.push((meta.accessed().unwrap_or(std::time::UNIX_EPOCH), Was::Own(oid, meta.len())));
            }
        }
        let (slabs, next_slab) = slab::scan(&slab_dir).map_err(|e| HydrateError::store("reading", &slab_dir, e))?;
        found.extend(slabs.into_iter().map(|s| (s.written, Was::Slab(s))));
        found.sort_by_key(|(at, _)| *at);
        let mut inner = Inner::default();
        for (_, was) in found {
            let tick = inner.next_tick();
            match was {
                Was::Own(oid, len) => {
                    inner.bytes += len;
                    inner.blobs.insert(oid, Held { len, place: Place::Own, verified: false, tick });
                }
                Was::Slab(s) => {
                    let id = s.slab.id;
                    inner.bytes += s.bytes;
                    for r in s.records {
                        let place = Place::Slab { id, offset: r.offset };
                        inner.blobs.insert(r.oid, Held { len: r.len.into(), place, verified: false, tick });
                    }
                    inner.slabs.insert(id, Slab { file: s.slab, bytes: s.bytes, tick });
                }
            }
        }
        let slab_bytes = (capacity_bytes / 16).clamp(1, HYDRATE_SLAB_MAX_BYTES);
        let store = Arc::new(BlobStore {
            root,
            slab_dir,
            capacity_bytes,
            slab_bytes,
            own_files: std::sync::atomic::AtomicBool::new(small == SmallBlobs::OwnFiles),
            inner: Mutex::new(inner),
            appender: Mutex::new(None),
            next_slab: AtomicU32::new(next_slab),
            counters: BlobCounters::default(),
        });
        store.evict_to_capacity(None);
        Ok(store)
    }

    /// From now on every blob lands as its own file, and a slab's blob is
    /// copied out to one on its next open (a passthrough mount joined a
    /// daemon whose first mount used slabs). Never undone while open.
    pub fn give_every_blob_its_file(&self) {
        self.own_files.store(true, std::sync::atomic::Ordering::Release);
    }

    fn own_files(&self) -> bool {
        self.own_files.load(std::sync::atomic::Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding it left plain counters behind, still true.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where blob `oid` lives once published as its own file.
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

    /// Blob `oid` for reading if it is here and whole. A blob not yet
    /// checked in this process is read and hashed first; a mismatch (or a
    /// file gone) forgets it and answers None, so the caller fetches it.
    pub fn open(&self, oid: &Oid) -> Result<Option<LocalBlob>, HydrateError> {
        let (held_len, place, verified, slab) = {
            let mut inner = self.lock();
            let tick = inner.next_tick();
            let Some(h) = inner.blobs.get_mut(oid) else { return Ok(None) };
            h.tick = tick;
            let (len, place, verified) = (h.len, h.place, h.verified);
            let slab = match place {
                Place::Own => None,
                Place::Slab { id, .. } => inner.slabs.get_mut(&id).map(|s| {
                    s.tick = tick;
                    s.file.clone()
                }),
            };
            (len, place, verified, slab)
        };
        let blob = match (place, slab) {
            (Place::Slab { offset, .. }, Some(slab)) => LocalBlob::in_slab(slab, offset, held_len),
            (Place::Slab { .. }, None) => return Ok(None),
            (Place::Own, _) => {
                let path = self.path_of(oid);
                match File::open(&path) {
                    Ok(f) => LocalBlob::own(Arc::new(f), held_len),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        self.lock().forget(oid);
                        return Ok(None);
                    }
                    Err(e) => return Err(HydrateError::store("opening", &path, e)),
                }
            }
        };
        if verified {
            return self.as_laid_out(oid, blob).map(Some);
        }
        let whole = blob.matches(oid).map_err(|e| HydrateError::store("reading", &self.root, e))?;
        if !whole {
            tracing::warn!(oid = %hex(oid), "a hydrated blob on disk does not match its id; dropped, fetching it again");
            self.counters.dropped_corrupt.fetch_add(1, Ordering::Relaxed);
            if self.lock().forget(oid) {
                let _ = std::fs::remove_file(self.path_of(oid));
            }
            return Ok(None);
        }
        if let Some(h) = self.lock().blobs.get_mut(oid) {
            h.verified = true;
        }
        self.as_laid_out(oid, blob).map(Some)
    }

    /// Blob `oid`, which is `blob`, as this store lays blobs out: where
    /// every blob is its own file ([`SmallBlobs::OwnFiles`], a passthrough
    /// mount's backing files), a slab's blob (landed by a mount on another
    /// read path) is copied out first, and is its file's from then on.
    fn as_laid_out(&self, oid: &Oid, blob: LocalBlob) -> Result<LocalBlob, HydrateError> {
        if !self.own_files() || blob.own_file().is_some() {
            return Ok(blob);
        }
        let mut bytes = vec![0u8; blob.len() as usize];
        let got = blob.read_at(&mut bytes, 0).map_err(|e| HydrateError::store("reading", &self.slab_dir, e))?;
        if got != bytes.len() {
            return Err(HydrateError::Store(format!("blob {} was cut short in its slab", hex(oid))));
        }
        self.land_own(oid, &bytes)?;
        let path = self.path_of(oid);
        let file = File::open(&path).map_err(|e| HydrateError::store("opening", &path, e))?;
        Ok(LocalBlob::own(Arc::new(file), bytes.len() as u64))
    }

    /// Publishes a landed, checked blob: renames `tmp` into place, then
    /// evicts down to capacity if it is passed.
    pub fn publish(&self, tmp: &Path, oid: &Oid, len: u64) -> Result<(), HydrateError> {
        let path = self.path_of(oid);
        in_fanout_dir(&path, || std::fs::rename(tmp, &path))
            .map_err(|e| HydrateError::store("publishing", &path, e))?;
        self.index_own(oid, len);
        Ok(())
    }

    /// Lands blobs already checked against their ids: small ones appended
    /// to the slab together, all or none (one write each, one write of
    /// their records); if any is larger, or this store gives every blob
    /// its own file, each is written straight to its own name.
    /// Entering a blob in the index is what makes it visible, after its
    /// bytes are written; one torn by a crash is caught by its hash on its
    /// first open after the restart.
    pub fn land(&self, blobs: &[(Oid, &[u8])]) -> Result<(), HydrateError> {
        if blobs.is_empty() {
            return Ok(());
        }
        if self.own_files() || blobs.iter().any(|(_, b)| b.len() as u64 > HYDRATE_SMALL_BLOB_BYTES) {
            for (oid, bytes) in blobs {
                self.land_own(oid, bytes)?;
            }
            return Ok(());
        }
        let total: u64 = blobs.iter().map(|(_, b)| b.len() as u64).sum();
        let mut appender = self.appender.lock().unwrap_or_else(|p| p.into_inner());
        if appender.as_ref().is_none_or(|a| a.len > 0 && a.len + total > self.slab_bytes) {
            *appender = Some(self.new_slab()?);
        }
        let a = appender.as_mut().expect("made above");
        let records = match a.append(blobs) {
            Ok(r) => r,
            Err(e) => {
                // What it wrote is in no index; the next group starts anew.
                *appender = None;
                return Err(HydrateError::store("appending to", &self.slab_dir, e));
            }
        };
        let replaced: Vec<Oid> = {
            let mut inner = self.lock();
            let tick = inner.next_tick();
            let id = a.slab.id;
            let mut replaced = Vec::new();
            for r in &records {
                if inner.forget(&r.oid) {
                    replaced.push(r.oid);
                }
                let held =
                    Held { len: r.len.into(), place: Place::Slab { id, offset: r.offset }, verified: true, tick };
                inner.blobs.insert(r.oid, held);
            }
            if let Some(s) = inner.slabs.get_mut(&id) {
                s.bytes += total;
                s.tick = tick;
            }
            inner.bytes += total;
            replaced
        };
        drop(appender);
        for oid in replaced {
            let _ = std::fs::remove_file(self.path_of(&oid));
        }
        self.counters.landed_blobs.fetch_add(blobs.len() as u64, Ordering::Relaxed);
        self.counters.landed_bytes.fetch_add(total, Ordering::Relaxed);
        self.evict_to_capacity(None);
        Ok(())
    }

    /// Starts a slab and makes it the one appended to.
    fn new_slab(&self) -> Result<Appender, HydrateError> {
        let id = self.next_slab.fetch_add(1, Ordering::Relaxed);
        let a = Appender::create(&self.slab_dir, id)
            .map_err(|e| HydrateError::store("creating a slab in", &self.slab_dir, e))?;
        let mut inner = self.lock();
        let tick = inner.next_tick();
        inner.slabs.insert(id, Slab { file: a.slab.clone(), bytes: 0, tick });
        inner.active = Some(id);
        Ok(a)
    }

    /// Writes a blob straight to its own name (one create and one write,
    /// no rename: a rename from `tmp/` takes the filesystem-wide rename
    /// lock, and landing threads queued on it), then indexes it.
    fn land_own(&self, oid: &Oid, bytes: &[u8]) -> Result<(), HydrateError> {
        let path = self.path_of(oid);
        let create = || in_fanout_dir(&path, || File::options().write(true).create_new(true).open(&path));
        let mut file = match create() {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Left by a landing that failed, or a copy out of a slab
                // being replaced: in no index as a file.
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
        self.index_own(oid, bytes.len() as u64);
        Ok(())
    }

    /// Enters a blob that just landed whole in its own file in the index.
    fn index_own(&self, oid: &Oid, len: u64) {
        {
            let mut inner = self.lock();
            let tick = inner.next_tick();
            inner.forget(oid);
            inner.blobs.insert(*oid, Held { len, place: Place::Own, verified: true, tick });
            inner.bytes += len;
        }
        self.counters.landed_blobs.fetch_add(1, Ordering::Relaxed);
        self.counters.landed_bytes.fetch_add(len, Ordering::Relaxed);
        self.evict_to_capacity(Some(oid));
    }

    /// Removes the least recently opened blob files and slabs while over
    /// capacity, never `keep` (a blob just landed for a waiting open, even
    /// one larger than the whole cache: it goes on the next landing) nor
    /// the slab being appended to.
    pub fn evict_to_capacity(&self, keep: Option<&Oid>) {
        let (victims, blobs) = {
            let mut inner = self.lock();
            if inner.bytes <= self.capacity_bytes {
                return;
            }
            let target = self.capacity_bytes / 100 * HYDRATE_EVICT_TO_PERCENT;
            let mut order: Vec<(u64, u64, Victim)> = inner
                .blobs
                .iter()
                .filter(|(o, h)| h.place == Place::Own && Some(*o) != keep)
                .map(|(o, h)| (h.tick, h.len, Victim::Own(*o)))
                .collect();
            order.extend(
                inner
                    .slabs
                    .iter()
                    .filter(|(id, _)| Some(**id) != inner.active)
                    .map(|(id, s)| (s.tick, s.bytes, Victim::Slab(*id))),
            );
            order.sort_unstable_by_key(|(tick, _, _)| *tick);
            let mut out = Vec::new();
            let mut gone = 0u64;
            for (_, len, victim) in order {
                if inner.bytes <= target {
                    break;
                }
                inner.bytes -= len;
                match &victim {
                    Victim::Own(oid) => {
                        inner.blobs.remove(oid);
                        gone += 1;
                    }
                    Victim::Slab(id) => {
                        if let Some(s) = inner.slabs.remove(id) {
                            s.file.mark_evicted();
                        }
                        let before = inner.blobs.len();
                        inner.blobs.retain(|_, h| !matches!(h.place, Place::Slab { id: i, .. } if i == *id));
                        gone += (before - inner.blobs.len()) as u64;
                    }
                }
                out.push(victim);
            }
            (out, gone)
        };
        for victim in &victims {
            match victim {
                Victim::Own(oid) => {
                    let _ = std::fs::remove_file(self.path_of(oid));
                }
                Victim::Slab(id) => slab::remove(&self.slab_dir, *id),
            }
        }
        self.counters.evicted_blobs.fetch_add(blobs, Ordering::Relaxed);
    }
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
        let store = BlobStore::open_dir(dir.path(), 1 << 20, SmallBlobs::Slabs).expect("open");
        land(&store, &oid, b"hello");
        assert!(store.open(&oid).expect("open").is_some());
        drop(store);
        // A torn write (power loss after the rename) looks like this.
        std::fs::write(
            BlobStore::open_dir(dir.path(), 1 << 20, SmallBlobs::Slabs).expect("open").path_of(&oid),
            b"hel",
        )
        .expect("tear");
        let store = BlobStore::open_dir(dir.path(), 1 << 20, SmallBlobs::Slabs).expect("reopen");
        assert!(store.contains(&oid));
        assert!(store.open(&oid).expect("open").is_none(), "a torn blob is never opened");
        assert!(!store.contains(&oid) && !store.path_of(&oid).exists(), "and it is removed");
        assert_eq!(store.counters.dropped_corrupt.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn eviction_takes_the_least_recently_opened_first() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = BlobStore::open_dir(dir.path(), 3000, SmallBlobs::Slabs).expect("open");
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

    #[test]
    fn small_blobs_share_slabs_are_checked_after_a_restart_and_evicted_a_slab_at_a_time() {
        let dir = tempfile::tempdir().expect("tmp");
        let hello = crate::tree::parse_oid(HELLO).expect("hex");
        let store = BlobStore::open_dir(dir.path(), 1 << 20, SmallBlobs::Slabs).expect("open");
        store.land(&[(hello, b"hello"), ([5; 20], b"other")]).expect("land");
        let blob = store.open(&hello).expect("open").expect("here");
        assert!(blob.own_file().is_none(), "a small blob lives in a slab");
        let mut buf = [0u8; 16];
        let n = blob.read_at(&mut buf, 0).expect("read");
        assert_eq!(&buf[..n], b"hello");
        let n = blob.read_at(&mut buf, 3).expect("read");
        assert_eq!(&buf[..n], b"lo", "a read stops at the blob's end");
        assert!(!store.path_of(&hello).exists(), "no file of its own");
        drop((store, blob));
        // Opened by a store that gives every blob its own file (a
        // passthrough mount's), it is copied out, and is its file's from
        // then on.
        let store = BlobStore::open_dir(dir.path(), 1 << 20, SmallBlobs::OwnFiles).expect("open");
        let own = store.open(&hello).expect("open").expect("here");
        assert!(own.own_file().is_some() && store.path_of(&hello).exists());
        drop((store, own));
        std::fs::remove_file(
            BlobStore::open_dir(dir.path(), 1 << 20, SmallBlobs::Slabs).expect("open").path_of(&hello),
        )
        .expect("rm");
        // Torn in its slab (as a crash before its bytes reached the disk
        // leaves it): dropped on its first open, never served.
        let store = BlobStore::open_dir(dir.path(), 1 << 20, SmallBlobs::Slabs).expect("reopen");
        assert!(store.contains(&hello), "the slab's record is back after the copy's file went");
        let slab = std::fs::read_dir(dir.path().join("blobs/slabs"))
            .expect("ls")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "slab"))
            .expect("a slab");
        let mut bytes = std::fs::read(&slab).expect("read");
        bytes[1] ^= 1;
        std::fs::write(&slab, &bytes).expect("tear");
        assert!(store.open(&hello).expect("open").is_none(), "a torn blob is never opened");
        assert!(!store.contains(&hello));
        assert_eq!(store.counters.dropped_corrupt.load(Ordering::Relaxed), 1);
        drop(store);
        // A capacity of 16 KiB makes slabs of 1 KiB: each group of 600
        // bytes starts a new one, and the oldest go whole.
        let dir = tempfile::tempdir().expect("tmp");
        let store = BlobStore::open_dir(dir.path(), 16 << 10, SmallBlobs::Slabs).expect("open");
        let ids: Vec<Oid> = (0..100u8).map(|i| [i + 1; 20]).collect();
        for pair in ids.chunks(2) {
            store.land(&[(pair[0], &[1u8; 300]), (pair[1], &[2u8; 300])]).expect("land");
            assert!(store.usage().1 <= 16 << 10, "within capacity: {:?}", store.usage());
        }
        assert!(!store.contains(&ids[0]) && !store.contains(&ids[1]), "the oldest slab went whole");
        assert!(store.contains(&ids[99]), "the newest stays");
        let slabs = std::fs::read_dir(dir.path().join("blobs/slabs")).expect("ls").count();
        // Two files a slab, two blobs a slab.
        assert_eq!(slabs as u64, store.usage().0, "evicted slabs' files are removed");
        assert_eq!(store.counters.evicted_blobs.load(Ordering::Relaxed), 100 - store.usage().0);
    }
}
