//! Open file handles: what a FUSE `fh` stands for until its release.
//!
//! A passthrough open keeps its `BackingId` here: the kernel reads the
//! backing file for as long as the handle lives, and dropping the id early
//! turns those reads into EIO. The kernel binds one backing file to an
//! inode while any passthrough open of it lives, and refuses (EIO) an open
//! that names another; so ids are shared per inode ([`Handles::backing`])
//! and the last release drops it. A daemon-served open keeps the blob
//! ([`LocalBlob`]: its file), so a blob evicted while open still reads its
//! bytes.
//!
//! Where the kernel opens files itself (no FUSE open, [`InodeFiles`]), a
//! read names only its inode: each inode's blob is kept here, up to a
//! bound, so a read of a page not in the kernel's cache is one pread.

use fuser::BackingId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use trove_engine::hydrate::blobstore::LocalBlob;

pub enum Open {
    /// An empty file: nothing to read, nothing to hydrate.
    Empty,
    /// Reads come to the daemon and are answered from this blob.
    Served(LocalBlob),
    /// The kernel reads the backing file itself.
    Passthrough(Arc<Backing>),
}

/// A backing file handed to the kernel (the blob's own file), and its id.
pub struct Backing {
    pub blob: LocalBlob,
    pub id: BackingId,
}

#[derive(Default)]
pub struct Handles {
    open: Mutex<HashMap<u64, Open>>,
    /// The live backing of each inode with a passthrough open.
    by_inode: Mutex<HashMap<u64, std::sync::Weak<Backing>>>,
    next: AtomicU64,
}

impl Handles {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, open: Open) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(fh, open);
        fh
    }

    /// The blob a read of `fh` comes from; Err for an empty file, None
    /// for an unknown handle.
    pub fn served(&self, fh: u64) -> Option<Result<LocalBlob, ()>> {
        match self.lock().get(&fh)? {
            Open::Empty => Some(Err(())),
            Open::Served(b) => Some(Ok(b.clone())),
            Open::Passthrough(b) => Some(Ok(b.blob.clone())),
        }
    }

    /// The backing of inode `ino` while a passthrough open of it lives;
    /// else the one `make` creates (under the lock, so two first opens
    /// racing make one).
    pub fn backing(
        &self,
        ino: u64,
        make: impl FnOnce() -> std::io::Result<Option<Backing>>,
    ) -> std::io::Result<Option<Arc<Backing>>> {
        let mut map = self.by_inode.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get(&ino).and_then(std::sync::Weak::upgrade) {
            return Ok(Some(b));
        }
        let Some(b) = make()? else { return Ok(None) };
        let b = Arc::new(b);
        map.insert(ino, Arc::downgrade(&b));
        Ok(Some(b))
    }

    /// The live backing of `ino`, if a passthrough open of it lives.
    pub fn live_backing(&self, ino: u64) -> Option<Arc<Backing>> {
        let mut map = self.by_inode.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.get(&ino).and_then(std::sync::Weak::upgrade);
        if b.is_none() {
            map.remove(&ino);
        }
        b
    }

    pub fn release(&self, fh: u64) {
        self.lock().remove(&fh);
    }
}

/// The blob of each inode read without a FUSE open, up to a count and a
/// byte bound; past either the table is emptied and refilled by the reads
/// that follow (a blob is one open of the local store away). The byte
/// bound matters because a blob file the cache evicts keeps its disk space
/// while a descriptor holds it: what this table holds open counts at most
/// that much past `--cache-capacity`. A blob whose slab was evicted is
/// let go on its next read here (holding it would keep the whole slab's
/// space).
pub struct InodeFiles {
    files: Mutex<(HashMap<u64, LocalBlob>, u64)>,
    max: usize,
    max_bytes: u64,
}

impl InodeFiles {
    /// Up to `max` files, of `max_bytes` in all, open at once.
    pub fn new(max: usize, max_bytes: u64) -> InodeFiles {
        InodeFiles { files: Mutex::default(), max: max.max(16), max_bytes }
    }

    pub fn get(&self, ino: u64) -> Option<LocalBlob> {
        let mut guard = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let (files, bytes) = &mut *guard;
        let blob = files.get(&ino)?;
        if blob.evicted() {
            *bytes -= blob.len();
            files.remove(&ino);
            return None;
        }
        Some(blob.clone())
    }

    /// Keeps `blob` as `ino`'s, or the one a racing read kept first.
    pub fn insert(&self, ino: u64, blob: LocalBlob) -> LocalBlob {
        let mut guard = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let (files, bytes) = &mut *guard;
        if let Some(kept) = files.get(&ino) {
            return kept.clone();
        }
        if files.len() >= self.max || *bytes + blob.len() > self.max_bytes {
            files.clear();
            *bytes = 0;
        }
        *bytes += blob.len();
        files.insert(ino, blob.clone());
        blob
    }

    /// Lets go of `ino`'s blob (its file was copied up: reads go to the
    /// overlay from now on).
    pub fn forget(&self, ino: u64) {
        let mut guard = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let (files, bytes) = &mut *guard;
        if let Some(b) = files.remove(&ino) {
            *bytes -= b.len();
        }
    }

    /// Files held now, and their bytes.
    pub fn held(&self) -> (usize, u64) {
        let guard = self.files.lock().unwrap_or_else(|p| p.into_inner());
        (guard.0.len(), guard.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(len: u64) -> LocalBlob {
        LocalBlob::own(Arc::new(tempfile::tempfile().expect("tmp")), len)
    }

    #[test]
    fn inode_files_stay_within_their_count_and_bytes() {
        let t = InodeFiles::new(16, 1000);
        for ino in 0..40 {
            t.insert(ino, file(10));
            let (n, bytes) = t.held();
            assert!(n <= 16 && bytes <= 1000, "{n} files, {bytes} bytes");
        }
        let big = InodeFiles::new(16, 1000);
        big.insert(1, file(600));
        big.insert(2, file(600));
        assert_eq!(big.held(), (1, 600), "the second would pass the bytes: the table starts over");
        assert!(big.get(1).is_none() && big.get(2).is_some());
        let first = big.insert(2, file(600));
        assert!(
            Arc::ptr_eq(first.own_file().expect("own"), big.get(2).expect("kept").own_file().expect("own")),
            "a racing insert gets the kept blob"
        );
        assert_eq!(big.held(), (1, 600), "and is not counted twice");
    }

    #[test]
    fn a_blob_whose_slab_was_evicted_is_let_go() {
        use trove_engine::hydrate::blobstore::{BlobStore, SmallBlobs};
        let dir = tempfile::tempdir().expect("tmp");
        // 16 KiB: slabs of 1 KiB, one per landing of 600 bytes.
        let store = BlobStore::open_dir(dir.path(), 16 << 10, SmallBlobs::Slabs).expect("store");
        // Landed in this process, a blob is not hashed again on open: a
        // made-up id does here.
        let oid = [200u8; 20];
        store.land(&[(oid, b"kept while its slab lives")]).expect("land");
        let t = InodeFiles::new(16, 1 << 20);
        t.insert(7, store.open(&oid).expect("open").expect("here"));
        assert!(t.get(7).is_some());
        for i in 0..40u8 {
            store.land(&[([i + 1; 20], &[0u8; 600])]).expect("land");
        }
        assert!(!store.contains(&oid), "its slab was evicted");
        assert!(t.get(7).is_none(), "and the table let it go");
        assert_eq!(t.held(), (0, 0));
    }
}
