//! trove-server: the HTTP face of the engine.
//!
//! It owns HTTP/1.1 serving on every shard (hyper over glommio sockets),
//! routing, the object API, the status pages, and the mapping of engine
//! errors to statuses and JSON. It must never touch files or S3 itself:
//! each handler takes the engine services it uses (an object GET the
//! objects service; a clone mirrors and shared packs; a snapshot
//! snapshots, mirrors and objects), handed to every shard's face by
//! `trove_engine::start` as `NodeServices`.
//!
//! Files: `conn.rs` accept loop and connections; `deadline.rs` what slow
//! clients may hold (head and body deadlines, the connection cap);
//! `budget.rs` the node-wide budget of buffered request bodies; `routes.rs`
//! dispatch;
//! `object.rs` the object API; `status.rs` stats, metrics, health;
//! `git.rs` git smart HTTP from the mirrors; `pack_request.rs` reads an
//! upload-pack request as far as its wants; `passthrough.rs` pushes and
//! Git LFS passed through to the upstream; `snapshot.rs` snapshots,
//! bundles and ensure-refs; `tree.rs` tree indexes and blobs for mounts;
//! `body.rs` the response body; `range.rs`,
//! `precondition.rs`, `ttl.rs` header parsing; `query.rs` query strings;
//! `upload_pack.rs` what every upload-pack run shares;
//! `error.rs` API errors; `limits.rs` the face's limits; `auth.rs` who may
//! use the object API.

#![forbid(unsafe_code)]

pub mod auth;
pub mod body;
pub mod budget;
pub mod conn;
pub mod deadline;
pub mod error;
pub mod git;
pub mod lfs;
pub mod limits;
pub mod object;
pub mod pack_request;
pub mod passthrough;
pub mod precondition;
pub mod query;
pub mod range;
pub mod routes;
pub mod shared_pack;
pub mod snapshot;
pub mod status;
pub mod tree;
pub mod ttl;
pub mod upload_pack;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use trove_engine::NodeServices;

/// Configuration of the HTTP face.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address every shard listens on (SO_REUSEPORT). Default 127.0.0.1:8080.
    pub listen: SocketAddr,
    /// Close a connection that sends nothing for this long. Default 60 s.
    pub idle_timeout: Duration,
    /// Who may write (and with `--api-read-auth`, read) `/api/*`. Default:
    /// writes from loopback only, reads open.
    pub api: auth::ApiPolicy,
    /// A request head must arrive whole within this. Default 10 s.
    pub head_timeout: Duration,
    /// Most client connections node-wide; None: the open-file limit less
    /// `limits::FD_RESERVE`.
    pub max_connections: Option<usize>,
    /// Request-body bytes all shards may hold in memory at once (one budget,
    /// shared: every shard's copy of this config points at it).
    pub body_budget: std::sync::Arc<budget::BodyBudget>,
    /// Blob bytes all `POST .../blobs` responses may hold in memory at once
    /// (one budget, shared by every shard). Default 256 MiB.
    pub blob_memory: std::sync::Arc<trove_engine::tree::blob_memory::BlobMemory>,
    /// Blobs served lately, kept for the next mount that asks (one cache,
    /// shared by every shard). Default 256 MiB.
    pub blob_cache: std::sync::Arc<trove_engine::tree::blob_cache::BlobCache>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            idle_timeout: limits::IDLE_TIMEOUT,
            api: auth::ApiPolicy::default(),
            head_timeout: limits::HEAD_TIMEOUT,
            max_connections: None,
            body_budget: budget::BodyBudget::new(limits::BUFFERED_BODY_BUDGET_BYTES),
            blob_memory: trove_engine::tree::blob_memory::BlobMemory::new(trove_engine::limits::BLOB_MEMORY_BYTES),
            blob_cache: trove_engine::tree::blob_cache::BlobCache::new(trove_engine::limits::BLOB_CACHE_BYTES),
        }
    }
}

/// The per-shard entry point handed to `trove_engine::start`: the HTTP
/// face over the shard's services.
pub async fn serve(services: Rc<NodeServices>, cfg: ServerConfig) {
    conn::serve(services, Rc::new(cfg)).await
}
