//! Starting and stopping the shards.
//!
//! [`open_node`] prepares the data directory (lock, recovery) and the
//! node-wide state; [`start`] spawns one glommio executor per shard pinned
//! to its CPU. Each shard settles its device probe, joins the cross-shard
//! mesh, has the composition build its services ([`Services::open`]),
//! serves their messages, runs their background jobs and runs the caller's
//! `serve` future (a face). Shutdown is two-phase: each shard's `serve`
//! returns once it has drained; the shard keeps answering other shards'
//! requests until every shard has drained, so an in-flight PUT on one
//! shard can still commit on another.
//!
//! Generic over the composition: the runtime never names a service.

use super::context::Shard;
use super::mesh::Mesh;
use super::node::NodeShared;
use crate::config::NodeConfig;
use crate::error::EngineError;
use crate::key::ShardId;
use crate::limits::CROSS_SHARD_CHANNEL_DEPTH;
use crate::store::{recover, Layout};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement, PoolPlacement};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// A shard's background job: runs until the shard stops, then is cancelled.
pub type Job = Pin<Box<dyn Future<Output = ()>>>;

/// The services of one shard, as the composition builds and reaches them.
pub trait Services: Sized + 'static {
    /// What travels between shards: one variant per service's messages.
    type Envelope: Send + 'static;
    /// What every shard's services share, built once for the node.
    type NodeState: Send + Sync + 'static;

    /// Builds this shard's services.
    fn open(
        shard: Rc<Shard>,
        node: Arc<Self::NodeState>,
        mesh: &Mesh<Self::Envelope>,
    ) -> impl Future<Output = Result<Rc<Self>, EngineError>>;

    /// Serves one message another shard sent.
    fn handle(self: Rc<Self>, msg: Self::Envelope) -> impl Future<Output = ()>;

    /// The shard's background jobs, run until it stops.
    fn background(self: &Rc<Self>) -> Vec<Job>;
}

/// A running node: its shared state and its executor threads.
pub struct NodeHandle {
    pub shared: Arc<NodeShared>,
    joins: Vec<ExecutorJoinHandle<Result<(), EngineError>>>,
}

impl NodeHandle {
    /// Waits for every shard to stop; returns the first shard error.
    pub fn join(self) -> Result<(), EngineError> {
        let mut first = Ok(());
        for (i, j) in self.joins.into_iter().enumerate() {
            let r = match j.join() {
                Ok(r) => r,
                Err(e) => Err(EngineError::Io {
                    op: "running shard",
                    path: format!("shard {i}").into(),
                    source: std::io::Error::other(e.to_string()),
                }),
            };
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

/// Makes the data directory the node's: created, absolute, locked
/// (`on_locked` runs right after, before anything in it is touched) and
/// recovered (tmp/ wiped, per-shard folders made).
pub fn open_node(
    config: NodeConfig,
    on_locked: impl FnOnce(&Path),
    on_stop: Vec<fn()>,
) -> Result<Arc<NodeShared>, EngineError> {
    let nr = config.shards.max(1);
    assert!(nr <= usize::from(ShardId::MAX), "shard count fits ShardId");
    let mut config = config;
    config.shards = nr;
    let dir = config.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| EngineError::io("creating data dir", &dir, e))?;
    // Absolute from here on: git runs in other directories (clone --local
    // of a mirror), and a relative --data-dir would name nothing there.
    config.data_dir = dir.canonicalize().map_err(|e| EngineError::io("resolving data dir", &dir, e))?;
    // Before anything in the dir is touched: prepare wipes tmp/.
    let lock = crate::store::lock::lock_data_dir(&config.data_dir, config.role)?;
    on_locked(&config.data_dir);
    let layout = Layout::new(config.data_dir.clone());
    recover::prepare(&layout, nr)?;
    Ok(Arc::new(NodeShared::new(config, layout, nr, on_stop, lock)))
}

/// Starts the shards of `node`. `serve` runs once per shard and must
/// return when `node.is_stopping()` and its connections have drained.
pub fn start<S, F, Fut>(node: Arc<NodeShared>, state: Arc<S::NodeState>, serve: F) -> Result<NodeHandle, EngineError>
where
    S: Services,
    F: Fn(Rc<S>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let nr = node.nr_shards();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mesh = MeshBuilder::<S::Envelope, _>::full(nr, CROSS_SHARD_CHANNEL_DEPTH);
    let mut joins = Vec::with_capacity(nr);
    for id in 0..nr {
        let (node, state, mesh, serve) = (node.clone(), state.clone(), mesh.clone(), serve.clone());
        let cpu = (node.config.first_cpu + id) % cpus;
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("trove-shard-{id}"))
            .spin_before_park(node.config.spin_before_park)
            .io_memory(node.config.io_memory_bytes as usize);
        if node.config.blocking_threads > 1 {
            builder = builder.blocking_thread_pool_placement(PoolPlacement::Unbound(node.config.blocking_threads));
        }
        let handle = builder
            .spawn(move || async move { run_shard::<S, F, Fut>(id as ShardId, node, state, mesh, serve).await })
            .map_err(|e| EngineError::Io {
                op: "starting shard",
                path: format!("cpu {cpu}").into(),
                source: e.into(),
            })?;
        joins.push(handle);
    }
    Ok(NodeHandle { shared: node, joins })
}

async fn run_shard<S, F, Fut>(
    id: ShardId,
    node: Arc<NodeShared>,
    state: Arc<S::NodeState>,
    mesh: MeshBuilder<S::Envelope, glommio::channels::channel_mesh::Full>,
    serve: F,
) -> Result<(), EngineError>
where
    S: Services,
    F: Fn(Rc<S>) -> Fut,
    Fut: Future<Output = ()>,
{
    crate::store::settle_device_probe(&node.layout, id).await?;
    let (senders, mut receivers) = mesh.join().await.map_err(|_| EngineError::ShardGone { shard: id })?;
    let mesh = Mesh::new(senders);
    let shard = Rc::new(Shard { id, node: node.clone() });
    let services = S::open(shard, state, &mesh).await?;

    for (_, rx) in receivers.streams() {
        let services = services.clone();
        glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                glommio::spawn_local(services.clone().handle(msg)).detach();
            }
        })
        .detach();
    }
    let jobs: Vec<_> = services.background().into_iter().map(glommio::spawn_local).collect();

    serve(services.clone()).await;

    node.drained.fetch_add(1, Ordering::AcqRel);
    while node.drained.load(Ordering::Acquire) < node.nr_shards() {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    for job in jobs {
        job.cancel().await;
    }
    Ok(())
}
