//! The mount's handle on hydration ([`Hydrator`], `Send`, used from any
//! thread) and the owner shard's end of it ([`OwnerEnd`]).

use super::blobstore::BlobStore;
use super::config::HydrateConfig;
use super::error::HydrateError;
use super::health::NodeHealth;
use super::want::{Ask, Oid, Want};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The mount's handle on hydration; see the `hydrate` module doc.
pub struct Hydrator {
    store: Arc<BlobStore>,
    to_owner: crate::doorbell::Sender<Ask>,
    /// Wants sent and not yet taken in by the owner.
    queued: Arc<AtomicUsize>,
    depth: usize,
    health: Arc<NodeHealth>,
}

/// The owner shard's end of a [`Hydrator`]; run it with
/// [`super::queue::serve`].
pub struct OwnerEnd {
    pub(crate) wants: crate::doorbell::Receiver<Ask>,
    pub(crate) queued: Arc<AtomicUsize>,
    pub(crate) store: Arc<BlobStore>,
    pub(crate) config: HydrateConfig,
    pub(crate) health: Arc<NodeHealth>,
}

impl Hydrator {
    /// A hydrator over `store`, and the end its owner shard serves.
    pub fn new(store: Arc<BlobStore>, config: HydrateConfig) -> Result<(Hydrator, OwnerEnd), HydrateError> {
        let (tx, rx) = crate::doorbell::channel(None)
            .map_err(|e| HydrateError::Store(format!("making the hydration channel: {e}")))?;
        let queued = Arc::new(AtomicUsize::new(0));
        let depth = config.queue_depth;
        let health = Arc::new(NodeHealth::default());
        Ok((
            Hydrator { store: store.clone(), to_owner: tx, queued: queued.clone(), depth, health: health.clone() },
            OwnerEnd { wants: rx, queued, store, config, health },
        ))
    }

    pub fn store(&self) -> &Arc<BlobStore> {
        &self.store
    }

    /// Whether the node answers, as the owner last saw it.
    pub fn health(&self) -> &Arc<NodeHealth> {
        &self.health
    }

    /// The blob's local bytes, opened by the calling thread, if it is local
    /// and whole (see [`BlobStore::open`]).
    pub fn open_local(&self, oid: &Oid) -> Result<Option<super::blobstore::LocalBlob>, HydrateError> {
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
        if let Err(Ask::One(want)) = self.to_owner.send(Ask::One(want)) {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            if let Some(done) = want.done {
                done(Err(HydrateError::Stopping));
            }
        }
    }

    /// Asks the owner to fetch `blobs` in the background, in this order,
    /// when no read or prefetch waits (prehydration): each at most once,
    /// a failed one not again, none while the node is down.
    pub fn prehydrate(&self, blobs: Vec<(Oid, u64)>) {
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self.to_owner.send(Ask::Background(blobs)).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
