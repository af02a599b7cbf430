//! The snapshots service: working-tree snapshots, bundles, and the
//! fleet's one build per snapshot, as a repo's owner runs them.
//!
//! A working-tree snapshot is stored in the tiers as
//! `git-snapshot/<repo>@<commit>`: its name is derived from its content,
//! the commit fixing every byte of the tree. A small pointer object,
//! `git-snapshot/<repo>`, names the newest snapshot and the newest HEAD the
//! fleet has seen, so a node with an empty disk finds both in S3.
//!
//! The owner decides: serve the stored snapshot; start a build when there
//! is none (one build, followed by every request meanwhile); rebuild in the
//! background when HEAD moved and the snapshot is older than
//! `--snapshot-interval`, never when HEAD did not move. After each build a
//! mirror snapshot (the bare repo) goes to the remote tier, and a node
//! whose mirror is cold restores from it instead of cloning (the mirrors
//! service's `restore.rs`), once the cold serves it is answering have
//! finished.
//!
//! It owns each repo's snapshot state on its owner (pointer, build in
//! flight, the fleet's decision in flight) and asks the mirrors service
//! for the mirror and the objects service for storage. It hears of a
//! dropped repo record through `MirrorListener`. This service never
//! speaks HTTP.
//!
//! Split: `service.rs` the service's state and handler; `messages.rs`
//! and `answer.rs` what is asked and answered; `owner.rs` what the owner
//! answers; `build.rs` a build and the mirror snapshot after it;
//! `pointer.rs` the pointer and `pointer_object.rs` its reading and
//! writing; `lease.rs` the fleet's build lease; `bundle.rs` bundles.

pub mod answer;
mod build;
mod bundle;
mod lease;
pub mod messages;
mod owner;
pub mod pointer;
mod pointer_object;
pub mod service;

pub use answer::{BundleAnswer, SnapshotAnswer};
pub use messages::SnapshotMsg;
pub use pointer::Pointer;
pub use service::Snapshots;
