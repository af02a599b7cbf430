//! The objects service's state on one shard and its handler for the
//! messages other shards send (see the `objects` module doc).

use super::messages::{FetchReply, ObjectMsg};
use crate::error::EngineError;
use crate::remote::RemoteTier;
use crate::shard::{Port, Shard};
use crate::stats::ShardStats;
use crate::store::hot::HotCache;
use crate::store::landing::Landing;
use crate::store::versions::FileVersions;
use crate::store::{recover, LocalTier};
use futures_channel::oneshot;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What the objects services of every shard share.
#[derive(Default)]
pub struct ObjectsNode {
    /// Change counters of object files, for every shard's memory tier.
    pub versions: Arc<FileVersions>,
}

/// A fetch in flight on its owner.
pub(super) enum Flight {
    /// Waiting for the trailer; these requests want the answer.
    Starting(Vec<oneshot::Sender<FetchReply>>),
    Landing(Arc<Landing>),
}

/// One shard's objects service.
pub struct Objects {
    pub(super) shard: Rc<Shard>,
    pub(super) port: Port<ObjectMsg>,
    pub(super) versions: Arc<FileVersions>,
    pub(super) local: LocalTier,
    pub(super) remote: Option<Rc<RemoteTier>>,
    /// Small objects this shard served recently, whole, in memory.
    pub(super) hot: RefCell<HotCache>,
    pub(super) flights: RefCell<HashMap<u128, Flight>>,
    /// Recency notes for objects other shards own, sent in batches.
    pub(super) pending_touches: RefCell<Vec<Vec<u128>>>,
}

impl Objects {
    /// Rebuilds this shard's index from its files and opens the tiers.
    pub async fn open(shard: Rc<Shard>, node: &ObjectsNode, port: Port<ObjectMsg>) -> Result<Rc<Self>, EngineError> {
        let (id, nr) = (shard.id, shard.nr_shards());
        let index = recover::rebuild_index(shard.layout(), id, crate::clock::now_ms()).await?;
        let remote = match &shard.config().remote {
            Some(rc) => Some(Rc::new(RemoteTier::new(rc, shard.node.stats[usize::from(id)].clone())?)),
            None => None,
        };
        let capacity = shard.config().local_capacity_bytes / nr as u64;
        let objects = Rc::new(Self {
            local: LocalTier::new(id, shard.layout().clone(), capacity, index, node.versions.clone()),
            remote,
            hot: RefCell::new(HotCache::new(shard.config().memory_cache_bytes / nr as u64)),
            flights: RefCell::new(HashMap::new()),
            pending_touches: RefCell::new(vec![Vec::new(); nr]),
            versions: node.versions.clone(),
            port,
            shard,
        });
        // Capacity may have shrunk since the last run.
        objects.local.evict_to_capacity().await;
        objects.refresh_local_gauges();
        Ok(objects)
    }

    /// The shard this service runs on.
    pub fn shard(&self) -> &Rc<Shard> {
        &self.shard
    }

    pub(super) fn stats(&self) -> &ShardStats {
        self.shard.stats()
    }

    /// The remote tier's client, when the node has one.
    pub fn remote(&self) -> Option<&Rc<RemoteTier>> {
        self.remote.as_ref()
    }

    /// Serves one request from another shard.
    pub async fn handle(self: Rc<Self>, msg: ObjectMsg) {
        match msg {
            ObjectMsg::Commit { hash, tmp, disk_bytes, expires_ms, reply } => {
                let _ = reply.send(self.owner_commit(hash, &tmp, disk_bytes, expires_ms).await);
            }
            ObjectMsg::Remove { hash, reply } => {
                let _ = reply.send(self.owner_remove(hash).await);
            }
            ObjectMsg::Drop { hash, seen, reply } => {
                self.owner_drop(hash, seen).await;
                let _ = reply.send(());
            }
            ObjectMsg::Touch { hashes } => {
                for h in hashes {
                    self.local.touch(h);
                }
            }
            ObjectMsg::Fetch { key, len, reply } => {
                let _ = reply.send(self.owner_fetch(key, len).await);
            }
        }
    }

    pub(super) fn refresh_local_gauges(&self) {
        let ix = self.local.index.borrow();
        self.stats().local_objects.store(ix.len() as u64, Ordering::Relaxed);
        self.stats().local_used_bytes.store(ix.used_bytes(), Ordering::Relaxed);
    }
}
