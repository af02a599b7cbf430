//! The shard runtime: what running on a core means, and nothing else.
//!
//! One pinned glommio executor per shard, the cross-shard mesh with typed
//! calls over it, start and the two-phase stop, and the state every shard
//! of a node can see ([`NodeShared`]). What a shard *does* (objects,
//! mirrors, snapshots, shared packs, tree indexes, hydration) lives in
//! services above this module, each built per shard from a [`Shard`] and a
//! [`Port`] for its own messages; the node's composition of them
//! (`crate::services`) tells the runtime how to build and reach them.
//!
//! This module imports no service and never grows one: a subsystem's state
//! is the subsystem's, never a field here, and nothing adds methods to
//! [`Shard`] from outside this folder.
//!
//! Split: `context.rs` is one shard as its services see it; `node.rs` the
//! node-wide shared state; `mesh.rs` the typed cross-shard calls;
//! `runtime.rs` starts and stops the executors.

pub mod context;
pub mod mesh;
pub mod node;
pub mod runtime;

pub use context::Shard;
pub use mesh::{Mesh, Port};
pub use node::NodeShared;
