//! Cutting the hydration queue into batches (`POST .../blobs`): which
//! kind goes next, how many ids and bytes, and the order inside a batch.

use super::pending::{BatchKind, Pending, Queue};
use super::want::{Oid, Priority};

/// Most blobs in one prefetch batch: a read of a blob that a prefetch
/// batch already carries waits at most for this many before it.
pub(super) const PREFETCH_BATCH_BLOBS: usize = 64;
/// Reads waiting that start another read batch while one is out.
const READS_FOR_ANOTHER_BATCH: usize = 16;

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
pub(super) fn cut_batches(
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
        // (The read queue's length counts stale slots too: enough to say
        // many reads wait, never to fetch.)
        let more_reads = q.read_batches == 0
            || (q.read_batches < config.batches_in_flight && q.reads.len() >= READS_FOR_ANOTHER_BATCH);
        let reads_wait = q.has_reads();
        let kind = if reads_wait && more_reads {
            BatchKind::Reads
        } else if !reads_wait && q.prefetch_batches < prefetch_slots {
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
                // The background only while nothing else is out or waits.
                if batch.is_empty() && q.down.is_none() && q.read_batches == 0 {
                    take_background(q, store, &mut batch, most, config.in_flight_bytes / 2);
                }
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
        if !fits(used, size, max_bytes) {
            break;
        }
        let oid = q.pop(from).expect("peeked");
        if store.contains(&oid) {
            q.finish(&oid, Ok(()));
            continue;
        }
        start(q, oid, size, from);
        batch.push((oid, size));
    }
}

/// Whether a blob of `size` may join `used` bytes in flight under
/// `max_bytes`: a blob larger than the whole budget still goes, alone.
fn fits(used: u64, size: u64, max_bytes: u64) -> bool {
    used == 0 || used + size <= max_bytes
}

/// Marks pending blob `oid` in flight in a batch of `kind`, its bytes
/// counted against that kind's budget.
fn start(q: &mut Queue, oid: Oid, size: u64, kind: BatchKind) {
    let p = q.pending.get_mut(&oid).expect("a blob started is pending");
    p.in_flight = true;
    q.bytes_in_flight += size;
    if kind == BatchKind::Prefetches {
        p.in_prefetch_batch = true;
        q.prefetch_bytes_in_flight += size;
    }
}

/// Moves blobs from the background list into `batch` as prefetches (in
/// flight), skipping what is local or pending already, as [`take`] does.
fn take_background(
    q: &mut Queue,
    store: &super::blobstore::BlobStore,
    batch: &mut Vec<(Oid, u64)>,
    max_blobs: usize,
    max_bytes: u64,
) {
    while batch.len() < max_blobs {
        let Some(&(oid, size)) = q.background.front() else { break };
        if !fits(q.prefetch_bytes_in_flight, size, max_bytes) {
            break;
        }
        q.background.pop_front();
        if q.pending.contains_key(&oid) || store.contains(&oid) {
            continue;
        }
        let p = Pending {
            size,
            priority: Priority::Prefetch,
            waiters: Vec::new(),
            in_flight: false,
            in_prefetch_batch: false,
        };
        q.pending.insert(oid, p);
        start(q, oid, size, BatchKind::Prefetches);
        batch.push((oid, size));
    }
}

#[cfg(test)]
mod tests {
    use super::super::blobstore::{BlobStore, SmallBlobs};
    use super::super::config::HydrateConfig;
    use super::super::want::Want;
    use super::*;

    /// An ask for blob `[oid; 20]` that nobody here waits on.
    fn ask(oid: u8, priority: Priority) -> Want {
        Want { oid: [oid; 20], size: 10, priority, done: None }
    }

    /// An empty store (in a directory that lives as long as the first)
    /// and a default configuration.
    fn store_and_config() -> (tempfile::TempDir, std::sync::Arc<BlobStore>, HydrateConfig) {
        let dir = tempfile::tempdir().expect("tmp");
        let store = BlobStore::open_dir(dir.path(), 1 << 30, SmallBlobs::Slabs).expect("store");
        let config = HydrateConfig::new("http://127.0.0.1:1".parse().expect("url"), "h/r".into());
        (dir, store, config)
    }

    #[test]
    fn a_read_never_waits_behind_prefetch_batches() {
        let (_dir, store, mut config) = store_and_config();
        config.batches_in_flight = 4;
        let mut q = Queue::default();
        for i in 0..200u8 {
            q.accept(ask(i, Priority::Prefetch), false);
        }
        let first = cut_batches(&mut q, &store, &config);
        assert_eq!(first.len(), 2, "prefetches take half the slots");
        assert!(first.iter().all(|(k, b)| *k == BatchKind::Prefetches && b.len() == PREFETCH_BATCH_BLOBS));
        // Every prefetch slot is taken: a read (of a queued prefetch, and of
        // a new blob) still gets batches of its own at once.
        q.accept(ask(199, Priority::Read), false);
        q.accept(ask(250, Priority::Read), false);
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
    fn background_blobs_go_only_when_no_read_or_prefetch_waits_and_the_node_is_up() {
        let (_dir, store, config) = store_and_config();
        store.land(&[([250; 20], &b"local"[..])]).expect("land");
        let ids = |b: &Vec<(Oid, u64)>| b.iter().map(|(o, _)| o[0]).collect::<Vec<u8>>();
        let mut q = Queue::default();
        q.background.extend((0..100u8).map(|i| ([i; 20], 10)));
        q.background.push_front(([250; 20], 5));
        q.accept(ask(7, Priority::Read), false);
        let first = cut_batches(&mut q, &store, &config);
        assert_eq!(first.len(), 1, "while a read batch is out, nothing of the background: {first:?}");
        assert_eq!((first[0].0, ids(&first[0].1)), (BatchKind::Reads, vec![7]));
        // The read answered: a queued prefetch goes first, alone; then the
        // background, in the order given, past what is local or pending.
        q.finish(&[7; 20], Ok(()));
        q.read_batches = 0;
        q.accept(ask(8, Priority::Prefetch), false);
        let second = cut_batches(&mut q, &store, &config);
        assert_eq!(second.len(), 2, "the two prefetch slots");
        assert!(second.iter().all(|(k, _)| *k == BatchKind::Prefetches));
        assert_eq!(ids(&second[0].1), [8]);
        let bg = ids(&second[1].1);
        assert_eq!(bg.len(), PREFETCH_BATCH_BLOBS, "a prefetch-sized batch");
        assert_eq!(bg[..9], [0, 1, 2, 3, 4, 5, 6, 7, 9], "in order; 8 is in flight already");
        assert!(!bg.contains(&250), "a local blob is not fetched");
        q.prefetch_batches = 0;
        q.down = Some("no answer".into());
        assert!(cut_batches(&mut q, &store, &config).is_empty(), "none while the node is down");
        q.down = None;
        let third = cut_batches(&mut q, &store, &config);
        assert_eq!(third.len(), 1, "the list's rest: {third:?}");
        assert_eq!(ids(&third[0].1).first(), Some(&(bg[bg.len() - 1] + 1)), "where it left off");
        assert!(q.background.is_empty());
    }
}
