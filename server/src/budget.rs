//! A node-wide budget of request-body bytes held in memory.
//!
//! An upload-pack request body is read whole before upload-pack runs (its
//! wants decide whether the mirror must fetch first), up to 64 MiB, and
//! inflated up to 64 MiB more. Each connection alone is bounded; together
//! they were not (100 concurrent 60 MB bodies took the node to 2.6 GB).
//! Every buffered body reserves its bytes here as its frames arrive and
//! holds the [`Reservation`] as long as it holds the bytes; past the budget
//! the request gets 503 with Retry-After. Shared by every shard (atomics;
//! no lock, no hop).

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
    /// Takes `more` bytes, or says the node holds too much already.
    pub fn grow(&mut self, more: u64) -> Result<(), ApiError> {
        let b = &self.budget;
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
        assert!(r2.grow(50).is_err(), "60 + 50 > 100");
        r2.grow(40).expect("60 + 40 fits");
        drop(r1);
        assert_eq!(b.held_bytes(), 40);
        drop(r2);
        assert_eq!(b.held_bytes(), 0);
    }
}
