//! Git repos, the parts with no state of their own: names, the git CLI and
//! what runs on a mirror's directory, the object names in the tiers, the
//! archive formats, and the repo errors and settings. The services that
//! keep state per repo (mirrors, snapshots, shared packs, tree indexes)
//! build on these; nothing here names a service or a shard.
//!
//! Split: `error.rs` and `config.rs` the repo errors and settings;
//! `off_shard.rs` blocking work on a thread of its own; `key.rs` names
//! and upstream URLs; `names.rs` the objects' names
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
pub mod config;
pub mod error;
pub mod git;
pub mod key;
pub mod names;
pub mod off_shard;
pub mod plumbing;
pub mod reaper;
pub mod unpack;
pub mod untrusted;
pub mod wants;

pub use config::{Need, RepoConfig};
pub use error::RepoError;
pub use key::{RepoKey, Upstreams};
pub use off_shard::off_shard;
