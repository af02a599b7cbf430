//! The owner shard's hydration queue: one pending entry per blob, however
//! many ask; reads ahead of prefetches; batches cut by count and bytes.
//!
//! - Dedupe: a want for a blob already pending adds a waiter; the blob is
//!   fetched once.
//! - Priority: reads and prefetches wait in two queues and a batch takes
//!   reads first. A read of a blob whose prefetch is still queued upgrades
//!   it in place (it joins the read queue; the stale prefetch slot is
//!   skipped). A blob already in flight just gains the waiter.
//! - Re-check: a blob that became local while it waited (another batch
//!   carried it, or it was there all along) is answered without a fetch.
//! - A node that stops answering (a fetch times out, or it cannot be
//!   reached) is marked down: reads fail at once and prefetches wait aside
//!   until a probe sees it answer (health.rs).
//! - Bounds: `batches_in_flight` read batches of up to `batch_blobs` ids,
//!   and `in_flight_bytes` of blob bytes asked for and not landed; beside
//!   them, prefetches get half the slots and half the bytes, in short
//!   batches cut only while no read waits (`cut_batches`). A failed
//!   batch fails its waiters; nothing is retried behind their back, so an
//!   open fails within the fetch timeout and the next one asks again.
//!
//! Single-threaded on the owner's executor: the state is a RefCell never
//! borrowed across an await (and never while a task is spawned, since
//! glommio runs a spawned task at once).

use super::error::HydrateError;
use super::fetch::{client_options, run_batch};
use super::hydrator::OwnerEnd;
use super::want::{Done, Oid, Priority, Want};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::Ordering;

/// Most blobs in one prefetch batch: a read of a blob that a prefetch
/// batch already carries waits at most for this many before it.
const PREFETCH_BATCH_BLOBS: usize = 64;
/// Reads waiting that start another read batch while one is out.
const READS_FOR_ANOTHER_BATCH: usize = 16;
/// Most prefetches kept aside while the node is down.
const HELD_PREFETCHES_MAX: usize = 1 << 16;

struct Pending {
    size: u64,
    priority: Priority,
    waiters: Vec<Done>,
    in_flight: bool,
    /// In flight in a prefetch batch (its bytes count against the
    /// prefetches' share too).
    in_prefetch_batch: bool,
}

/// Which queue a batch was cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchKind {
    Reads,
    Prefetches,
}

#[derive(Default)]
struct Queue {
    pending: HashMap<Oid, Pending>,
    reads: VecDeque<Oid>,
    prefetches: VecDeque<Oid>,
    read_batches: usize,
    prefetch_batches: usize,
    bytes_in_flight: u64,
    prefetch_bytes_in_flight: u64,
    /// Set while the node does not answer (health.rs): why.
    down: Option<String>,
    /// Prefetches kept aside while the node is down, asked again once it
    /// answers (at most HELD_PREFETCHES_MAX).
    held: Vec<(Oid, u64)>,
}

impl Queue {
    /// Takes in one want; answers at once what is already local, and
    /// while the node is down fails a read at once and keeps a prefetch
    /// aside.
    fn accept(&mut self, want: Want, local: bool) {
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

    fn queue_of(&mut self, kind: BatchKind) -> &mut VecDeque<Oid> {
        match kind {
            BatchKind::Reads => &mut self.reads,
            BatchKind::Prefetches => &mut self.prefetches,
        }
    }

    /// The size of the next blob of `kind`'s queue still to fetch, stale
    /// slots (fetched, finished, or upgraded to a read) dropped.
    fn peek_size(&mut self, kind: BatchKind) -> Option<u64> {
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
    fn pop(&mut self, kind: BatchKind) -> Option<Oid> {
        self.peek_size(kind)?;
        self.queue_of(kind).pop_front()
    }

    fn has_reads(&mut self) -> bool {
        self.peek_size(BatchKind::Reads).is_some()
    }

    /// The node did not answer (`reason`): fails every queued read at
    /// once and keeps queued prefetches aside. True when it was up until
    /// now (the caller starts the probe).
    fn mark_down(&mut self, reason: String) -> bool {
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

    /// The node answers again: what was kept aside, to queue once more.
    fn recover(&mut self) -> Vec<(Oid, u64)> {
        self.down = None;
        std::mem::take(&mut self.held)
    }

    /// Answers every waiter of `oid`.
    fn finish(&mut self, oid: &Oid, result: Result<(), HydrateError>) {
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

/// Serves a mount's wants until its [`Hydrator`](super::Hydrator) is
/// dropped; then every waiter still pending is told the mount stops.
pub async fn serve(end: OwnerEnd) {
    let OwnerEnd { wants, queued, store, config, health } = end;
    let mut wants = wants.on_shard();
    let config = Rc::new(config);
    let client = match client_options(&config) {
        Ok(c) => Rc::new(c),
        Err(e) => {
            while let Some(w) = wants.recv().await {
                queued.fetch_sub(1, Ordering::AcqRel);
                if let Some(done) = w.done {
                    done(Err(e.clone()));
                }
            }
            return;
        }
    };
    let queue = Rc::new(RefCell::new(Queue::default()));
    let (batch_done_tx, batch_done_rx) = glommio::channels::local_channel::new_unbounded::<()>();
    let batch_done_tx = Rc::new(batch_done_tx);
    loop {
        let next = futures_lite::future::or(async { Some(wants.recv().await) }, async {
            let _ = batch_done_rx.recv().await;
            None
        })
        .await;
        match next {
            Some(None) => break,
            Some(Some(first)) => {
                // Take in the whole burst, then cut batches from it.
                let mut q = queue.borrow_mut();
                let mut want = Some(first);
                while let Some(w) = want.take() {
                    queued.fetch_sub(1, Ordering::AcqRel);
                    let local = store.contains(&w.oid);
                    q.accept(w, local);
                    want = wants.try_recv();
                }
            }
            None => {}
        }
        let batches = cut_batches(&mut queue.borrow_mut(), &store, &config);
        for (kind, batch) in batches {
            let (queue, store, config, client, tx, health) =
                (queue.clone(), store.clone(), config.clone(), client.clone(), batch_done_tx.clone(), health.clone());
            glommio::spawn_local(async move {
                // A timeout or an unreachable node is the node's failure,
                // not one blob's: see health.rs.
                let mut unanswered: Option<String> = None;
                run_batch(&config, &client, &store, batch, &mut |oid, r| {
                    if let Err(e @ (HydrateError::Timeout(_) | HydrateError::Unreachable { .. })) = &r {
                        unanswered.get_or_insert_with(|| e.to_string());
                    }
                    queue.borrow_mut().finish(&oid, r)
                })
                .await;
                let newly_down = {
                    let mut q = queue.borrow_mut();
                    match kind {
                        BatchKind::Reads => q.read_batches -= 1,
                        BatchKind::Prefetches => q.prefetch_batches -= 1,
                    }
                    unanswered.is_some_and(|reason| q.mark_down(reason))
                };
                if newly_down {
                    health.mark_down();
                    let tx = tx.clone();
                    tracing::warn!("the node stopped answering; opens of files not yet hydrated fail at once until it answers again");
                    glommio::spawn_local(async move {
                        super::health::until_answering(&config, &client).await;
                        let held = queue.borrow_mut().recover();
                        {
                            let mut q = queue.borrow_mut();
                            for (oid, size) in held {
                                let local = store.contains(&oid);
                                q.accept(Want { oid, size, priority: Priority::Prefetch, done: None }, local);
                            }
                        }
                        health.mark_up();
                        tracing::info!("the node answers again; fetching resumes");
                        let _ = tx.try_send(());
                    })
                    .detach();
                }
                let _ = tx.try_send(());
            })
            .detach();
        }
    }
    let mut q = queue.borrow_mut();
    let all: Vec<Oid> = q.pending.keys().copied().collect();
    for oid in all {
        q.finish(&oid, Err(HydrateError::Stopping));
    }
}

/// Batches to start now, marked in flight.
///
/// Reads never wait for a prefetch: they have `batches_in_flight` batches
/// of their own and may use the whole byte budget, and a read batch sends
/// its reads first, with at most [`PREFETCH_BATCH_BLOBS`] queued
/// prefetches behind them. Prefetches alone get half the slots (at least
/// one), half the bytes, batches of at most [`PREFETCH_BATCH_BLOBS`], and
/// none is cut while a read waits. So a read never queues behind a
/// prefetch batch, and a read of a blob already in one waits for a short
/// one.
fn cut_batches(
    q: &mut Queue,
    store: &super::blobstore::BlobStore,
    config: &super::config::HydrateConfig,
) -> Vec<(BatchKind, Vec<(Oid, u64)>)> {
    let mut out = Vec::new();
    let prefetch_slots = (config.batches_in_flight / 2).max(1);
    loop {
        // One read batch goes at once; more only while enough reads wait
        // to fill them: reads that arrive while a batch is out join the
        // next one instead of each making a request (one per open was the
        // node's CPU, on a machine where the cold read is CPU-bound).
        let more_reads = q.read_batches == 0
            || (q.read_batches < config.batches_in_flight && q.reads.len() >= READS_FOR_ANOTHER_BATCH);
        let kind = if q.has_reads() && more_reads {
            BatchKind::Reads
        } else if !q.has_reads() && q.prefetch_batches < prefetch_slots {
            BatchKind::Prefetches
        } else {
            break;
        };
        let mut batch = Vec::new();
        match kind {
            BatchKind::Reads => {
                take(q, store, &mut batch, BatchKind::Reads, config.batch_blobs, config.in_flight_bytes);
                // The queued prefetches ride behind the reads, a short
                // tail: the node sends the reads first, so they land
                // first, and a reader's next file (in the same directory,
                // queued by its first read) is often in the tail.
                if !batch.is_empty() {
                    let room = (batch.len() + PREFETCH_BATCH_BLOBS).min(config.batch_blobs);
                    take(q, store, &mut batch, BatchKind::Prefetches, room, config.in_flight_bytes / 2);
                }
            }
            BatchKind::Prefetches => {
                let most = config.batch_blobs.min(PREFETCH_BATCH_BLOBS);
                take(q, store, &mut batch, BatchKind::Prefetches, most, config.in_flight_bytes / 2);
            }
        }
        if batch.is_empty() {
            break;
        }
        match kind {
            BatchKind::Reads => q.read_batches += 1,
            BatchKind::Prefetches => q.prefetch_batches += 1,
        }
        out.push((kind, batch));
    }
    out
}

/// Moves blobs from `from`'s queue into `batch` (marked in flight) until
/// it holds `max_blobs`, or the next would pass `max_bytes` in flight (of
/// all blobs for reads, of prefetched ones for prefetches).
fn take(
    q: &mut Queue,
    store: &super::blobstore::BlobStore,
    batch: &mut Vec<(Oid, u64)>,
    from: BatchKind,
    max_blobs: usize,
    max_bytes: u64,
) {
    while batch.len() < max_blobs {
        let Some(size) = q.peek_size(from) else { break };
        let used = match from {
            BatchKind::Reads => q.bytes_in_flight,
            BatchKind::Prefetches => q.prefetch_bytes_in_flight,
        };
        // A blob larger than the whole budget still goes, alone.
        if used + size > max_bytes && used != 0 {
            break;
        }
        let oid = q.pop(from).expect("peeked");
        if store.contains(&oid) {
            q.finish(&oid, Ok(()));
            continue;
        }
        let p = q.pending.get_mut(&oid).expect("popped ids are pending");
        p.in_flight = true;
        q.bytes_in_flight += size;
        if from == BatchKind::Prefetches {
            p.in_prefetch_batch = true;
            q.prefetch_bytes_in_flight += size;
        }
        batch.push((oid, size));
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
    fn a_read_never_waits_behind_prefetch_batches() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = super::super::blobstore::BlobStore::open_dir(dir.path(), 1 << 30).expect("store");
        let mut config =
            super::super::config::HydrateConfig::new("http://127.0.0.1:1".parse().expect("url"), "h/r".into());
        config.batches_in_flight = 4;
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut q = Queue::default();
        for i in 0..200u8 {
            q.accept(want(i, Priority::Prefetch, &log), false);
        }
        let first = cut_batches(&mut q, &store, &config);
        assert_eq!(first.len(), 2, "prefetches take half the slots");
        assert!(first.iter().all(|(k, b)| *k == BatchKind::Prefetches && b.len() == PREFETCH_BATCH_BLOBS));
        // Every prefetch slot is taken: a read (of a queued prefetch, and of
        // a new blob) still gets batches of its own at once.
        q.accept(want(199, Priority::Read, &log), false);
        q.accept(want(250, Priority::Read, &log), false);
        let next = cut_batches(&mut q, &store, &config);
        assert_eq!(next.len(), 1);
        let (kind, batch) = &next[0];
        assert_eq!(*kind, BatchKind::Reads);
        let ids: Vec<u8> = batch.iter().map(|(o, _)| o[0]).collect();
        assert_eq!(ids[..2], [199, 250], "the reads first, in the order asked");
        assert_eq!(ids.len(), 2 + PREFETCH_BATCH_BLOBS, "then queued prefetches, a short tail");
        assert!(!ids[2..].contains(&199), "the upgraded blob is not fetched twice");
        assert!(cut_batches(&mut q, &store, &config).is_empty(), "no prefetch batch while its slots are full");
        q.prefetch_batches -= 1;
        let rest = cut_batches(&mut q, &store, &config);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].1.len(), 200 - 3 * PREFETCH_BATCH_BLOBS - 1, "the rest, once a slot frees");
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
