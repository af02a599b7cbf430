//! One shard as the services on it see it: which shard it is, and the
//! node it belongs to. Services are built from it; nothing but this folder
//! adds to it.

use super::node::NodeShared;
use crate::config::NodeConfig;
use crate::key::ShardId;
use crate::stats::ShardStats;
use crate::store::Layout;
use std::sync::Arc;

/// One shard as the services on it see it: which it is, and the node.
/// Lives on its executor thread, behind an `Rc`.
pub struct Shard {
    pub id: ShardId,
    pub node: Arc<NodeShared>,
}

impl Shard {
    /// This shard's own counters.
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
}
