//! Git repos, the parts with no state of their own: names, the git CLI and
//! what runs on a mirror's directory, the object names in the tiers, the
//! archive formats, and the repo errors and settings. The services that
//! keep state per repo (mirrors, snapshots, shared packs, tree indexes)
//! build on these; nothing here names a service or a shard.
//!
//! Split: `key.rs` names and upstream URLs; `names.rs` the objects' names
//! in the tiers; `git.rs` runs the git CLI off the shard thread;
//! `plumbing.rs` the git commands run on a mirror (fetch, resolve, HEAD);
//! `reaper.rs` ends git processes that outlive their node; `untrusted.rs`
//! keeps a repo's config and hooks from ever running; `archive.rs` makes
//! tar.zst archives and `unpack.rs` unpacks them safely; `build.rs` a file
//! being written that readers follow; `admission.rs` bounds processes
//! node-wide; `wants.rs` reads an upload-pack request's want section.
//! This module never speaks HTTP.

pub mod admission;
pub mod archive;
pub mod build;
pub mod git;
pub mod key;
pub mod names;
pub mod plumbing;
pub mod reaper;
pub mod unpack;
pub mod untrusted;
pub mod wants;

pub use key::{RepoKey, Upstreams};

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

/// Why a repo operation failed. Clone, so one failed clone can answer every
/// request that waited on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RepoError {
    #[error("invalid repo name {0}; see the README for the rules")]
    BadName(String),
    #[error("invalid --upstream {0}")]
    BadUpstream(String),
    #[error("host {0:?} is not served by this node; add it with --upstream HOST=BASE_URL")]
    HostNotAllowed(String),
    #[error("the upstream has no repo {0} (or it is private and no valid Authorization was given)")]
    UpstreamNotFound(String),
    #[error("the upstream failed for {what}: {stderr}")]
    Git { what: String, stderr: String },
    #[error("could not run {0}: {1}; is git installed?")]
    Spawn(String, String),
    #[error("{0} ran over {1:?} and was killed")]
    Timeout(String, Duration),
    #[error("{0} made no progress for {1:?} and was killed: the upstream is not answering (see --upstream-timeout)")]
    Stalled(String, Duration),
    #[error("the last clone of {key} failed ({cause}); retrying in {retry_in:?}")]
    Backoff { key: String, cause: String, retry_in: Duration },
    #[error("local mirror I/O failed: {0}")]
    Io(String),
    #[error(
        "{0} is private: send credentials the upstream accepts (a git credential helper, or an Authorization header)"
    )]
    Unauthorized(String),
    #[error("shard {0} is shutting down or gone; retry")]
    ShardGone(u16),
    #[error("every upstream job slot and the queue are taken (--max-upstream-jobs); retry shortly")]
    Busy,
    #[error("the repo {0} has no commits yet: there is nothing to snapshot")]
    NoCommits(String),
    #[error("commit {0} is not in the mirror (nor upstream after a fetch)")]
    UnknownCommit(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(
        "the upstream of {key} answered {what} with a redirect (HTTP {status}); the node never follows an upstream's \
         redirect, since your credentials and the mirror would go with it: point --upstream at the URL it redirects to"
    )]
    Redirected { key: String, what: String, status: u16 },
}

/// Runs blocking work (archiving, unpacking) on a thread of its own and
/// awaits its result without blocking the shard.
pub(crate) async fn off_shard<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RepoError> {
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| RepoError::Io(format!("starting {name}: {e}")))?;
    rx.await.map_err(|_| RepoError::Io(format!("the {name} thread died")))
}
