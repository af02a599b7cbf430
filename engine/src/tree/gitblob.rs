//! Large blobs gix would inflate whole and `bigblob.rs` cannot stream: a
//! delta in a pack, or a loose object (a small fetch unpacks what it
//! brings). git rebuilds them: `git cat-file blob` writes the bytes to a
//! pipe, and the node reads them in bounded chunks.
//!
//! The memory a rebuild takes is git's, not the shard's: git streams a
//! loose blob, but holds a delta's base and result whole. So a delta is
//! rebuilt only up to `BLOB_REBUILD_MAX_BYTES`, and one at a time per node
//! (a lock all blob readers share); a loose blob up to
//! `BLOB_STREAM_MAX_BYTES`, like a packed one. Every git here runs with the
//! no-code config (`repo::untrusted`) and without filters, so a mirror's
//! files can make it run nothing.
//!
//! What this module must never do: leave a git process behind (its reader
//! kills and reaps it when dropped), or read more than the blob's size.

use crate::repo::git::Git;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Stdio};
use std::sync::{Mutex, MutexGuard};

/// Held while a delta is rebuilt: one at a time per node.
static REBUILDING: Mutex<()> = Mutex::new(());

/// A blob git will write out.
pub struct GitBlob {
    mirror: PathBuf,
    hex: String,
    pub size: u64,
}

/// The bytes of one `git cat-file blob`; the process dies with it.
pub struct GitReader {
    child: Child,
    out: std::io::Take<ChildStdout>,
}

impl GitBlob {
    pub fn new(mirror: &Path, oid: &[u8; 20], size: u64) -> Self {
        Self { mirror: mirror.to_owned(), hex: crate::tree::oid_hex(oid), size }
    }

    /// Takes the node's one rebuild turn (a delta holds git's memory).
    pub fn rebuild_turn() -> MutexGuard<'static, ()> {
        // A reader that panicked held nothing a later one needs.
        REBUILDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts git writing the blob out.
    pub fn reader(&self) -> std::io::Result<GitReader> {
        let mut child = Git::new(["cat-file", "blob", self.hex.as_str()])
            .dir(&self.mirror)
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let Some(out) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other("git cat-file started without its stdout"));
        };
        Ok(GitReader { child, out: out.take(self.size) })
    }

    /// Whether git's bytes are the blob `oid` (one whole pass).
    pub fn verify(&self, oid: &[u8; 20]) -> bool {
        self.reader().is_ok_and(|r| crate::tree::bigblob::hashes_to(oid, self.size, r))
    }
}

impl Read for GitReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.out.read(buf)
    }
}

impl Drop for GitReader {
    fn drop(&mut self) {
        // Done or not, it goes: a reader dropped early (a client gone) must
        // not leave git writing into a pipe nobody reads.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
