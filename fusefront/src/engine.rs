//! The mount daemon's engine: the shard runtime with hydration alone.
//!
//! A mount serves no HTTP and keeps no objects, mirrors or snapshots, so it
//! composes none of the node's services. It runs `--shards` shards (one
//! per core by default), and the repo is owned by one of them, picked by
//! the hash the node owns its mirror by: that shard runs the hydration
//! queue (`trove_engine::hydrate`). The others hold no repo (one mount
//! process serves one repo) and sleep until the mount stops. A blob
//! already local never reaches a shard: the thread that got the FUSE
//! request reads it. This module never touches the FUSE session.

use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use trove_engine::doorbell;
use trove_engine::hydrate::OwnerEnd;
use trove_engine::key::ShardId;
use trove_engine::shard::runtime::{self, Job, NodeHandle, Services};
use trove_engine::shard::{Mesh, NodeShared, Shard};
use trove_engine::EngineError;

/// The services of a mount's shard: none but its id. It has no
/// cross-shard messages.
struct MountShard {
    id: ShardId,
}

impl Services for MountShard {
    type Envelope = std::convert::Infallible;
    type NodeState = ();

    async fn open(shard: Rc<Shard>, _: Arc<()>, _: &Mesh<Self::Envelope>) -> Result<Rc<Self>, EngineError> {
        Ok(Rc::new(MountShard { id: shard.id }))
    }

    async fn handle(self: Rc<Self>, msg: Self::Envelope) {
        match msg {}
    }

    fn background(self: &Rc<Self>) -> Vec<Job> {
        Vec::new()
    }
}

/// Makes `data_dir` this mount's (locked: a second mount or a node on it
/// is refused) for `shards` shards, before anything in it is touched.
pub(crate) fn lock_data_dir(data_dir: &Path, shards: usize) -> Result<Arc<NodeShared>, EngineError> {
    let config = trove_engine::NodeConfig {
        shards,
        data_dir: data_dir.to_owned(),
        memory_cache_bytes: 0,
        io_memory_bytes: 8 << 20,
        role: "mount",
        ..Default::default()
    };
    runtime::open_node(config, |_| {}, Vec::new())
}

/// The shard that owns `repo` (`host/org/repo`) among `shards`: the one
/// the node's own mirror of it lives on with as many shards.
pub(crate) fn owner_of(repo: &str, shards: usize) -> ShardId {
    // A mount's repo was checked already (`trove mount` refuses a name
    // the node would); shard 0 for anything else.
    trove_engine::repo::key::RepoKey::parse_canonical(repo).map_or(0, |key| key.owner(shards))
}

/// The running shards; [`MountEngine::stop`] ends them.
pub(crate) struct MountEngine {
    handle: NodeHandle,
    /// One per shard that owns nothing: closing it ends that shard.
    idle: Vec<doorbell::Sender<()>>,
}

/// Starts the shards on a locked data dir: shard `owner` serves the
/// hydration queue `end` belongs to until the hydrator closes; the others
/// wait for [`MountEngine::stop`].
pub(crate) fn start(node: Arc<NodeShared>, owner: ShardId, end: OwnerEnd) -> Result<MountEngine, EngineError> {
    let shards = node.nr_shards();
    let mut idle = Vec::with_capacity(shards);
    let mut waits = Vec::with_capacity(shards);
    for id in 0..shards {
        if id == usize::from(owner) {
            waits.push(None);
            continue;
        }
        let (tx, rx) = doorbell::channel::<()>(Some(1)).map_err(|e| EngineError::io("making a doorbell", "", e))?;
        idle.push(tx);
        waits.push(Some(rx));
    }
    let end = Arc::new(Mutex::new(Some(end)));
    let waits = Arc::new(Mutex::new(waits));
    let handle = runtime::start::<MountShard, _, _>(node, Arc::new(()), move |s: Rc<MountShard>| {
        let mine = |v: &Mutex<_>| -> Option<_> { v.lock().ok().and_then(|mut v| Option::take(&mut v)) };
        let end = if s.id == owner { mine(&end) } else { None };
        let wait = waits.lock().ok().and_then(|mut w| w.get_mut(usize::from(s.id)).and_then(Option::take));
        async move {
            if let Some(end) = end {
                trove_engine::hydrate::queue::serve(end).await;
            } else if let Some(wait) = wait {
                let mut wait = wait.on_shard();
                while wait.recv().await.is_some() {}
            }
        }
    })?;
    Ok(MountEngine { handle, idle })
}

impl MountEngine {
    /// Ends every shard (the owner's queue ends once the hydrator closes)
    /// and waits for them.
    pub(crate) fn stop(self) {
        for bell in &self.idle {
            bell.close();
        }
        self.handle.shared.request_stop();
        let _ = self.handle.join();
    }
}
