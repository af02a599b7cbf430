//! The git face's settings, and what a caller needs of a mirror.

use super::key::Upstreams;
use std::time::Duration;

/// What a caller needs of a repo's mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// It exists (clone it if it does not).
    Ready,
    /// It exists and its refs were checked against the upstream within
    /// `refs_ttl` (a client is about to list refs).
    Fresh,
    /// Fetch now: a client wants a commit the mirror lacks.
    Fetch,
}

/// The git face's settings.
#[derive(Debug, Clone)]
pub struct RepoConfig {
    pub upstreams: Upstreams,
    /// How often recently used mirrors fetch in the background. Default 60s.
    pub fetch_interval: Duration,
    /// How long a ref check of the upstream stays good. Default 10s.
    pub refs_ttl: Duration,
    /// Most upload-pack processes at once on the node. Default 2 x shards.
    pub max_upload_packs: usize,
    /// Requests that may wait for an upload-pack slot; past it, 503.
    pub upload_pack_queue: usize,
    /// Most upstream jobs (clones and fetches) at once on the node.
    /// Default 4 x shards.
    pub max_upstream_jobs: usize,
    /// Upstream jobs that may wait for a slot; past it, 503. Default 64.
    pub upstream_job_queue: usize,
    /// Longest a clone or fetch may run before it is killed. Default 1h.
    pub clone_timeout: Duration,
    /// Longest an upstream job (clone, fetch, ls-remote) may go without
    /// progress, connecting included, before it is killed and its requests
    /// get 504. Default 30s.
    pub upstream_timeout: Duration,
    /// A snapshot is rebuilt when HEAD moved and it is older than this.
    /// Default 1h.
    pub snapshot_interval: Duration,
    /// Disk the mirrors may use, node-wide (evict.rs). Default 64 GiB.
    pub mirror_capacity: u64,
    /// How long a fleet build lease (lease.rs) holds without renewal.
    /// Default 2m.
    pub snapshot_lease: Duration,
    /// A mirror that fetches changed is repacked (upkeep.rs) at most this
    /// often. Default 10m.
    pub upkeep_interval: Duration,
}

impl RepoConfig {
    pub fn new(shards: usize) -> Self {
        Self {
            upstreams: Upstreams::default(),
            fetch_interval: Duration::from_secs(60),
            refs_ttl: Duration::from_secs(10),
            max_upload_packs: 2 * shards.max(1),
            upload_pack_queue: 64,
            max_upstream_jobs: 4 * shards.max(1),
            upstream_job_queue: 64,
            clone_timeout: Duration::from_secs(3600),
            upstream_timeout: crate::limits::UPSTREAM_TIMEOUT,
            snapshot_interval: Duration::from_secs(3600),
            snapshot_lease: crate::limits::SNAPSHOT_LEASE,
            mirror_capacity: crate::limits::MIRROR_CAPACITY_BYTES,
            upkeep_interval: Duration::from_secs(600),
        }
    }
}
