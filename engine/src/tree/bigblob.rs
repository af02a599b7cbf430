//! Blobs too large to read whole (over `BLOB_SERVE_MAX_BYTES`), streamed
//! straight from their pack.
//!
//! gix inflates a packed object whole into memory; a multi-GiB asset must
//! not be. A large blob that is stored whole in a pack (not as a delta: git
//! does not delta files over `core.bigFileThreshold`, 512 MiB by default,
//! and rarely finds a base for big unique assets) is one zlib stream at a
//! known pack offset, so it is inflated as it is read, in bounded chunks.
//! A deltified or loose large blob is git's to rebuild (`gitblob.rs`).
//!
//! The pack index and pack are read with gix-pack; every byte comes from
//! the mirror, which this node cloned, but the blob is still hashed whole
//! before its first byte is sent (a first pass), so a corrupt pack entry is
//! `unreadable`, never a frame.

use flate2::read::ZlibDecoder;
use std::io::Read;
use std::path::Path;

/// A large blob located in a pack.
pub struct PackedBlob {
    pack: gix::odb::pack::data::File,
    data_offset: u64,
    pub size: u64,
}

/// How a blob is stored in a mirror.
pub enum Stored {
    /// Whole in a pack: streamable here.
    Whole(PackedBlob),
    /// A delta in a pack: rebuilding it takes its base.
    Delta,
    /// In no pack: loose (or absent).
    Unpacked,
}

impl PackedBlob {
    /// Finds how `oid` is stored in `mirror`'s packs.
    pub fn find(mirror: &Path, oid: &[u8; 20]) -> Stored {
        let id = gix::ObjectId::from_bytes_or_panic(oid);
        let packs = mirror.join("objects/pack");
        let Ok(entries) = std::fs::read_dir(&packs) else { return Stored::Unpacked };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "idx") {
                continue;
            }
            let Ok(index) = gix::odb::pack::index::File::at(&path, gix::hash::Kind::Sha1) else { continue };
            let Some(i) = index.lookup(id) else { continue };
            let offset = index.pack_offset_at_index(i);
            let Ok(pack) = gix::odb::pack::data::File::at(path.with_extension("pack"), gix::hash::Kind::Sha1) else {
                continue;
            };
            let Ok(e) = pack.entry(offset) else { continue };
            return match e.header {
                gix::odb::pack::data::entry::Header::Blob => {
                    Stored::Whole(PackedBlob { data_offset: e.data_offset, size: e.decompressed_size, pack })
                }
                _ => Stored::Delta,
            };
        }
        Stored::Unpacked
    }

    /// Its bytes, inflated as they are read.
    pub fn reader(&self) -> Option<impl Read + '_> {
        let compressed = self.pack.entry_slice(self.data_offset..self.pack.data_len() as u64)?;
        Some(ZlibDecoder::new(compressed).take(self.size))
    }

    /// Whether its bytes are the blob `oid` (one whole pass).
    pub fn verify(&self, oid: &[u8; 20]) -> bool {
        self.reader().is_some_and(|r| hashes_to(oid, self.size, r))
    }
}

/// Whether `r` yields exactly the `size` bytes of the blob `oid`.
pub fn hashes_to(oid: &[u8; 20], size: u64, mut r: impl Read) -> bool {
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    hasher.update(format!("blob {size}\0").as_bytes());
    let mut buf = vec![0u8; 1 << 20];
    let mut seen = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                seen += n as u64;
                hasher.update(&buf[..n]);
            }
            Err(_) => return false,
        }
    }
    seen == size && hasher.try_finalize().is_ok_and(|h| h.as_bytes() == oid.as_slice())
}
