//! The node: which services run on every shard, how they are built, and
//! how their messages travel. The one place the services are composed.
//!
//! On each shard: [`Objects`] (the tiers) at the bottom; [`Mirrors`] on
//! objects (a cold mirror restores from the tiers); [`Snapshots`],
//! [`SharedPacks`] and [`TreeIndexes`] on mirrors and objects. Snapshots
//! and shared packs hear of mirror changes as listeners. Each service
//! owns its cross-shard messages; [`Envelope`] carries them over the
//! runtime's mesh and [`NodeServices::handle`] hands each to its service.
//! A face (`trove serve`'s HTTP) runs on top and takes the services it
//! uses. A mount daemon composes its own, smaller set on the same runtime.

use crate::config::NodeConfig;
use crate::error::EngineError;
use crate::indexes::{IndexMsg, TreeIndexes};
use crate::mirrors::{MirrorMsg, Mirrors, MirrorsNode};
use crate::objects::{ObjectMsg, Objects, ObjectsNode};
use crate::packs::{PackMsg, SharedPacks};
use crate::remote::RemoteTier;
use crate::repo::reaper;
use crate::shard::runtime::{self, Job, NodeHandle, Services};
use crate::shard::{Mesh, NodeShared, Shard};
use crate::snapshots::{SnapshotMsg, Snapshots};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

/// Every service of one shard of a node.
pub struct NodeServices {
    pub shard: Rc<Shard>,
    pub objects: Rc<Objects>,
    pub mirrors: Rc<Mirrors>,
    pub snapshots: Rc<Snapshots>,
    pub packs: Rc<SharedPacks>,
    pub indexes: Rc<TreeIndexes>,
}

/// A message between shards, for the service it names.
pub enum Envelope {
    Objects(ObjectMsg),
    Mirrors(MirrorMsg),
    Snapshots(SnapshotMsg),
    Packs(PackMsg),
    Indexes(IndexMsg),
}

/// What the services of every shard share.
pub struct NodeState {
    objects: ObjectsNode,
    mirrors: Arc<MirrorsNode>,
}

impl Services for NodeServices {
    type Envelope = Envelope;
    type NodeState = NodeState;

    async fn open(shard: Rc<Shard>, node: Arc<NodeState>, mesh: &Mesh<Envelope>) -> Result<Rc<Self>, EngineError> {
        let objects = Objects::open(shard.clone(), &node.objects, mesh.port(Envelope::Objects)).await?;
        let mirrors =
            Mirrors::open(shard.clone(), node.mirrors.clone(), objects.clone(), mesh.port(Envelope::Mirrors)).await;
        let snapshots = Snapshots::new(shard.clone(), objects.clone(), mirrors.clone(), mesh.port(Envelope::Snapshots));
        let packs = SharedPacks::new(shard.clone(), &mirrors, mesh.port(Envelope::Packs));
        let indexes = TreeIndexes::new(shard.clone(), objects.clone(), mirrors.clone(), mesh.port(Envelope::Indexes));
        Ok(Rc::new(Self { shard, objects, mirrors, snapshots, packs, indexes }))
    }

    async fn handle(self: Rc<Self>, msg: Envelope) {
        match msg {
            Envelope::Objects(m) => self.objects.clone().handle(m).await,
            Envelope::Mirrors(m) => self.mirrors.clone().handle(m).await,
            Envelope::Snapshots(m) => self.snapshots.clone().handle(m).await,
            Envelope::Packs(m) => self.packs.clone().handle(m).await,
            Envelope::Indexes(m) => self.indexes.clone().handle(m).await,
        }
    }

    fn background(self: &Rc<Self>) -> Vec<Job> {
        vec![Box::pin(self.objects.clone().background()), Box::pin(self.mirrors.clone().background())]
    }
}

/// A running node: its shared state and its shards.
pub struct Node {
    pub shared: Arc<NodeShared>,
    handle: NodeHandle,
}

impl Node {
    /// Waits for every shard to stop; returns the first shard error.
    pub fn join(self) -> Result<(), EngineError> {
        let result = self.handle.join();
        // Drained: what git still runs (a background fetch, an upkeep) has
        // nobody left to serve.
        if let Some(m) = reaper::marker() {
            reaper::sweep(m);
        }
        result
    }
}

/// Starts the node. `serve` (the face) runs once per shard and must
/// return when `shard.node.is_stopping()` and its connections have drained.
pub fn start<F, Fut>(config: NodeConfig, serve: F) -> Result<Node, EngineError>
where
    F: Fn(Rc<NodeServices>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let on_locked = |dir: &std::path::Path| {
        // Holding the lock, every git process marked with this data dir is
        // an orphan of a node killed before it could end them.
        reaper::set_marker(dir);
        let orphans = reaper::sweep(&dir.to_string_lossy());
        if orphans > 0 {
            tracing::warn!(orphans, "killed git processes a previous node on this data dir left running");
        }
    };
    // What waits on an upstream would hold the drain until its own
    // deadline: a stop ends it, so its requests are answered.
    let shared = runtime::open_node(config, on_locked, vec![reaper::kill_upstream_jobs])?;
    // Validate the remote config once, up front, for a clear error.
    if let Some(rc) = &shared.config.remote {
        RemoteTier::new(rc, shared.stats[0].clone())?;
    }
    let state = Arc::new(NodeState {
        objects: ObjectsNode::default(),
        mirrors: Arc::new(MirrorsNode::new(&shared.config.repo)),
    });
    let handle = runtime::start::<NodeServices, _, _>(shared.clone(), state, serve)?;
    Ok(Node { shared, handle })
}
