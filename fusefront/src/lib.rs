//! trove-fusefront: the FUSE face of the engine. A repo at a commit is
//! mounted as a read-only working tree that is ready as soon as its tree
//! index is in memory; file contents hydrate on first open through the
//! engine shard that owns the repo (`trove_engine::hydrate`).
//!
//! - [`mount`]: one mount's life (mount, prepare, serve, unmount).
//! - [`table`]: the inode table of the base tree, built from the index.
//! - [`gate`]: holds operations until the table is ready.
//! - [`fs`]: the fuser `Filesystem`: metadata from the table, opens through
//!   passthrough backing files, hydration off the FUSE threads.
//! - [`handles`]: open file handles (and the passthrough ids they keep alive).
//! - [`status`]: the record `trove mounts` reads.
//! - `engine`: the daemon's engine, the shard runtime composed with
//!   hydration alone (none of the node's services).
//!
//! It never imports the server: what it needs of a node is HTTP it speaks
//! itself (the tree index) or through the engine (blobs). It trusts no byte
//! the node sends: the index is decoded as hostile input and every blob is
//! checked against its id before the kernel sees it.

pub mod answer;
mod engine;
pub mod fs;
pub mod gate;
pub mod handles;
pub mod limits;
pub mod mount;
pub mod options;
mod ring;
pub mod status;
pub mod table;
mod tree_fetch;
