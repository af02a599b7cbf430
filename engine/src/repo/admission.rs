//! Node-wide admission of git upload-pack processes: at most `max` run at
//! once, at most `queue` more wait for a slot, and anyone past that is
//! refused at once, so the HTTP face can answer 503 before any bytes
//! (cachew #410: 49 concurrent clones got 503s only after minutes).
//!
//! Shared by all shards through atomics and an event; the slow path (a full
//! node) is the only one that may wake another core.

use event_listener::Event;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Admission {
    max: usize,
    queue: usize,
    active: AtomicUsize,
    /// Running plus waiting.
    admitted: AtomicUsize,
    freed: Event,
}

/// A slot; dropping it frees the slot.
pub struct Permit {
    adm: Arc<Admission>,
}

/// The node is at `max` running plus `queue` waiting.
#[derive(Debug)]
pub struct Full;

/// Undoes an admission whose waiter went away before it got a slot.
struct Waiting<'a> {
    adm: &'a Admission,
    armed: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.adm.admitted.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Admission {
    pub fn new(max: usize, queue: usize) -> Self {
        Self { max: max.max(1), queue, active: AtomicUsize::new(0), admitted: AtomicUsize::new(0), freed: Event::new() }
    }

    /// Takes a slot, waiting in the queue if need be; `Err(Full)` at once
    /// when the queue is full too.
    pub async fn enter(self: &Arc<Self>) -> Result<Permit, Full> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.max + self.queue {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(Full);
        }
        let mut waiting = Waiting { adm: self.as_ref(), armed: true };
        loop {
            if self.try_take() {
                waiting.armed = false;
                return Ok(Permit { adm: self.clone() });
            }
            let listener = self.freed.listen();
            if self.try_take() {
                waiting.armed = false;
                return Ok(Permit { adm: self.clone() });
            }
            listener.await;
        }
    }

    fn try_take(&self) -> bool {
        self.active.fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| (a < self.max).then_some(a + 1)).is_ok()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.adm.active.fetch_sub(1, Ordering::AcqRel);
        self.adm.admitted.fetch_sub(1, Ordering::AcqRel);
        self.adm.freed.notify(1);
    }
}
