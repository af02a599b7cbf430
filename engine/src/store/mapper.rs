//! The shard's mapper: one plain thread per shard that maps, locks and
//! checks page-cache units for long reads (`mapped.rs`), and hands each
//! result back to the shard through a doorbell.
//!
//! Why not glommio's `spawn_blocking`: each shard has one blocking
//! thread, and glommio runs its own renames, removes and truncates on it,
//! so a stream's next unit could queue behind a commit's rename or an
//! eviction's unlink of a large file. And a result from it reaches the
//! shard through glommio's foreign-thread notification, which this
//! project has seen arrive late (doorbell.rs); the doorbell's byte ends
//! any wait of the shard, armed or not. (The stall that got the first
//! sendfile path reverted did not reproduce with either; see
//! tools/tests/full_socket.rs for the test that now guards the path.)
//!
//! This module owns the thread and the table of units in flight. It must
//! never run a check on the shard thread, and never hand a unit to anyone
//! but the stream that asked for it (a unit whose stream is gone is dropped
//! here, which unmaps it).

use crate::doorbell;
use crate::store::mapped::{self, MapError, VerifiedUnit};
use futures_channel::oneshot;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::rc::Rc;
use std::sync::Arc;

/// One unit to map and check.
struct Job {
    id: u64,
    file: Arc<File>,
    pos: u64,
    len: usize,
    first_block: u64,
    sums: Arc<[u64]>,
}

type Done = (u64, Result<VerifiedUnit, MapError>);

/// This shard's end: the job queue and the waiters by job id.
struct Mapper {
    jobs: crossbeam_channel::Sender<Job>,
    waiting: RefCell<HashMap<u64, oneshot::Sender<Result<VerifiedUnit, MapError>>>>,
    next_id: Cell<u64>,
    /// Cleared when the task that answers waiters ends (its executor is
    /// gone): the next long read on this thread starts a new mapper.
    answering: Rc<Cell<bool>>,
}

/// Clears `answering` when the answering task is dropped.
struct Answering(Rc<Cell<bool>>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

thread_local! {
    /// Started on a shard's first long read; ends with the shard's thread
    /// (the job queue closes, and the thread after it).
    static MAPPER: RefCell<Option<Rc<Mapper>>> = const { RefCell::new(None) };
}

/// Maps `len` bytes of `file` at `pos` (a block boundary), locks them and
/// checks blocks `first_block..` against `sums`, on this shard's mapper
/// thread.
pub async fn map_verified(
    file: Arc<File>,
    pos: u64,
    len: usize,
    first_block: u64,
    sums: Arc<[u64]>,
) -> Result<VerifiedUnit, MapError> {
    let mapper = this_shards()?;
    let id = mapper.next_id.get();
    mapper.next_id.set(id + 1);
    let (tx, rx) = oneshot::channel();
    mapper.waiting.borrow_mut().insert(id, tx);
    if mapper.jobs.send(Job { id, file, pos, len, first_block, sums }).is_err() {
        mapper.waiting.borrow_mut().remove(&id);
        return Err(gone());
    }
    // If this future is dropped, the unit is dropped where it arrives.
    rx.await.unwrap_or_else(|_| Err(gone()))
}

fn gone() -> MapError {
    MapError::Map(std::io::Error::other("the shard's mapper thread has stopped"))
}

fn this_shards() -> Result<Rc<Mapper>, MapError> {
    MAPPER.with(|m| {
        if let Some(m) = m.borrow().as_ref().filter(|m| m.answering.get()) {
            return Ok(m.clone());
        }
        let mapper = start().map_err(MapError::Map)?;
        *m.borrow_mut() = Some(mapper.clone());
        Ok(mapper)
    })
}

fn start() -> std::io::Result<Rc<Mapper>> {
    let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
    let (done, results) = doorbell::channel::<Done>(None)?;
    std::thread::Builder::new().name("trove-mapper".into()).spawn(move || {
        for job in queue {
            let unit = mapped::map_verified(job.file, job.pos, job.len, job.first_block, &job.sums);
            if done.send((job.id, unit)).is_err() {
                return;
            }
        }
    })?;
    let answering = Rc::new(Cell::new(true));
    let mapper =
        Rc::new(Mapper { jobs, waiting: RefCell::default(), next_id: Cell::new(0), answering: answering.clone() });
    let weak = Rc::downgrade(&mapper);
    glommio::spawn_local(async move {
        let _answering = Answering(answering);
        let mut results = results.on_shard();
        while let Some((id, unit)) = results.recv().await {
            let Some(mapper) = weak.upgrade() else { return };
            let waiter = mapper.waiting.borrow_mut().remove(&id);
            // A stream gone meanwhile drops the unit here (unmapped).
            if let Some(waiter) = waiter {
                let _ = waiter.send(unit);
            }
        }
    })
    .detach();
    Ok(mapper)
}
