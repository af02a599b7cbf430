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

/// What one shard runs.
enum ShardWork {
    /// The repo's hydration queue, until the hydrator closes.
    Hydrate(Box<OwnerEnd>),
    /// Nothing, until its doorbell closes.
    Idle(doorbell::Receiver<()>),
}

/// Starts the shards on a locked data dir: shard `owner` serves the
/// hydration queue `end` belongs to until the hydrator closes; the others
/// wait for [`MountEngine::stop`].
pub(crate) fn start(node: Arc<NodeShared>, owner: ShardId, end: OwnerEnd) -> Result<MountEngine, EngineError> {
    let shards = node.nr_shards();
    let mut idle = Vec::with_capacity(shards);
    let mut work = Vec::with_capacity(shards);
    let mut end = Some(end);
    for id in 0..shards {
        if id == usize::from(owner) {
            work.push(end.take().map(|e| ShardWork::Hydrate(Box::new(e))));
            continue;
        }
        let (tx, rx) = doorbell::channel::<()>(Some(1)).map_err(|e| EngineError::io("making a doorbell", "", e))?;
        idle.push(tx);
        work.push(Some(ShardWork::Idle(rx)));
    }
    let work = Arc::new(Mutex::new(work));
    let handle = runtime::start::<MountShard, _, _>(node, Arc::new(()), move |s: Rc<MountShard>| {
        let mine = work.lock().ok().and_then(|mut w| w.get_mut(usize::from(s.id)).and_then(Option::take));
        async move {
            match mine {
                Some(ShardWork::Hydrate(end)) => trove_engine::hydrate::queue::serve(*end).await,
                Some(ShardWork::Idle(bell)) => {
                    let mut bell = bell.on_shard();
                    while bell.recv().await.is_some() {}
                }
                None => {}
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
