//! trove-engine: the shard-per-core storage engine under every face of
//! trove. It knows nothing of HTTP serving or FUSE.
//!
//! Layers, each importing only those below it:
//! - runtime and storage: [`shard`] (one pinned glommio executor per core,
//!   the cross-shard mesh, start and stop; it names no service),
//!   [`store`] (the local tier: sealed, self-checking files read and
//!   written with io_uring O_DIRECT), [`remote`] (the S3-compatible tier,
//!   signed with rusty-s3 and spoken by a small hyper client on the shard),
//!   and the stateless parts: [`repo`] (names, the git CLI, archives),
//!   [`tree`] (tree indexes and blobs read with gix), keys, limits, stats.
//! - services, each with its own state, interface and cross-shard
//!   messages: [`objects`] (the tiers together), [`mirrors`],
//!   [`snapshots`] (and bundles), [`packs`] (shared clone responses),
//!   [`indexes`] (tree indexes), [`hydrate`] (the mount's blobs).
//! - [`services`]: the node's composition of them on every shard.
//!
//! Rules it keeps: a warm hit is served by the shard holding the connection
//! with no cross-core hop; no reader ever sees bytes that are not whole,
//! synced and checksum-verified; memory per stream is bounded whatever the
//! object's size; nothing here blocks a shard thread.

pub mod clock;
pub mod config;
pub mod doorbell;
pub mod error;
pub mod hydrate;
pub mod indexes;
pub mod key;
pub mod limits;
pub mod mirrors;
pub mod node_error;
pub mod objects;
pub mod overlay;
pub mod packs;
pub mod remote;
pub mod repo;
pub mod secret;
pub mod services;
pub mod shard;
pub mod snapshots;
pub mod stats;
pub mod store;
pub mod tree;
pub mod units;

pub use clock::now_ms;
pub use config::NodeConfig;
pub use error::{EngineError, KeyError};
pub use key::{ObjectKey, ShardId};
pub use objects::Tier;
pub use remote::{RemoteConfig, RemoteError};
pub use secret::Secret;
pub use services::{start, Node, NodeServices};
pub use shard::{NodeShared, Shard};
pub use store::format::ObjectMeta;
pub use store::read::{DataChunk, SealedObject};
