//! The mount daemon's engine: the shard runtime with hydration alone.
//!
//! A mount daemon serves no HTTP and keeps no objects, mirrors or
//! snapshots, so it composes none of the node's services. It runs
//! `--shards` shards (one per core by default); each repo its mounts show
//! is owned by one of them, picked by the hash the node owns its mirror
//! by, and that shard runs the repo's hydration queue
//! (`trove_engine::hydrate`). Queues arrive while the shards run (a mount
//! of a repo new to the daemon) through each shard's doorbell, and end
//! when their hydrator closes (that repo's last mount went). A blob
//! already local never reaches a shard: the thread that got the FUSE
//! request reads it. This module never touches a FUSE session.

use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use trove_engine::doorbell;
use trove_engine::hydrate::OwnerEnd;
use trove_engine::key::ShardId;
use trove_engine::shard::runtime::{self, Job, NodeHandle, Services};
use trove_engine::shard::{Mesh, NodeShared, Shard};
use trove_engine::EngineError;

/// The services of a mount daemon's shard: none but its id. It has no
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

/// Makes `data_dir` this daemon's (locked: a second daemon or a node on
/// it is refused) for `shards` shards, before anything in it is touched.
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
    /// One per shard: the hydration queues it is to serve.
    queues: Vec<doorbell::Sender<OwnerEnd>>,
}

/// Starts the shards on a locked data dir. Each serves the hydration
/// queues [`MountEngine::serve`] hands it until [`MountEngine::stop`].
pub(crate) fn start(node: Arc<NodeShared>) -> Result<MountEngine, EngineError> {
    let shards = node.nr_shards();
    let mut queues = Vec::with_capacity(shards);
    let mut ends = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (tx, rx) = doorbell::channel::<OwnerEnd>(None).map_err(|e| EngineError::io("making a doorbell", "", e))?;
        queues.push(tx);
        ends.push(Some(rx));
    }
    let ends = Arc::new(Mutex::new(ends));
    let handle = runtime::start::<MountShard, _, _>(node, Arc::new(()), move |s: Rc<MountShard>| {
        let mine = ends.lock().ok().and_then(|mut w| w.get_mut(usize::from(s.id)).and_then(Option::take));
        async move {
            let Some(bell) = mine else { return };
            let mut bell = bell.on_shard();
            // One per repo mounted in the daemon's life: few.
            let mut running = Vec::new();
            while let Some(end) = bell.recv().await {
                // Runs at once up to its first wait; nothing is borrowed here.
                running.push(glommio::spawn_local(trove_engine::hydrate::queue::serve(end)).detach());
            }
            // Each queue ends once its hydrator closes.
            for t in running {
                t.await;
            }
        }
    })?;
    Ok(MountEngine { handle, queues })
}

impl MountEngine {
    pub(crate) fn nr_shards(&self) -> usize {
        self.queues.len()
    }

    /// Hands `end` to shard `owner`, which serves it until its hydrator
    /// closes. False if the engine is stopping.
    pub(crate) fn serve(&self, owner: ShardId, end: OwnerEnd) -> bool {
        self.queues.get(usize::from(owner)).is_some_and(|q| q.send(end).is_ok())
    }

    /// Ends every shard once the queues it serves have ended (close their
    /// hydrators first) and waits for them.
    pub(crate) fn stop(self) {
        for q in &self.queues {
            q.close();
        }
        self.handle.shared.request_stop();
        let _ = self.handle.join();
    }
}
