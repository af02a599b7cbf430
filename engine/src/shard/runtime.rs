//! Starting and stopping the shards.
//!
//! `start` recovers the data directory, then spawns one glommio executor
//! per shard pinned to its CPU. Each shard joins the cross-shard mesh,
//! rebuilds its index, starts its background jobs (recency flush, expiry
//! sweep) and runs the caller's `serve` future (the HTTP face). Shutdown is
//! two-phase: each shard's `serve` returns once it has drained; the shard
//! keeps answering other shards' requests until every shard has drained,
//! so an in-flight PUT on one shard can still commit on another.

use super::messages::ShardRequest;
use super::{NodeShared, Shard};
use crate::config::NodeConfig;
use crate::key::ShardId;
use crate::limits::{CROSS_SHARD_CHANNEL_DEPTH, EXPIRY_SWEEP_INTERVAL, RECENCY_FLUSH_INTERVAL, TOUCH_FLUSH_INTERVAL};
use crate::remote::RemoteTier;
use crate::stats::{bump, ShardStats};
use crate::store::{recover, Layout, LocalTier};
use crate::EngineError;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
        // Drained: what git still runs (a background fetch, an upkeep) has
        // nobody left to serve.
        if let Some(m) = crate::repo::reaper::marker() {
            crate::repo::reaper::sweep(m);
        }
        first
    }
}

/// Starts the node. `serve` runs once per shard and must return when
/// `shard.node.is_stopping()` and its connections have drained.
pub fn start<F, Fut>(config: NodeConfig, serve: F) -> Result<NodeHandle, EngineError>
where
    F: Fn(Rc<Shard>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let nr = config.shards.max(1);
    assert!(nr <= usize::from(ShardId::MAX), "shard count fits ShardId");
    let mut config = config;
    let dir = config.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| EngineError::io("creating data dir", &dir, e))?;
    // Absolute from here on: git runs in other directories (clone --local
    // of a mirror), and a relative --data-dir would name nothing there.
    config.data_dir = dir.canonicalize().map_err(|e| EngineError::io("resolving data dir", &dir, e))?;
    // Before anything in the dir is touched: prepare wipes tmp/.
    let data_dir_lock = crate::store::lock::lock_data_dir(&config.data_dir)?;
    // Holding the lock, every git process marked with this data dir is an
    // orphan of a node killed before it could end them.
    crate::repo::reaper::set_marker(&config.data_dir);
    let orphans = crate::repo::reaper::sweep(&config.data_dir.to_string_lossy());
    if orphans > 0 {
        tracing::warn!(orphans, "killed git processes a previous node on this data dir left running");
    }
    let layout = Layout::new(config.data_dir.clone());
    recover::prepare(&layout, nr)?;
    let shared = Arc::new(NodeShared {
        config: config.clone(),
        layout,
        stats: (0..nr).map(|_| Arc::new(ShardStats::default())).collect(),
        stopping: AtomicBool::new(false),
        drained: AtomicUsize::new(0),
        serving: AtomicUsize::new(0),
        upload_packs: Arc::new(crate::repo::admission::Admission::new(
            config.repo.max_upload_packs,
            config.repo.upload_pack_queue,
        )),
        upstream_jobs: Arc::new(crate::repo::admission::Admission::new(
            config.repo.max_upstream_jobs,
            config.repo.upstream_job_queue,
        )),
        versions: Arc::default(),
        _data_dir_lock: data_dir_lock,
    });
    // Validate the remote config once, up front, for a clear error.
    if let Some(rc) = &config.remote {
        RemoteTier::new(rc, shared.stats[0].clone())?;
    }
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mesh = MeshBuilder::<ShardRequest, _>::full(nr, CROSS_SHARD_CHANNEL_DEPTH);
    let mut joins = Vec::with_capacity(nr);
    for id in 0..nr {
        let (shared, mesh, serve) = (shared.clone(), mesh.clone(), serve.clone());
        let cpu = (config.first_cpu + id) % cpus;
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("trove-shard-{id}"))
            .spin_before_park(config.spin_before_park)
            .io_memory(config.io_memory_bytes as usize)
            .spawn(move || async move { run_shard(id as ShardId, shared, mesh, serve).await })
            .map_err(|e| EngineError::Io {
                op: "starting shard",
                path: format!("cpu {cpu}").into(),
                source: e.into(),
            })?;
        joins.push(handle);
    }
    Ok(NodeHandle { shared, joins })
}

async fn run_shard<F, Fut>(
    id: ShardId,
    node: Arc<NodeShared>,
    mesh: MeshBuilder<ShardRequest, glommio::channels::channel_mesh::Full>,
    serve: F,
) -> Result<(), EngineError>
where
    F: Fn(Rc<Shard>) -> Fut,
    Fut: Future<Output = ()>,
{
    crate::store::settle_device_probe(&node.layout, id).await?;
    let index = recover::rebuild_index(&node.layout, id, crate::now_ms()).await?;
    let (senders, mut receivers) = mesh.join().await.map_err(|_| EngineError::ShardGone { shard: id })?;
    let stats = node.stats[usize::from(id)].clone();
    let remote = match &node.config.remote {
        Some(rc) => Some(Rc::new(RemoteTier::new(rc, stats)?)),
        None => None,
    };
    let capacity = node.config.local_capacity_bytes / node.nr_shards() as u64;
    let shard = Rc::new(Shard {
        id,
        local: LocalTier::new(id, node.layout.clone(), capacity, index, node.versions.clone()),
        remote,
        hot: RefCell::new(crate::store::hot::HotCache::new(node.config.memory_cache_bytes / node.nr_shards() as u64)),
        senders,
        flights: RefCell::new(HashMap::new()),
        pending_touches: RefCell::new(vec![Vec::new(); node.nr_shards()]),
        repos: RefCell::new(HashMap::new()),
        access: RefCell::new(HashMap::new()),
        misses: Default::default(),
        tree_flights: Default::default(),
        node: node.clone(),
    });
    shard.discover_mirrors().await;
    // Capacity may have shrunk since the last run.
    shard.local.evict_to_capacity().await;
    shard.refresh_local_gauges();

    for (_, rx) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(req) = rx.recv().await {
                glommio::spawn_local(shard.clone().handle(req)).detach();
            }
        })
        .detach();
    }
    let background = glommio::spawn_local(background_jobs(shard.clone()));
    let fetcher = glommio::spawn_local(background_fetches(shard.clone()));

    serve(shard.clone()).await;

    node.drained.fetch_add(1, Ordering::AcqRel);
    while node.drained.load(Ordering::Acquire) < node.nr_shards() {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    background.cancel().await;
    fetcher.cancel().await;
    Ok(())
}

/// Fetches this shard's recently used mirrors every `--fetch-interval`,
/// then repacks those that fetches changed (at most every `--upkeep-interval`).
async fn background_fetches(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(shard.config().repo.fetch_interval).await;
        shard.fetch_recent_mirrors().await;
        shard.upkeep_mirrors().await;
        shard.evict_mirrors().await;
    }
}

/// Periodic work of a shard: flush recency notes to their owners, and
/// remove this shard's expired objects.
async fn background_jobs(shard: Rc<Shard>) {
    let (mut since_sweep, mut since_recency) = (Duration::ZERO, Duration::ZERO);
    loop {
        glommio::timer::sleep(TOUCH_FLUSH_INTERVAL).await;
        let batches: Vec<Vec<u128>> = shard.pending_touches.borrow_mut().iter_mut().map(std::mem::take).collect();
        for (owner, hashes) in batches.into_iter().enumerate() {
            if !hashes.is_empty() {
                // Advisory: when the owner's queue is full, drop the notes.
                let _ = shard.senders.try_send_to(owner, ShardRequest::Touch { hashes });
            }
        }
        since_sweep += TOUCH_FLUSH_INTERVAL;
        since_recency += TOUCH_FLUSH_INTERVAL;
        if since_recency >= RECENCY_FLUSH_INTERVAL {
            since_recency = Duration::ZERO;
            shard.local.recency.flush(&shard.local.layout, shard.id).await;
        }
        if since_sweep >= EXPIRY_SWEEP_INTERVAL {
            since_sweep = Duration::ZERO;
            let expired = shard.local.index.borrow().expired(crate::now_ms());
            for hash in expired {
                if shard.local.remove(hash).await.is_ok() {
                    bump(&shard.stats().expirations, 1);
                }
            }
            shard.refresh_local_gauges();
        }
    }
}
