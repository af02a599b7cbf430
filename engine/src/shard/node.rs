//! State every shard of a node can see: configuration, everyone's
//! counters, the data directory and the stop flags. Immutable or atomic;
//! no locks, and nothing that belongs to one service (a service's
//! node-wide state is its own, handed to it by the composition).

use crate::config::NodeConfig;
use crate::stats::ShardStats;
use crate::store::Layout;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

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
    /// Run once by [`NodeShared::request_stop`]: what waits on work
    /// outside the node (an upstream) would hold the drain until its own
    /// deadline, so the composition ends it here.
    pub on_stop: Vec<fn()>,
    /// Held for the node's life: no other node uses this data dir.
    pub _data_dir_lock: crate::store::lock::DataDirLock,
}

impl NodeShared {
    /// The shared state of a node of `nr` shards on the locked data dir.
    pub fn new(
        config: NodeConfig,
        layout: Layout,
        nr: usize,
        on_stop: Vec<fn()>,
        lock: crate::store::lock::DataDirLock,
    ) -> Self {
        Self {
            config,
            layout,
            stats: (0..nr).map(|_| Arc::new(ShardStats::default())).collect(),
            stopping: AtomicBool::new(false),
            drained: AtomicUsize::new(0),
            serving: AtomicUsize::new(0),
            on_stop,
            _data_dir_lock: lock,
        }
    }

    pub fn nr_shards(&self) -> usize {
        self.stats.len()
    }

    pub fn request_stop(&self) {
        self.stopping.store(true, Ordering::Release);
        for hook in &self.on_stop {
            hook();
        }
    }

    /// True once every shard's face is accepting.
    pub fn is_ready(&self) -> bool {
        self.serving.load(Ordering::Acquire) == self.nr_shards() && !self.is_stopping()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}
