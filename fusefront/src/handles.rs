//! Open file handles: what a FUSE `fh` stands for until its release.
//!
//! A passthrough open keeps its `BackingId` here: the kernel reads the
//! backing file for as long as the handle lives, and dropping the id early
//! turns those reads into EIO. The kernel binds one backing file to an
//! inode while any passthrough open of it lives, and refuses (EIO) an open
//! that names another; so ids are shared per inode ([`Handles::backing`])
//! and the last release drops it. A daemon-served open keeps the blob's
//! file, so a blob evicted while open still reads its bytes.
//!
//! Where the kernel opens files itself (no FUSE open, [`InodeFiles`]), a
//! read names only its inode: each inode's file is kept open here, up to
//! a bound, so a read of a page not in the kernel's cache is one pread.

use fuser::BackingId;
use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub enum Open {
    /// An empty file: nothing to read, nothing to hydrate.
    Empty,
    /// Reads come to the daemon and are answered from this file.
    Served(Arc<File>),
    /// The kernel reads the backing file itself.
    Passthrough(Arc<Backing>),
}

/// A backing file handed to the kernel, and its id.
pub struct Backing {
    pub file: File,
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

    /// The file a read of `fh` comes from; None for an empty file or an
    /// unknown handle.
    pub fn served(&self, fh: u64) -> Option<Result<Arc<File>, ()>> {
        match self.lock().get(&fh)? {
            Open::Empty => Some(Err(())),
            Open::Served(f) => Some(Ok(f.clone())),
            Open::Passthrough(b) => b.file.try_clone().ok().map(|f| Ok(Arc::new(f))),
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

/// The open file of each inode read without a FUSE open, up to a count
/// and a byte bound; past either the table is emptied and refilled by the
/// reads that follow (an fd is one open of a local file away). The byte
/// bound matters because a blob the cache evicts keeps its disk space while
/// a descriptor holds it: what this table holds open counts at most that
/// much past `--cache-capacity`.
pub struct InodeFiles {
    files: Mutex<(HashMap<u64, Arc<File>>, u64)>,
    max: usize,
    max_bytes: u64,
}

impl InodeFiles {
    /// Up to `max` files, of `max_bytes` in all, open at once.
    pub fn new(max: usize, max_bytes: u64) -> InodeFiles {
        InodeFiles { files: Mutex::default(), max: max.max(16), max_bytes }
    }

    pub fn get(&self, ino: u64) -> Option<Arc<File>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).0.get(&ino).cloned()
    }

    /// Keeps `file` (of `len` bytes) as `ino`'s, or the one a racing read
    /// kept first.
    pub fn insert(&self, ino: u64, file: File, len: u64) -> Arc<File> {
        let file = Arc::new(file);
        let mut guard = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let (files, bytes) = &mut *guard;
        if let Some(kept) = files.get(&ino) {
            return kept.clone();
        }
        if files.len() >= self.max || *bytes + len > self.max_bytes {
            files.clear();
            *bytes = 0;
        }
        *bytes += len;
        files.insert(ino, file.clone());
        file
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

    fn file() -> File {
        tempfile::tempfile().expect("tmp")
    }

    #[test]
    fn inode_files_stay_within_their_count_and_bytes() {
        let t = InodeFiles::new(16, 1000);
        for ino in 0..40 {
            t.insert(ino, file(), 10);
            let (n, bytes) = t.held();
            assert!(n <= 16 && bytes <= 1000, "{n} files, {bytes} bytes");
        }
        let big = InodeFiles::new(16, 1000);
        big.insert(1, file(), 600);
        big.insert(2, file(), 600);
        assert_eq!(big.held(), (1, 600), "the second would pass the bytes: the table starts over");
        assert!(big.get(1).is_none() && big.get(2).is_some());
        let first = big.insert(2, file(), 600);
        assert!(Arc::ptr_eq(&first, &big.get(2).expect("kept")), "a racing insert gets the kept file");
        assert_eq!(big.held(), (1, 600), "and is not counted twice");
    }
}
