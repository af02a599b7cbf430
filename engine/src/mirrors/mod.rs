//! The mirrors service: bare mirrors of upstream repos, each owned by one
//! shard (`RepoKey::owner`).
//!
//! It owns the owner's record of every repo (`state.rs`): the state
//! machine Empty -> Cloning | Restoring -> Ready, with every clone and
//! fetch singleflighted and a failed clone sent back to Empty with
//! backoff; the access checks of private repos (`access.rs`); the names a
//! fetch could not bring (`misses.rs`); eviction under
//! `--mirror-capacity` (`evict.rs`); repacks for serving (`upkeep.rs`);
//! and the node-wide admission of upstream jobs and upload-packs.
//!
//! Any shard serves a Ready mirror itself (its directory is published by
//! rename, so it exists only whole) and asks the owner only for what
//! changes state: a clone, a freshness check, a fetch of a missing commit
//! (`MirrorMsg`). Services built on mirrors (snapshots, shared packs)
//! hear of a mirror's changes through `MirrorListener`, never by
//! reaching into a record. This service never speaks HTTP.
//!
//! Split: `service.rs` the service's state, handler and what other
//! services may ask of it; `messages.rs` and `events.rs` what travels to
//! and from it; `state.rs` a repo's record; `jobs.rs` the state machine's
//! steps; `discover.rs` the mirrors found at startup; `resolve.rs` names
//! resolved, fetching once; `make.rs` a new mirror,
//! cloned; `restore.rs` one restored from its snapshot in the tiers;
//! `background.rs` the periodic fetches.

mod access;
mod background;
mod discover;
pub mod events;
mod evict;
mod jobs;
mod make;
pub mod messages;
mod misses;
mod resolve;
mod restore;
pub mod service;
mod state;
mod upkeep;

pub use access::is_private;
pub use events::{MirrorEvent, MirrorListener};
pub use messages::MirrorMsg;
pub use resolve::Resolved;
pub use service::{Mirrors, MirrorsNode};
pub use state::ColdServe;
