//! Access recency that survives a restart.
//!
//! The index orders objects by a logical clock that lives in memory; at
//! start it is rebuilt from the files, and a file's mtime is when it was
//! written, not read. So the owner notes every object it touches
//! ([`RecencyLog::note`], with the time) and now and then
//! ([`RecencyLog::flush`], every `RECENCY_FLUSH_INTERVAL`) writes that time
//! as their access time, on a thread of its own (a metadata write per
//! object, off the shard), so the order within an interval is kept too. Recovery orders
//! objects by the later of atime and mtime (recover.rs). A crash loses at
//! most one interval of recency, never data.
//!
//! What this module must never do: change an object's bytes or its mtime.

use super::Layout;
use crate::key::ShardId;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::SystemTime;

/// Objects touched since the last flush, with when (the latest touch).
#[derive(Default)]
pub struct RecencyLog {
    touched: RefCell<HashMap<u128, SystemTime>>,
}

impl RecencyLog {
    pub fn note(&self, hash: u128) {
        self.touched.borrow_mut().insert(hash, SystemTime::now());
    }

    /// Writes "accessed now" into the files of the objects touched since
    /// the last flush (one that was removed meanwhile is skipped).
    pub async fn flush(&self, layout: &Layout, shard: ShardId) {
        let touched = std::mem::take(&mut *self.touched.borrow_mut());
        if touched.is_empty() {
            return;
        }
        let files: Vec<_> = touched.into_iter().map(|(h, at)| (layout.object_path(shard, h), at)).collect();
        let (tx, rx) = futures_channel::oneshot::channel();
        let spawned = std::thread::Builder::new().name("trove-recency".into()).spawn(move || {
            use rustix::fs::{Timespec, Timestamps, UTIME_OMIT};
            for (path, at) in files {
                let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                let times = Timestamps {
                    last_access: Timespec { tv_sec: since.as_secs() as i64, tv_nsec: i64::from(since.subsec_nanos()) },
                    last_modification: Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT },
                };
                let _ = rustix::fs::utimensat(rustix::fs::CWD, &path, &times, rustix::fs::AtFlags::empty());
            }
            let _ = tx.send(());
        });
        if spawned.is_ok() {
            let _ = rx.await;
        }
    }
}
