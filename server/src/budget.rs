//! A node-wide budget of request-body bytes held in memory.
//!
//! An upload-pack request body is read whole before upload-pack runs (its
//! wants decide whether the mirror must fetch first), up to 64 MiB, and
//! inflated up to 64 MiB more. Each connection alone is bounded; together
//! they were not (100 concurrent 60 MB bodies took the node to 2.6 GB).
//! Every buffered body reserves here what it holds as its frames arrive
//! (its buffer's capacity, not its length, and both buffers while one
//! grows), then what looking its wants up in the mirror holds, and keeps
//! the [`Reservation`] as long as it holds the memory. Past the budget the
//! request gets 503 with Retry-After; a request that alone needs more than
//! the whole budget gets 413, since retrying cannot help. Shared by every
//! shard (atomics; no lock, no hop).

use crate::error::ApiError;
use http::StatusCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct BodyBudget {
    max_bytes: u64,
    held: AtomicU64,
}

/// Bytes taken from the budget; given back on drop.
pub struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: u64,
}

impl BodyBudget {
    pub fn new(max_bytes: u64) -> Arc<Self> {
        Arc::new(Self { max_bytes, held: AtomicU64::new(0) })
    }

    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation { budget: self.clone(), bytes: 0 }
    }

    pub fn held_bytes(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }
}

impl Reservation {
    /// Takes `more` bytes, or says the node holds too much already (503,
    /// retry), or that this request alone needs more than the whole budget
    /// (413: retrying cannot help).
    pub fn grow(&mut self, more: u64) -> Result<(), ApiError> {
        let b = &self.budget;
        if self.bytes.saturating_add(more) > b.max_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "this request needs more memory than the {} bytes the node may hold for all request bodies \
                     (--body-memory); send a smaller request (fewer wants), or raise --body-memory",
                    b.max_bytes
                ),
            ));
        }
        b.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| (h + more <= b.max_bytes).then_some(h + more))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the node holds as many request bodies in memory as it may; retry after the Retry-After seconds",
                )
                .retry_after(2)
            })?;
        self.bytes += more;
        Ok(())
    }

    /// Gives back `less` of the bytes taken (no more than were).
    pub fn give_back(&mut self, less: u64) {
        let less = less.min(self.bytes);
        self.budget.held.fetch_sub(less, Ordering::AcqRel);
        self.bytes -= less;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_budget_and_give_back_on_drop() {
        let b = BodyBudget::new(100);
        let mut r1 = b.reservation();
        r1.grow(60).expect("room");
        let mut r2 = b.reservation();
        assert_eq!(r2.grow(50).map_err(|e| e.status), Err(StatusCode::SERVICE_UNAVAILABLE), "60 + 50 > 100");
        assert_eq!(r2.grow(101).map_err(|e| e.status), Err(StatusCode::PAYLOAD_TOO_LARGE), "never fits");
        r2.grow(40).expect("60 + 40 fits");
        drop(r1);
        assert_eq!(b.held_bytes(), 40);
        r2.give_back(30);
        assert_eq!(b.held_bytes(), 10);
        r2.give_back(30);
        assert_eq!(b.held_bytes(), 0, "no more than was taken");
        r2.grow(100).expect("all of it is free again");
        drop(r2);
        assert_eq!(b.held_bytes(), 0);
    }
}
