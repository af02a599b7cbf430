//! trove-engine: the shard-per-core storage engine under every face of
//! trove. It knows nothing of HTTP serving or FUSE.
//!
//! What it owns:
//! - [`shard`]: one pinned glommio executor per core; each owns the objects
//!   whose name hashes to it and coordinates them (publish, evict, fetch).
//! - [`store`]: the local tier, sealed self-checking files read and written
//!   with io_uring O_DIRECT.
//! - [`remote`]: the S3-compatible tier, signed with rusty-s3 and spoken by
//!   a small hyper client on the shard's own executor.
//! - [`tiers`]: the object API the faces call (read local then remote,
//!   write to both).
//!
//! Rules it keeps: a warm hit is served by the shard holding the connection
//! with no cross-core hop; no reader ever sees bytes that are not whole,
//! synced and checksum-verified; memory per stream is bounded whatever the
//! object's size; nothing here blocks a shard thread.

pub mod config;
pub mod doorbell;
pub mod error;
pub mod hydrate;
pub mod key;
pub mod limits;
pub mod net;
pub mod remote;
pub mod repo;
pub mod secret;
pub mod shard;
pub mod stats;
pub mod store;
pub mod tiers;
pub mod tree;
pub mod units;

pub use config::NodeConfig;
pub use error::{EngineError, KeyError};
pub use key::{ObjectKey, ShardId};
pub use remote::{RemoteConfig, RemoteError};
pub use secret::Secret;
pub use shard::runtime::{start, NodeHandle};
pub use shard::{NodeShared, Shard};
pub use store::format::ObjectMeta;
pub use store::read::{DataChunk, SealedObject};
pub use tiers::Tier;

/// Milliseconds since the Unix epoch (wall clock: TTLs are absolute).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
