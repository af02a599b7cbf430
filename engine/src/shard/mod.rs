//! Shards: one pinned glommio executor per core, each owning the objects
//! whose name hashes to it (`key::owner`).
//!
//! The owner coordinates: it publishes, removes, evicts, keeps the index and
//! runs the one remote fetch of a key (singleflight). Bytes stay local: any
//! shard reads sealed files itself, so a warm hit never hops cores. Shards
//! talk over glommio's bounded `channel_mesh`; a request that needs a reply
//! carries a oneshot sender. Calls to one's own shard are plain calls.
//!
//! Split: `runtime.rs` starts and stops the executors; `messages.rs` is the
//! cross-shard protocol; `ops.rs` is what an owner does on request.

pub mod messages;
pub mod ops;
pub mod runtime;

use crate::config::NodeConfig;
use crate::key::ShardId;
use crate::remote::RemoteTier;
use crate::stats::ShardStats;
use crate::store::landing::Landing;
use crate::store::{Layout, LocalTier};
use futures_channel::oneshot;
use glommio::channels::channel_mesh::Senders;
use messages::{FetchReply, ShardRequest};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// State every shard can see: configuration, everyone's counters and the
/// stop flags. Immutable or atomic; no locks.
pub struct NodeShared {
    pub config: NodeConfig,
    pub layout: Layout,
    pub stats: Vec<Arc<ShardStats>>,
    /// Set by SIGTERM/SIGINT: stop accepting, drain, exit.
    pub stopping: AtomicBool,
    /// Shards that have drained their connections; when all have, the
    /// mesh (which serves their cross-shard requests) may close.
    pub drained: AtomicUsize,
    /// Shards whose face is up and accepting (readiness).
    pub serving: AtomicUsize,
    /// Node-wide admission of git upload-pack processes.
    pub upload_packs: Arc<crate::repo::admission::Admission>,
    /// Clones and fetches against upstreams, node-wide.
    pub upstream_jobs: Arc<crate::repo::admission::Admission>,
    /// Change counters of object files, for every shard's memory tier.
    pub versions: Arc<crate::store::versions::FileVersions>,
    /// Held for the node's life: no other node uses this data dir.
    pub _data_dir_lock: crate::store::lock::DataDirLock,
}

impl NodeShared {
    pub fn nr_shards(&self) -> usize {
        self.stats.len()
    }

    pub fn request_stop(&self) {
        self.stopping.store(true, Ordering::Release);
        // What waits on an upstream would hold the drain until its own
        // deadline: end it now, so its requests are answered.
        crate::repo::reaper::kill_upstream_jobs();
    }

    /// True once every shard's face is accepting.
    pub fn is_ready(&self) -> bool {
        self.serving.load(Ordering::Acquire) == self.nr_shards() && !self.is_stopping()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// A fetch in flight on its owner.
enum Flight {
    /// Waiting for the trailer; these requests want the answer.
    Starting(Vec<oneshot::Sender<FetchReply>>),
    Landing(Arc<Landing>),
}

/// One shard: lives on its executor thread, behind an `Rc`.
pub struct Shard {
    pub id: ShardId,
    pub node: Arc<NodeShared>,
    pub local: LocalTier,
    pub remote: Option<Rc<RemoteTier>>,
    /// Small objects this shard served recently, whole, in memory.
    pub hot: RefCell<crate::store::hot::HotCache>,
    senders: Senders<ShardRequest>,
    flights: RefCell<HashMap<u128, Flight>>,
    /// Recency notes for objects other shards own, sent in batches.
    pending_touches: RefCell<Vec<Vec<u128>>>,
    /// The repos this shard owns, by `RepoKey::hash`.
    pub(crate) repos: RefCell<HashMap<u128, crate::repo::mirror::RepoState>>,
    /// Private repos' access checks that passed: (repo hash, keyed tag of
    /// the Authorization header) to when (see repo/access.rs).
    pub(crate) access: RefCell<HashMap<(u128, u128), std::time::Instant>>,
    /// Names the mirrors lacked after a fetch (see repo/misses.rs).
    pub(crate) misses: crate::repo::misses::MissCache,
    /// Tree indexes this shard is making, for the askers waiting on them
    /// (see tree/build.rs).
    pub(crate) tree_flights: crate::tree::build::TreeFlights,
}

impl Shard {
    pub fn stats(&self) -> &ShardStats {
        &self.node.stats[usize::from(self.id)]
    }

    pub fn layout(&self) -> &Layout {
        &self.node.layout
    }

    pub fn nr_shards(&self) -> usize {
        self.node.nr_shards()
    }

    pub fn config(&self) -> &NodeConfig {
        &self.node.config
    }

    /// Sends `make(reply)` to `owner` and waits for the reply.
    pub(crate) async fn call<T>(
        &self,
        owner: ShardId,
        make: impl FnOnce(oneshot::Sender<T>) -> ShardRequest,
    ) -> Result<T, crate::EngineError> {
        let (tx, rx) = oneshot::channel();
        let gone = || crate::EngineError::ShardGone { shard: owner };
        self.senders.send_to(usize::from(owner), make(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// Notes that `hash`, owned by `owner`, was just read.
    pub(crate) fn note_touch(&self, owner: ShardId, hash: u128) {
        if owner == self.id {
            self.local.touch(hash);
            return;
        }
        let mut pending = self.pending_touches.borrow_mut();
        let list = &mut pending[usize::from(owner)];
        if list.len() < crate::limits::TOUCH_BUFFER_MAX {
            list.push(hash);
        }
    }

    /// Has the owner drop `hash`, found corrupt or expired in the file
    /// opened when its change counter was `seen`, and waits until it has:
    /// a second look then finds the remote copy, or a newer file.
    pub(crate) async fn drop_found(self: &Rc<Self>, owner: ShardId, hash: u128, seen: u64) {
        if owner == self.id {
            self.owner_drop(hash, seen).await;
        } else {
            let _ = self.call(owner, move |reply| ShardRequest::Drop { hash, seen, reply }).await;
        }
    }

    pub(crate) fn refresh_local_gauges(&self) {
        let ix = self.local.index.borrow();
        self.stats().local_objects.store(ix.len() as u64, Ordering::Relaxed);
        self.stats().local_used_bytes.store(ix.used_bytes(), Ordering::Relaxed);
    }
}
