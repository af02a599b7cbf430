//! Long reads through the page cache: verified on a helper thread, then
//! sent with `sendfile`, so the bytes never pass through user space.
//!
//! A stream over a long range of a sealed file maps each read unit (up to
//! 4 MiB) of a plain (not O_DIRECT) descriptor, locks it in memory, and
//! checks every block against its CRC32C, all on the shard's mapper
//! thread (mapper.rs), where faulting the pages in from disk may block. The mapping
//! then becomes the chunk's bytes. When such a chunk reaches the socket
//! (`crate::net`), [`sendfile_source`] recognises its address and the bytes
//! go out with `sendfile` from the same file at the same offset: the kernel
//! sends the very page-cache pages that were checked. The lock keeps them
//! resident until the chunk is dropped, after its send, so no page can be
//! evicted and read again between the check and the send. Where locking is
//! not allowed (RLIMIT_MEMLOCK without CAP_IPC_LOCK) a unit is sent
//! unlocked: the window is then eviction under memory pressure, between a
//! check and a send microseconds later.
//!
//! This module must never touch a mapping's bytes on a shard thread before
//! its check has finished (a page fault there would stall the shard on the
//! disk), and never hand out a unit that failed its check.

use crate::limits::BLOCK_BYTES;
use crate::store::format::{self, FormatError};
use rustix::mm::{self, MapFlags, ProtFlags};
use std::cell::RefCell;
use std::ffi::c_void;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why a unit could not be mapped and checked.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("mapping the file: {0}")]
    Map(std::io::Error),
    #[error(transparent)]
    Checksum(#[from] FormatError),
}

/// A checked, mapped range of a sealed file, not yet on a shard.
pub struct VerifiedUnit {
    ptr: *mut c_void,
    len: usize,
    file: Arc<File>,
    file_off: u64,
}

// SAFETY: the mapping is owned by this value alone; it moves between
// threads whole and is only read.
unsafe impl Send for VerifiedUnit {}

/// Set once locking failed, so the fallback is logged once per process.
static LOCK_REFUSED: AtomicBool = AtomicBool::new(false);

/// Maps `len` bytes of `file` at `pos` (a block boundary), locks them and
/// checks blocks `first_block..` against `sums`. Blocks: run it on the
/// mapper thread, never on a shard.
pub fn map_verified(
    file: Arc<File>,
    pos: u64,
    len: usize,
    first_block: u64,
    sums: &[u64],
) -> Result<VerifiedUnit, MapError> {
    debug_assert!(pos.is_multiple_of(BLOCK_BYTES) && len > 0);
    // SAFETY: a fresh shared read-only mapping; sealed files are never
    // modified or truncated while they exist (format.rs), and the mapping
    // is unmapped only by VerifiedUnit / MappedUnit's drop.
    let ptr = unsafe { mm::mmap(std::ptr::null_mut(), len, ProtFlags::READ, MapFlags::SHARED, &*file, pos) }
        .map_err(|e| MapError::Map(e.into()))?;
    let unit = VerifiedUnit { ptr, len, file, file_off: pos };
    // SAFETY: the range is the mapping just made.
    if let Err(e) = unsafe { mm::mlock(ptr, len) } {
        if !LOCK_REFUSED.swap(true, Ordering::Relaxed) {
            tracing::info!(error = %e, "cannot lock page-cache units in memory; long reads are sent unlocked");
        }
        // SAFETY: as above; the advice only starts the reads early.
        let _ = unsafe { mm::madvise(ptr, len, mm::Advice::WillNeed) };
    }
    // SAFETY: the mapping covers `len` readable bytes until `unit` drops.
    let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
    for (i, block) in bytes.chunks(BLOCK_BYTES as usize).enumerate() {
        let n = first_block + i as u64;
        if sums.get(n as usize).copied() != Some(format::block_sum(block)) {
            return Err(FormatError::BlockChecksum { block: n }.into());
        }
    }
    Ok(unit)
}

impl Drop for VerifiedUnit {
    fn drop(&mut self) {
        // SAFETY: the mapping made in map_verified, unmapped once (a
        // MappedUnit takes the pointer and leaves len 0 here).
        if self.len > 0 {
            let _ = unsafe { mm::munmap(self.ptr, self.len) };
        }
    }
}

/// A checked unit on the shard that serves it: its bytes are the
/// mapping, and while it lives the socket layer sends them with
/// `sendfile`.
pub struct MappedUnit {
    ptr: *mut c_void,
    len: usize,
    /// Keeps the descriptor `sendfile` reads from open.
    _file: Arc<File>,
}

impl MappedUnit {
    /// Takes a checked unit onto this shard's thread.
    pub fn adopt(mut unit: VerifiedUnit) -> Self {
        let (ptr, len) = (unit.ptr, std::mem::take(&mut unit.len));
        let file = unit.file.clone();
        REGISTRY.with(|r| {
            r.borrow_mut().push(Source {
                start: ptr as usize,
                end: ptr as usize + len,
                fd: file.as_raw_fd(),
                file_off: unit.file_off,
            })
        });
        Self { ptr, len, _file: file }
    }
}

impl std::ops::Deref for MappedUnit {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping covers `len` bytes, checked and (if allowed)
        // locked, until drop.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for MappedUnit {
    fn drop(&mut self) {
        let start = self.ptr as usize;
        REGISTRY.with(|r| r.borrow_mut().retain(|s| s.start != start));
        // SAFETY: adopted from a VerifiedUnit, which gave up the mapping.
        let _ = unsafe { mm::munmap(self.ptr, self.len) };
    }
}

/// Where the bytes of one live mapping come from.
struct Source {
    start: usize,
    end: usize,
    fd: RawFd,
    file_off: u64,
}

thread_local! {
    /// The live mappings of this shard: few (a stream holds at most its
    /// read-ahead), so a scan is cheapest.
    static REGISTRY: RefCell<Vec<Source>> = const { RefCell::new(Vec::new()) };
}

/// When `bytes` lie inside a live checked mapping of this thread: the
/// file descriptor and offset to `sendfile` them from.
pub fn sendfile_source(bytes: &[u8]) -> Option<(RawFd, u64)> {
    let (start, end) = (bytes.as_ptr() as usize, bytes.as_ptr() as usize + bytes.len());
    REGISTRY.with(|r| {
        r.borrow()
            .iter()
            .find(|s| s.start <= start && end <= s.end)
            .map(|s| (s.fd, s.file_off + (start - s.start) as u64))
    })
}
