//! A node-wide budget of blob bytes held in memory for `POST .../blobs`
//! responses.
//!
//! A blob stream's reader thread reads a small blob whole, or a large one
//! a chunk at a time, and hands each piece to the shard that writes it to
//! the client. A client that does not read leaves those pieces in memory:
//! with no bound across requests, 16 such clients of a 100 MiB blob held
//! 8 GB. Every piece now carries a [`Charge`] of its bytes, taken here
//! before the piece is read and given back when the shard has passed the
//! piece on (dropped it). A request that finds the budget spent gets 503
//! before anything is read; a stream under way waits for room, bounded,
//! and is cut when none comes.
//!
//! Shared by every shard and reader thread: a mutex and a condvar, taken
//! once per piece (a blob or a 1 MiB chunk), never on a warm object path.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct BlobMemory {
    max_bytes: u64,
    held: Mutex<u64>,
    freed: Condvar,
}

/// Bytes taken from the budget; given back on drop.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<BlobMemory>,
    bytes: u64,
}

impl BlobMemory {
    pub fn new(max_bytes: u64) -> Arc<Self> {
        Arc::new(Self { max_bytes, held: Mutex::new(0), freed: Condvar::new() })
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn held_bytes(&self) -> u64 {
        *self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `bytes` more would fit now (a request's early check).
    pub fn has_room(&self, bytes: u64) -> bool {
        self.held_bytes().saturating_add(bytes) <= self.max_bytes
    }

    /// Takes `bytes`, waiting up to `wait` for others to give back. A
    /// piece larger than the whole budget is charged the whole budget, so
    /// it can still pass alone. None when no room came in time. Blocks:
    /// for reader threads only, never a shard.
    pub fn take(self: &Arc<Self>, bytes: u64, wait: Duration) -> Option<Charge> {
        let bytes = bytes.min(self.max_bytes);
        let deadline = Instant::now() + wait;
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while *held + bytes > self.max_bytes {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            held = self.freed.wait_timeout(held, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        *held += bytes;
        Some(Charge { budget: self.clone(), bytes })
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let mut held = self.budget.held.lock().unwrap_or_else(|p| p.into_inner());
        *held -= self.bytes;
        drop(held);
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_bounded_waited_for_and_given_back() {
        let m = BlobMemory::new(100);
        let a = m.take(60, Duration::ZERO).expect("fits");
        assert!(m.take(50, Duration::from_millis(10)).is_none(), "over the budget");
        assert!(!m.has_room(41));
        let m2 = m.clone();
        let waiter = std::thread::spawn(move || m2.take(50, Duration::from_secs(30)).map(|c| c.bytes));
        drop(a);
        assert_eq!(waiter.join().expect("joined"), Some(50), "room given back wakes a waiter");
        assert_eq!(m.held_bytes(), 0);
        let big = m.take(1000, Duration::ZERO).expect("a piece over the budget passes alone");
        assert_eq!(m.held_bytes(), 100);
        drop(big);
        assert!(m.has_room(100));
    }
}
