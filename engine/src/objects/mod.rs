//! The objects service: the object API every face and service calls, and
//! the state behind it on one shard.
//!
//! It owns the local tier (sealed files this shard owns, its index and
//! recency), the remote tier's client, the memory tier of small objects,
//! the remote fetches in flight (one per key for every asker on every
//! shard) and the recency notes bound for other owners. Nothing else
//! touches those.
//!
//! A read first opens the sealed file directly (any shard may): a warm hit
//! costs no cross-shard hop, only a recency note batched to the owner. A
//! miss goes to the owner, which runs one remote fetch for all askers. A
//! write streams into the caller's own `tmp/`, is uploaded to the remote
//! tier when there is one, and is then published by the owner.
//!
//! Split: `service.rs` is the service's state and its handler;
//! `read.rs` opens and streams; `write.rs` stores and deletes;
//! `owner.rs` is what an owner does when asked (publish, remove, fetch);
//! `messages.rs` what may be asked; `background.rs` the periodic recency
//! and expiry work. This service knows nothing of git, HTTP or FUSE.

mod background;
pub mod messages;
mod owner;
mod read;
pub mod service;
mod write;

pub use messages::{FetchReply, ObjectMsg};
pub use read::Tier;
pub use service::{Objects, ObjectsNode};
