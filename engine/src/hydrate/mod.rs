//! Hydration: the blobs of a lazily mounted tree, fetched from a node on
//! first use and kept in the local tier's blob store.
//!
//! The mount (trove-fusefront) holds a [`Hydrator`], which is `Send` and
//! answers from any thread:
//! - a blob already local is opened right there ([`Hydrator::open_local`]):
//!   no message, no cross-core hop;
//! - a blob that is not is a [`Want`] sent to the owner shard of the repo,
//!   whose [`queue`] dedupes (one fetch for any number of askers),
//!   prioritises (a read beats a prefetch, and a queued prefetch that is
//!   read is upgraded in place), and batches (many ids per
//!   `POST .../blobs`). [`fetch`] lands each blob of a batch as it streams
//!   in, checked against its git id: small ones appended to a slab of the
//!   [`blobstore`] a frame's worth at a time, larger ones written with
//!   O_DIRECT into a file of their own, then published. [`frames`] parses the node's stream,
//!   which is hostile input like every byte from the network.
//!
//! A file checkout converts is made from its hydrated blob by
//! [`convert`] and kept under its own id.
//!
//! What this module must never do: serve a byte that did not match its
//! oid, hold a whole blob in memory (a converted file's, bounded, one at a
//! time, is the one exception), block the shard thread on a file
//! read, or speak FUSE (the mount maps [`HydrateError`] to errno).

mod batches;
pub mod blobstore;
pub mod config;
pub mod convert;
pub mod error;
pub mod fetch;
pub mod frames;
pub mod health;
pub mod hydrator;
mod pending;
pub mod queue;
pub mod want;

pub use config::HydrateConfig;
pub use convert::Converter;
pub use error::HydrateError;
pub use health::NodeHealth;
pub use hydrator::{Hydrator, OwnerEnd};
pub use want::{Done, Oid, Priority, Want};
