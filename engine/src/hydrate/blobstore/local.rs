//! A hydrated blob as a reader holds it: a range of a local file, either
//! the blob's own file or its place in a slab. Cheap to clone; it keeps
//! the file open, so a blob evicted meanwhile keeps reading its bytes.
//!
//! It never looks anything up: the store hands these out.

use super::slab::SlabFile;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

#[derive(Clone)]
enum Source {
    Own(Arc<File>),
    Slab(Arc<SlabFile>),
}

/// See the module doc.
#[derive(Clone)]
pub struct LocalBlob {
    source: Source,
    offset: u64,
    len: u64,
}

impl LocalBlob {
    /// A blob that is the whole of `file`, `len` bytes.
    pub fn own(file: Arc<File>, len: u64) -> LocalBlob {
        LocalBlob { source: Source::Own(file), offset: 0, len }
    }

    pub(super) fn in_slab(slab: Arc<SlabFile>, offset: u64, len: u64) -> LocalBlob {
        LocalBlob { source: Source::Slab(slab), offset, len }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The blob's own file, which holds its bytes and nothing else (what
    /// a FUSE passthrough backing file must be); None for a slab's blob.
    pub fn own_file(&self) -> Option<&Arc<File>> {
        match &self.source {
            Source::Own(f) => Some(f),
            Source::Slab(_) => None,
        }
    }

    /// Whether the slab holding this blob was evicted: its bytes still
    /// read, but holding it keeps the whole slab's disk space, so a
    /// long-lived holder should drop it and open the blob again.
    pub fn evicted(&self) -> bool {
        match &self.source {
            Source::Own(_) => false,
            Source::Slab(s) => s.is_evicted(),
        }
    }

    /// Copies the blob's bytes to the start of `dest` (in the kernel,
    /// with copy_file_range, where both are on one filesystem).
    pub fn copy_to(&self, dest: &File) -> std::io::Result<()> {
        let file = match &self.source {
            Source::Own(f) => &**f,
            Source::Slab(s) => s.file(),
        };
        let (mut from, mut to) = (self.offset, 0u64);
        while to < self.len {
            let want = usize::try_from(self.len - to).unwrap_or(usize::MAX).min(1 << 30);
            match rustix::fs::copy_file_range(file, Some(&mut from), dest, Some(&mut to), want) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::XDEV | rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                    return self.copy_by_reads(dest, to);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// [`LocalBlob::copy_to`] where the kernel cannot copy: from `done` on.
    fn copy_by_reads(&self, dest: &File, mut done: u64) -> std::io::Result<()> {
        let mut buf = vec![0u8; (self.len - done).min(1 << 20) as usize];
        while done < self.len {
            let n = self.read_at(&mut buf, done)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            dest.write_all_at(&buf[..n], done)?;
            done += n as u64;
        }
        Ok(())
    }

    /// Reads the blob's bytes from `pos` into `buf` until it is full or
    /// the blob ends; the bytes read (short only at the blob's end).
    pub fn read_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
        let want = (buf.len() as u64).min(self.len.saturating_sub(pos)) as usize;
        let file = match &self.source {
            Source::Own(f) => &**f,
            Source::Slab(s) => s.file(),
        };
        let mut got = 0;
        while got < want {
            match file.read_at(&mut buf[got..want], self.offset + pos + got as u64) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }

    /// Whether the bytes are the blob `oid` (read whole, SHA-1 of git's
    /// blob header and the bytes).
    pub fn matches(&self, oid: &crate::hydrate::want::Oid) -> std::io::Result<bool> {
        let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
        hasher.update(format!("blob {}\0", self.len).as_bytes());
        let mut buf = vec![0u8; (self.len.min(256 << 10)) as usize];
        let mut pos = 0u64;
        while pos < self.len {
            let n = self.read_at(&mut buf, pos)?;
            if n == 0 {
                return Ok(false);
            }
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        Ok(hasher.try_finalize().is_ok_and(|h| h.as_bytes() == oid.as_slice()))
    }
}
