//! The hydration queue's state on the owner shard: one pending entry per
//! blob however many ask, the read and prefetch queues, what is in flight,
//! and whether the node is down (see the `queue` module doc for the
//! rules). Plain data: nothing here waits or does I/O.

use super::error::HydrateError;
use super::want::{Done, Oid, Priority, Want};
use crate::limits::{HYDRATE_FAILED_HOLD, HYDRATE_FAILED_MAX};
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// Most prefetches kept aside while the node is down.
const HELD_PREFETCHES_MAX: usize = 1 << 16;

pub(super) struct Pending {
    pub(super) size: u64,
    pub(super) priority: Priority,
    pub(super) waiters: Vec<Done>,
    pub(super) in_flight: bool,
    /// In flight in a prefetch batch (its bytes count against the
    /// prefetches' share too).
    pub(super) in_prefetch_batch: bool,
}

/// Which queue a batch was cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BatchKind {
    Reads,
    Prefetches,
}

#[derive(Default)]
pub(super) struct Queue {
    pub(super) pending: HashMap<Oid, Pending>,
    pub(super) reads: VecDeque<Oid>,
    pub(super) prefetches: VecDeque<Oid>,
    pub(super) read_batches: usize,
    pub(super) prefetch_batches: usize,
    pub(super) bytes_in_flight: u64,
    pub(super) prefetch_bytes_in_flight: u64,
    /// Set while the node does not answer (health.rs): why.
    pub(super) down: Option<String>,
    /// Prefetches kept aside while the node is down, asked again once it
    /// answers (at most HELD_PREFETCHES_MAX).
    pub(super) held: Vec<(Oid, u64)>,
    /// Blobs whose fetch failed, when and why: a read within
    /// HYDRATE_FAILED_HOLD gets the same error at once.
    failed: HashMap<Oid, (Instant, HydrateError)>,
    /// Blobs to fetch in the background (prehydration), in order; not
    /// pending until a batch takes them.
    pub(super) background: VecDeque<(Oid, u64)>,
}

impl Queue {
    /// Takes in one want; answers at once what is already local, and
    /// while the node is down fails a read at once and keeps a prefetch
    /// aside.
    pub(super) fn accept(&mut self, want: Want, local: bool) {
        if local {
            if let Some(done) = want.done {
                done(Ok(()));
            }
            return;
        }
        if let Some(reason) = &self.down {
            match want.priority {
                Priority::Read => {
                    if let Some(done) = want.done {
                        done(Err(HydrateError::NodeDown(reason.clone())));
                    }
                }
                Priority::Prefetch if self.held.len() < HELD_PREFETCHES_MAX => self.held.push((want.oid, want.size)),
                Priority::Prefetch => {}
            }
            return;
        }
        if let Some((at, e)) = self.failed.get(&want.oid) {
            if at.elapsed() < HYDRATE_FAILED_HOLD {
                if let Some(done) = want.done {
                    done(Err(e.clone()));
                }
                return;
            }
            self.failed.remove(&want.oid);
        }
        match self.pending.get_mut(&want.oid) {
            Some(p) => {
                if want.priority > p.priority && !p.in_flight {
                    p.priority = want.priority;
                    self.reads.push_back(want.oid);
                }
                p.waiters.extend(want.done);
            }
            None => {
                match want.priority {
                    Priority::Read => self.reads.push_back(want.oid),
                    Priority::Prefetch => self.prefetches.push_back(want.oid),
                }
                let waiters = want.done.into_iter().collect();
                self.pending.insert(
                    want.oid,
                    Pending {
                        size: want.size,
                        priority: want.priority,
                        waiters,
                        in_flight: false,
                        in_prefetch_batch: false,
                    },
                );
            }
        }
    }

    pub(super) fn queue_of(&mut self, kind: BatchKind) -> &mut VecDeque<Oid> {
        match kind {
            BatchKind::Reads => &mut self.reads,
            BatchKind::Prefetches => &mut self.prefetches,
        }
    }

    /// The size of the next blob of `kind`'s queue still to fetch, stale
    /// slots (fetched, finished, or upgraded to a read) dropped.
    pub(super) fn peek_size(&mut self, kind: BatchKind) -> Option<u64> {
        loop {
            let front = *self.queue_of(kind).front()?;
            match self.pending.get(&front) {
                Some(p) if !p.in_flight && (kind == BatchKind::Reads || p.priority == Priority::Prefetch) => {
                    return Some(p.size)
                }
                _ => {
                    self.queue_of(kind).pop_front();
                }
            }
        }
    }

    /// The next blob of `kind`'s queue to fetch (after a `peek_size`).
    pub(super) fn pop(&mut self, kind: BatchKind) -> Option<Oid> {
        self.peek_size(kind)?;
        self.queue_of(kind).pop_front()
    }

    pub(super) fn has_reads(&mut self) -> bool {
        self.peek_size(BatchKind::Reads).is_some()
    }

    /// The node did not answer (`reason`): fails every queued read at
    /// once and keeps queued prefetches aside. True when it was up until
    /// now (the caller starts the probe).
    pub(super) fn mark_down(&mut self, reason: String) -> bool {
        let newly = self.down.is_none();
        let queued: Vec<Oid> = self.pending.iter().filter(|(_, p)| !p.in_flight).map(|(o, _)| *o).collect();
        for oid in queued {
            let p = self.pending.remove(&oid).expect("listed above");
            if p.priority == Priority::Prefetch && p.waiters.is_empty() {
                if self.held.len() < HELD_PREFETCHES_MAX {
                    self.held.push((oid, p.size));
                }
                continue;
            }
            for w in p.waiters {
                w(Err(HydrateError::NodeDown(reason.clone())));
            }
        }
        self.reads.clear();
        self.prefetches.clear();
        self.down = Some(reason);
        newly
    }

    /// The node answers again: what was kept aside, to queue once more
    /// (and what failed meanwhile may be asked again at once).
    pub(super) fn recover(&mut self) -> Vec<(Oid, u64)> {
        self.down = None;
        self.failed.clear();
        std::mem::take(&mut self.held)
    }

    /// Answers every waiter of `oid`; a failure is remembered for
    /// HYDRATE_FAILED_HOLD (but a mount stopping is no blob's failure).
    pub(super) fn finish(&mut self, oid: &Oid, result: Result<(), HydrateError>) {
        if let Err(e) = &result {
            if !matches!(e, HydrateError::Stopping) {
                if self.failed.len() >= HYDRATE_FAILED_MAX {
                    self.failed.retain(|_, (at, _)| at.elapsed() < HYDRATE_FAILED_HOLD);
                    if self.failed.len() >= HYDRATE_FAILED_MAX {
                        self.failed.clear();
                    }
                }
                self.failed.insert(*oid, (Instant::now(), e.clone()));
            }
        }
        if let Some(p) = self.pending.remove(oid) {
            if p.in_flight {
                self.bytes_in_flight -= p.size;
                if p.in_prefetch_batch {
                    self.prefetch_bytes_in_flight -= p.size;
                }
            }
            for w in p.waiters {
                w(result.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn want(oid: u8, priority: Priority, log: &Arc<Mutex<Vec<(u8, bool)>>>) -> Want {
        let log = log.clone();
        Want {
            oid: [oid; 20],
            size: 10,
            priority,
            done: Some(Box::new(move |r| log.lock().expect("log").push((oid, r.is_ok())))),
        }
    }

    #[test]
    fn a_read_of_a_blob_that_just_failed_fails_at_once_until_the_node_recovers() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut q = Queue::default();
        q.accept(want(1, Priority::Read, &log), false);
        q.finish(&[1; 20], Err(HydrateError::Timeout(std::time::Duration::from_secs(1))));
        q.accept(want(1, Priority::Read, &log), false);
        assert_eq!(*log.lock().expect("log"), vec![(1, false), (1, false)], "the retry failed at once");
        // Only the first ask's slot, stale since (dropped when reached).
        assert!(q.pending.is_empty() && q.reads.len() == 1, "and asked the node nothing");
        q.recover();
        q.accept(want(1, Priority::Read, &log), false);
        assert!(q.pending.contains_key(&[1; 20]), "after a recovery it is fetched again");
        q.finish(&[2; 20], Err(HydrateError::Stopping));
        q.accept(want(2, Priority::Read, &log), false);
        assert!(q.pending.contains_key(&[2; 20]), "a mount stopping is not remembered as a failure");
    }

    #[test]
    fn many_askers_make_one_pending_blob_and_reads_jump_prefetches() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut q = Queue::default();
        q.accept(want(1, Priority::Prefetch, &log), false);
        q.accept(want(2, Priority::Prefetch, &log), false);
        q.accept(want(3, Priority::Read, &log), false);
        // Read of a queued prefetch: upgraded in place.
        q.accept(want(2, Priority::Read, &log), false);
        for _ in 0..31 {
            q.accept(want(3, Priority::Read, &log), false);
        }
        assert_eq!(q.pending.len(), 3);
        assert_eq!(q.pop(BatchKind::Reads), Some([3; 20]));
        assert_eq!(q.pop(BatchKind::Reads), Some([2; 20]), "the upgraded prefetch is a read now");
        assert_eq!(q.pop(BatchKind::Reads), None);
        q.pending.get_mut(&[2; 20]).expect("pending").in_flight = true;
        assert_eq!(q.pop(BatchKind::Prefetches), Some([1; 20]), "and its stale prefetch slot is skipped");
        q.finish(&[3; 20], Ok(()));
        assert_eq!(log.lock().expect("log").iter().filter(|(o, ok)| *o == 3 && *ok).count(), 32);
    }
    #[test]
    fn a_down_node_fails_reads_at_once_and_keeps_prefetches_for_its_return() {
        let log = Arc::new(Mutex::new(Vec::new()));
        // A prefetch has no one waiting on it.
        let prefetch = |oid: u8| Want { oid: [oid; 20], size: 10, priority: Priority::Prefetch, done: None };
        let mut q = Queue::default();
        q.accept(prefetch(1), false);
        q.accept(prefetch(2), false);
        q.accept(want(3, Priority::Read, &log), false);
        q.accept(want(4, Priority::Read, &log), false);
        q.pending.get_mut(&[4; 20]).expect("pending").in_flight = true;
        assert!(q.mark_down("timed out".into()), "newly down");
        assert!(!q.mark_down("again".into()), "already down");
        assert_eq!(*log.lock().expect("log"), vec![(3, false)], "the queued read failed at once");
        assert!(q.pending.contains_key(&[4; 20]), "the one in flight ends with its batch");
        q.accept(want(5, Priority::Read, &log), false);
        q.accept(prefetch(6), false);
        assert_eq!(*log.lock().expect("log"), vec![(3, false), (5, false)], "a new read fails at once too");
        assert!(!q.has_reads() && q.peek_size(BatchKind::Prefetches).is_none(), "nothing is queued to fetch");
        let mut back: Vec<u8> = q.recover().into_iter().map(|(o, _)| o[0]).collect();
        back.sort();
        assert_eq!(back, vec![1, 2, 6], "the prefetches go back in once it answers");
        assert!(q.down.is_none());
    }
    #[test]
    fn a_blob_already_local_is_answered_without_a_fetch() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut q = Queue::default();
        q.accept(want(1, Priority::Read, &log), true);
        assert!(q.pending.is_empty());
        assert_eq!(*log.lock().expect("log"), vec![(1, true)]);
    }
}
