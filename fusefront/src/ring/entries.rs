//! A queue's ring entries: the buffers the kernel writes requests into
//! and reads replies from (a header page and a payload per entry), and
//! the handle a reply uses to give its entry back to the queue thread.
//!
//! Who may touch an entry's buffers is decided by who owns the entry: the
//! kernel (registered, waiting for a request), the queue thread (a request
//! just arrived), or the one reply made for it. Nothing here decides what
//! a request is answered.

use super::abi::HEADER_BYTES;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;

/// Each entry's header block gets a page of its own.
const HEADER_STRIDE: usize = 4096;

/// The entries' buffers: `depth` header pages, then `depth` payloads.
pub(super) struct Entries {
    base: NonNull<u8>,
    size: usize,
    pub(super) depth: usize,
    pub(super) payload_bytes: usize,
}

// SAFETY: the buffers are plain memory; who may touch an entry's is
// decided by the entry's owner (the kernel, the queue thread or one reply).
unsafe impl Send for Entries {}
unsafe impl Sync for Entries {}

impl Entries {
    /// Anonymous memory, page aligned and zero until touched: the payloads
    /// cost memory only as far as replies reach into them.
    pub(super) fn new(depth: usize, payload_bytes: usize) -> std::io::Result<Self> {
        let size = depth * (HEADER_STRIDE + payload_bytes);
        use rustix::mm::{mmap_anonymous, MapFlags, ProtFlags};
        // SAFETY: a fresh private mapping, aliased by nothing.
        let base = unsafe {
            mmap_anonymous(std::ptr::null_mut(), size, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE)
        }?;
        let base =
            NonNull::new(base.cast::<u8>()).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
        Ok(Self { base, size, depth, payload_bytes })
    }

    pub(super) fn header_ptr(&self, ent: u32) -> *mut u8 {
        assert!((ent as usize) < self.depth);
        // SAFETY: inside the allocation (checked above).
        unsafe { self.base.as_ptr().add(ent as usize * HEADER_STRIDE) }
    }

    pub(super) fn payload_ptr(&self, ent: u32) -> *mut u8 {
        assert!((ent as usize) < self.depth);
        // SAFETY: inside the allocation (checked above).
        unsafe { self.base.as_ptr().add(self.depth * HEADER_STRIDE + ent as usize * self.payload_bytes) }
    }

    /// Entry `ent`'s header block.
    ///
    /// # Safety
    /// The caller owns the entry (no one else reads or writes it meanwhile).
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn header(&self, ent: u32) -> &mut [u8] {
        unsafe { std::slice::from_raw_parts_mut(self.header_ptr(ent), HEADER_BYTES) }
    }

    /// Entry `ent`'s payload buffer.
    ///
    /// # Safety
    /// As for `header`.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn payload(&self, ent: u32) -> &mut [u8] {
        unsafe { std::slice::from_raw_parts_mut(self.payload_ptr(ent), self.payload_bytes) }
    }
}

impl Drop for Entries {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this size; nothing points into it
        // once its owners (the queue and every reply) are gone.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.size) };
    }
}

std::thread_local! {
    /// The queue this thread serves, if it is a queue thread.
    pub(super) static SERVING: std::cell::Cell<Option<u16>> = const { std::cell::Cell::new(None) };
}

/// What a queue's thread shares with the replies it hands out.
pub(super) struct QueueShared {
    pub(super) qid: u16,
    pub(super) entries: Entries,
    commits: crossbeam_channel::Sender<u32>,
    pub(super) wake: OwnedFd,
}

impl QueueShared {
    pub(super) fn new(qid: u16, entries: Entries, commits: crossbeam_channel::Sender<u32>, wake: OwnedFd) -> Self {
        Self { qid, entries, commits, wake }
    }

    /// Hands entry `ent`, answered, back to the queue thread to commit.
    pub(super) fn commit(&self, ent: u32) {
        let _ = self.commits.send(ent);
        if SERVING.with(|s| s.get()) != Some(self.qid) {
            let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
        }
    }
}
