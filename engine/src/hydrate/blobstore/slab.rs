//! Slabs: small blobs appended to a few large files instead of one file
//! each, so landing a source tree costs a write per group of blobs, not an
//! inode per blob (creating ~5,000 inodes was as much work as the rest of
//! a cold whole-tree read).
//!
//! ```text
//! DATA/blobs/slabs/NNNNNNNN.slab   blob bytes, back to back, nothing else
//! DATA/blobs/slabs/NNNNNNNN.idx    one 32-byte record per blob in the slab:
//!                                  oid (20), offset (u64 LE), length (u32 LE)
//! ```
//!
//! Bytes are written before their records, both without fdatasync: after
//! a crash a record may name bytes that never reached the disk, which the
//! store's check of each blob against its id on its first open catches
//! (as it does for a torn blob file). A record past the slab's end, or a
//! torn last record, is dropped when the slabs are read at start.
//!
//! This module owns the format and the files; which blob is where, and
//! what is evicted, is the store's (`mod.rs`). It never decides policy.

use super::super::want::Oid;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const RECORD_BYTES: usize = 32;

/// One slab's file, shared by the store and every reader of its blobs.
pub struct SlabFile {
    pub id: u32,
    file: File,
    evicted: AtomicBool,
}

impl SlabFile {
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }

    pub fn mark_evicted(&self) {
        self.evicted.store(true, Ordering::Relaxed);
    }
}

/// Where slab `id` and its records live under `dir`.
pub fn paths(dir: &Path, id: u32) -> (PathBuf, PathBuf) {
    (dir.join(format!("{id:08}.slab")), dir.join(format!("{id:08}.idx")))
}

/// Removes slab `id`'s files (readers holding it keep reading).
pub fn remove(dir: &Path, id: u32) {
    let (slab, idx) = paths(dir, id);
    let _ = std::fs::remove_file(idx);
    let _ = std::fs::remove_file(slab);
}

/// A blob's record: where in its slab it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub oid: Oid,
    pub offset: u64,
    pub len: u32,
}

impl Record {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.oid);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Record {
        let mut oid = [0u8; 20];
        oid.copy_from_slice(&b[..20]);
        let offset = u64::from_le_bytes(b[20..28].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(b[28..32].try_into().expect("4 bytes"));
        Record { oid, offset, len }
    }
}

/// A slab found at start: its file, its length on disk, when it was last
/// written, and the records that fit inside it.
pub struct Found {
    pub slab: Arc<SlabFile>,
    pub bytes: u64,
    pub written: std::time::SystemTime,
    pub records: Vec<Record>,
}

/// Reads every slab under `dir`; a slab without its records (or records
/// without their slab) is removed. Also the id the next slab takes.
pub fn scan(dir: &Path) -> std::io::Result<(Vec<Found>, u32)> {
    let mut ids = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((stem, ext)) = name.split_once('.') else { continue };
        if let (Ok(id), "slab" | "idx") = (stem.parse::<u32>(), ext) {
            ids.insert(id);
        }
    }
    let next = ids.last().map_or(0, |id| id + 1);
    let mut found = Vec::new();
    for id in ids {
        let (slab_path, idx_path) = paths(dir, id);
        let (Ok(file), Ok(idx)) = (File::options().read(true).write(true).open(&slab_path), std::fs::read(&idx_path))
        else {
            remove(dir, id);
            continue;
        };
        let meta = file.metadata()?;
        let bytes = meta.len();
        let records = idx
            .chunks_exact(RECORD_BYTES)
            .map(Record::decode)
            .filter(|r| r.offset.checked_add(u64::from(r.len)).is_some_and(|end| end <= bytes))
            .collect();
        let written = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        found.push(Found {
            slab: Arc::new(SlabFile { id, file, evicted: AtomicBool::new(false) }),
            bytes,
            written,
            records,
        });
    }
    Ok((found, next))
}

/// The slab being appended to.
pub struct Appender {
    pub slab: Arc<SlabFile>,
    idx: File,
    /// Bytes written so far: where the next blob goes.
    pub len: u64,
}

impl Appender {
    /// Creates slab `id` under `dir`.
    pub fn create(dir: &Path, id: u32) -> std::io::Result<Appender> {
        let (slab_path, idx_path) = paths(dir, id);
        let file = File::options().read(true).write(true).create_new(true).open(&slab_path)?;
        let idx = match File::options().append(true).create_new(true).open(&idx_path) {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&slab_path);
                return Err(e);
            }
        };
        Ok(Appender { slab: Arc::new(SlabFile { id, file, evicted: AtomicBool::new(false) }), idx, len: 0 })
    }

    /// Appends `blobs` (bytes first, then their records) and returns each
    /// one's record. On an error nothing is recorded past what was
    /// already, and the slab should not be appended to again.
    pub fn append(&mut self, blobs: &[(Oid, &[u8])]) -> std::io::Result<Vec<Record>> {
        let mut records = Vec::with_capacity(blobs.len());
        let mut at = self.len;
        for (oid, bytes) in blobs {
            let len = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("a blob too large for a slab"))?;
            self.slab.file.write_all_at(bytes, at)?;
            records.push(Record { oid: *oid, offset: at, len });
            at += u64::from(len);
        }
        let mut encoded = Vec::with_capacity(records.len() * RECORD_BYTES);
        for r in &records {
            r.encode(&mut encoded);
        }
        self.idx.write_all(&encoded)?;
        self.len = at;
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_that_do_not_fit_their_slab_and_a_torn_last_record_are_dropped() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut a = Appender::create(dir.path(), 3).expect("create");
        let got = a.append(&[([1; 20], b"hello"), ([2; 20], b"world!")]).expect("append");
        assert_eq!(got[1], Record { oid: [2; 20], offset: 5, len: 6 });
        drop(a);
        let (slab, idx) = paths(dir.path(), 3);
        // The second blob's bytes cut short (a crash before they reached
        // the disk), and half a third record.
        std::fs::File::options().write(true).open(&slab).expect("open").set_len(8).expect("cut");
        std::fs::File::options().append(true).open(&idx).expect("open").write_all(&[9; 16]).expect("tear");
        // A slab with no records, and records with no slab.
        std::fs::write(dir.path().join("00000007.slab"), b"x").expect("write");
        std::fs::write(dir.path().join("00000008.idx"), [0u8; 32]).expect("write");
        let (found, next) = scan(dir.path()).expect("scan");
        assert_eq!(next, 9);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].records, vec![Record { oid: [1; 20], offset: 0, len: 5 }]);
        assert!(!dir.path().join("00000007.slab").exists() && !dir.path().join("00000008.idx").exists());
    }
}
