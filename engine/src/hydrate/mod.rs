//! Hydration: the blobs of a lazily mounted tree, fetched from a node on
//! first use and kept in the local tier's blob store.
//!
//! The mount (trove-fusefront) holds a [`Hydrator`], which is `Send` and
//! answers from any thread:
//! - a blob already local is opened right there ([`Hydrator::open_local`]):
//!   no message, no cross-core hop;
//! - a blob that is not is a [`Want`] sent to the owner shard of the repo,
//!   whose [`queue`] dedupes (one fetch for any number of askers),
//!   prioritises (a read beats a prefetch, and a queued prefetch that is
//!   read is upgraded in place), and batches (many ids per
//!   `POST .../blobs`). [`fetch`] lands each blob of a batch as it streams
//!   in: checked against its git id, written with O_DIRECT into the
//!   [`blobstore`], then published. [`frames`] parses the node's stream,
//!   which is hostile input like every byte from the network.
//!
//! What this module must never do: serve a byte that did not match its
//! oid, hold a whole blob in memory, block the shard thread on a file
//! read, or speak FUSE (the mount maps [`HydrateError`] to errno).

pub mod blobstore;
pub mod fetch;
pub mod frames;
pub mod queue;

use crate::tree::oid_hex;
use blobstore::BlobStore;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A git object id (SHA-1).
pub type Oid = [u8; 20];

/// Why a blob could not be hydrated. Each says what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HydrateError {
    #[error("the node at {node} is unreachable ({reason}); files already hydrated still read, and this one will once the node is back")]
    Unreachable { node: String, reason: String },
    #[error("the node did not answer within {0:?} (--fetch-timeout); try again, or raise it for a slow node")]
    Timeout(Duration),
    #[error(
        "the node sent {bytes} bytes of blobs slower than the {min_rate} bytes/s a fetch must keep (it was cut after \
         {after:?}); the node is failing or the link is too slow"
    )]
    TooSlow { bytes: u64, min_rate: u64, after: Duration },
    #[error("blob {oid} is {len} bytes, more than the whole blob cache ({capacity} bytes); raise --cache-capacity")]
    LargerThanCache { oid: String, len: u64, capacity: u64 },
    #[error("the node answered {status} to POST blobs: {message}")]
    Status { status: u16, message: String },
    #[error("the node does not have blob {0}; the mount's tree index names an object its mirror lacks")]
    Missing(String),
    #[error("the node refused blob {oid}: {why}")]
    Refused { oid: String, why: &'static str },
    #[error("the node sent bytes for blob {0} that do not match its id; they were dropped, never served")]
    Corrupt(String),
    #[error("the node's blob stream is invalid: {0}")]
    Protocol(String),
    #[error("the local blob store failed: {0}; check the --data-dir disk")]
    Store(String),
    #[error("{0} hydration requests are already waiting; try again")]
    QueueFull(usize),
    #[error("the mount is stopping")]
    Stopping,
}

impl HydrateError {
    pub(crate) fn store(op: &str, path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        HydrateError::Store(format!("{op} {}: {e}", path.display()))
    }
}

/// Who is waiting: a read outranks a prefetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Prefetch,
    Read,
}

/// What the owner shard calls once a blob is local, or cannot be. It runs
/// on the shard thread, so it must only hand the result on (to a channel),
/// never do I/O.
pub type Done = Box<dyn FnOnce(Result<(), HydrateError>) + Send>;

/// One ask for a blob.
pub struct Want {
    pub oid: Oid,
    /// Its size as the tree index says; the node's frame must agree.
    pub size: u64,
    pub priority: Priority,
    /// None for a prefetch nobody waits on.
    pub done: Option<Done>,
}

/// Where and how to fetch.
#[derive(Debug, Clone)]
pub struct HydrateConfig {
    /// The node's base URL (`http://host:port`).
    pub node: url::Url,
    /// The repo as the node names it: `host/org/repo`.
    pub repo: String,
    /// `Authorization` for a private repo, sent as is.
    pub auth: Option<crate::Secret>,
    /// Bound on each wait on the node: connect, answer, next frame.
    pub fetch_timeout: Duration,
    /// Blobs per `POST .../blobs`.
    pub batch_blobs: usize,
    /// Batches at once.
    pub batches_in_flight: usize,
    /// Blob bytes asked for and not yet landed.
    pub in_flight_bytes: u64,
    /// Wants waiting at the owner.
    pub queue_depth: usize,
}

impl HydrateConfig {
    pub fn new(node: url::Url, repo: String) -> Self {
        use crate::limits::*;
        Self {
            node,
            repo,
            auth: None,
            fetch_timeout: HYDRATE_FETCH_TIMEOUT,
            batch_blobs: HYDRATE_BATCH_BLOBS,
            batches_in_flight: HYDRATE_BATCHES_IN_FLIGHT,
            in_flight_bytes: HYDRATE_IN_FLIGHT_BYTES,
            queue_depth: HYDRATE_QUEUE_DEPTH,
        }
    }
}

/// The mount's handle on hydration; see the module doc.
pub struct Hydrator {
    store: Arc<BlobStore>,
    to_owner: crate::doorbell::Sender<Want>,
    /// Wants sent and not yet taken in by the owner.
    queued: Arc<AtomicUsize>,
    depth: usize,
}

/// The owner shard's end of a [`Hydrator`]; run it with [`queue::serve`].
pub struct OwnerEnd {
    pub(crate) wants: crate::doorbell::Receiver<Want>,
    pub(crate) queued: Arc<AtomicUsize>,
    pub(crate) store: Arc<BlobStore>,
    pub(crate) config: HydrateConfig,
}

impl Hydrator {
    /// A hydrator over `store`, and the end its owner shard serves.
    pub fn new(store: Arc<BlobStore>, config: HydrateConfig) -> Result<(Hydrator, OwnerEnd), HydrateError> {
        let (tx, rx) = crate::doorbell::channel(None)
            .map_err(|e| HydrateError::Store(format!("making the hydration channel: {e}")))?;
        let queued = Arc::new(AtomicUsize::new(0));
        let depth = config.queue_depth;
        Ok((
            Hydrator { store: store.clone(), to_owner: tx, queued: queued.clone(), depth },
            OwnerEnd { wants: rx, queued, store, config },
        ))
    }

    pub fn store(&self) -> &Arc<BlobStore> {
        &self.store
    }

    /// The blob's local file, opened by the calling thread, if it is local
    /// and whole (see [`BlobStore::open`]).
    pub fn open_local(&self, oid: &Oid) -> Result<Option<std::fs::File>, HydrateError> {
        self.store.open(oid)
    }

    /// Lets the owner's queue end: wants sent after this fail with
    /// Stopping, and the owner answers those still pending the same way.
    pub fn close(&self) {
        self.to_owner.close();
    }

    /// Asks the owner for a blob. A full queue fails an open at once
    /// (`done` is called with QueueFull) and drops a prefetch.
    pub fn want(&self, want: Want) {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.depth {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            if let Some(done) = want.done {
                done(Err(HydrateError::QueueFull(self.depth)));
            }
            return;
        }
        if let Err(want) = self.to_owner.send(want) {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            if let Some(done) = want.done {
                done(Err(HydrateError::Stopping));
            }
        }
    }
}

/// `oid` for messages.
pub(crate) fn hex(oid: &Oid) -> String {
    oid_hex(oid)
}
