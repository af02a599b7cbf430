//! A sealed-format file that is still landing from the remote tier.
//!
//! The owner shard fills the file (ranged GETs in parallel) and advances
//! `landed`, the length of the prefix that is fully written. Readers on any
//! shard follow that watermark and read the same file, so N concurrent
//! readers cost one remote transfer. This is the only state shared across
//! shards: immutable fields plus two atomics, no locks.

use crate::store::format::ObjectMeta;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

const RUNNING: u8 = 0;
const SEALED: u8 = 1;
const FAILED: u8 = 2;

/// Where a landing stands, as a reader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandingState {
    Running,
    /// Whole, verified, synced and renamed to `final_path`.
    Sealed,
    Failed,
}

#[derive(Debug)]
pub struct Landing {
    /// The file while it lands; renamed to `final_path` when sealed.
    pub tmp_path: PathBuf,
    pub final_path: PathBuf,
    pub meta: ObjectMeta,
    pub file_len: u64,
    landed: AtomicU64,
    state: AtomicU8,
}

impl Landing {
    pub fn new(tmp_path: PathBuf, final_path: PathBuf, meta: ObjectMeta, file_len: u64) -> Self {
        Self { tmp_path, final_path, meta, file_len, landed: AtomicU64::new(0), state: AtomicU8::new(RUNNING) }
    }

    /// Bytes from the start of the file that are written and readable.
    pub fn landed(&self) -> u64 {
        self.landed.load(Ordering::Acquire)
    }

    /// Publishes a new watermark. Release pairs with the reader's Acquire:
    /// the write completed (io_uring CQE) before the store.
    pub fn set_landed(&self, bytes: u64) {
        debug_assert!(bytes <= self.file_len);
        self.landed.fetch_max(bytes, Ordering::Release);
    }

    pub fn state(&self) -> LandingState {
        match self.state.load(Ordering::Acquire) {
            RUNNING => LandingState::Running,
            SEALED => LandingState::Sealed,
            _ => LandingState::Failed,
        }
    }

    pub fn mark_sealed(&self) {
        self.set_landed(self.file_len);
        self.state.store(SEALED, Ordering::Release);
    }

    pub fn mark_failed(&self) {
        self.state.store(FAILED, Ordering::Release);
    }
}
