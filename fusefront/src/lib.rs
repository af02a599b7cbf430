//! trove-fusefront: the FUSE face of the engine. A repo at a commit is
//! mounted as a read-only working tree that is ready as soon as its tree
//! index is in memory; file contents hydrate on first open through the
//! engine shard that owns the repo (`trove_engine::hydrate`).
//!
//! - [`daemon`]: the mount daemon, one per data dir, serving every mount
//!   on it (shared engine, blob cache and per-repo hydration), asked over
//!   its control socket.
//! - `host`: what a daemon's mounts share, handed to each (data dir, blob
//!   cache, engine, and `repos`: each repo's hydration, leased by mounts).
//! - [`mount`]: one mount's life in it (mount, prepare, serve, unmount).
//! - [`table`]: the inode table of the base tree, built from the index.
//! - [`gate`]: holds operations until the table is ready.
//! - [`fs`]: the filesystem's operations (metadata from the table, reads
//!   through the kernel, passthrough or the daemon, hydration off the
//!   serving threads), written against [`answer`]'s reply traits, and
//!   fuser's `Filesystem` (the `/dev/fuse` transport) forwarding to them.
//! - [`answer`]: one trait per kind of reply, for both transports.
//! - `ring`: FUSE over io_uring, a queue per CPU served on that CPU.
//! - [`handles`]: open file handles (and the passthrough ids they keep alive).
//! - [`status`]: the record `trove mounts` reads.
//! - `engine`: the daemon's engine, the shard runtime composed with
//!   hydration alone (none of the node's services), a queue per repo on
//!   the shard that owns it.
//!
//! It never imports the server: what it needs of a node is HTTP it speaks
//! itself (the tree index) or through the engine (blobs). It trusts no byte
//! the node sends: the index is decoded as hostile input and every blob is
//! checked against its id before the kernel sees it.

pub mod answer;
pub mod daemon;
mod engine;
pub mod fs;
pub mod gate;
pub mod handles;
mod host;
pub mod limits;
pub mod mount;
pub mod options;
mod prehydrate;
mod repos;
mod ring;
pub mod status;
pub mod table;
mod tree_fetch;
pub mod walk_order;
