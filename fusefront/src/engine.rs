//! The mount daemon's engine: the shard runtime with hydration alone.
//!
//! A mount serves no HTTP and keeps no objects, mirrors or snapshots, so it
//! composes none of the node's services: its one shard runs the hydration
//! queue (`trove_engine::hydrate`) and nothing else, on the runtime every
//! trove process shares. This module never touches the FUSE session.

use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use trove_engine::hydrate::OwnerEnd;
use trove_engine::shard::runtime::{self, Job, NodeHandle, Services};
use trove_engine::shard::{Mesh, Shard};
use trove_engine::EngineError;

/// The services of the mount's one shard: hydration alone. It serves no
/// HTTP and keeps no objects, mirrors or snapshots, so it composes none of
/// the node's services and has no cross-shard messages.
struct MountShard;

impl Services for MountShard {
    type Envelope = std::convert::Infallible;
    type NodeState = ();

    async fn open(_: Rc<Shard>, _: Arc<()>, _: &Mesh<Self::Envelope>) -> Result<Rc<Self>, EngineError> {
        Ok(Rc::new(MountShard))
    }

    async fn handle(self: Rc<Self>, msg: Self::Envelope) {
        match msg {}
    }

    fn background(self: &Rc<Self>) -> Vec<Job> {
        Vec::new()
    }
}

/// Starts the engine's runtime on the mount's `data_dir`. Its one shard
/// serves the hydration queue whose end is sent on the returned channel
/// (dropping the sender lets the shard stop).
pub(crate) fn start_engine(
    data_dir: &Path,
) -> Result<(NodeHandle, futures_channel::oneshot::Sender<OwnerEnd>), EngineError> {
    let config = trove_engine::NodeConfig {
        shards: 1,
        data_dir: data_dir.to_owned(),
        memory_cache_bytes: 0,
        io_memory_bytes: 8 << 20,
        role: "mount",
        ..Default::default()
    };
    let (tx, rx) = futures_channel::oneshot::channel::<OwnerEnd>();
    let rx = Arc::new(Mutex::new(Some(rx)));
    let node = runtime::open_node(config, |_| {}, Vec::new())?;
    let engine = runtime::start::<MountShard, _, _>(node, Arc::new(()), move |_| {
        let rx = rx.lock().ok().and_then(|mut r| r.take());
        async move {
            if let Some(Ok(end)) = match rx {
                Some(rx) => Some(rx.await),
                None => None,
            } {
                trove_engine::hydrate::queue::serve(end).await;
            }
        }
    })?;
    Ok((engine, tx))
}
