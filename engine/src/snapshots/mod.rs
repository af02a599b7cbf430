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
//! dropped repo record through [`MirrorListener`]. This service never
//! speaks HTTP.
//!
//! Split: `owner.rs` what the owner answers; `build.rs` a build and the
//! mirror snapshot after it; `pointer.rs` the pointer object; `lease.rs`
//! the fleet's build lease; `bundle.rs` bundles.

mod build;
mod bundle;
mod lease;
mod owner;
mod pointer;

pub use pointer::Pointer;

use crate::key::ObjectKey;
use crate::mirrors::{ColdServe, MirrorEvent, MirrorListener, Mirrors};
use crate::objects::Objects;
use crate::repo::build::Build;
use crate::repo::{RepoError, RepoKey};
use crate::secret::Secret;
use crate::shard::{Port, Shard};
use futures_channel::oneshot;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// What one shard may ask of a repo's owner about snapshots.
pub enum SnapshotMsg {
    /// Say where a repo's snapshot is (stored, or building), starting a
    /// build when there is none. `stale`: a stored snapshot found missing.
    Snapshot {
        key: RepoKey,
        auth: Option<Secret>,
        stale: Option<String>,
        reply: oneshot::Sender<Result<SnapshotAnswer, RepoError>>,
    },
}

/// What the owner says about a repo's snapshot.
pub enum SnapshotAnswer {
    /// Stored in the tiers. `head` is the mirror's HEAD when known (a bundle
    /// from `commit` to it is on offer when they differ). `cold` is held
    /// while a cold node serves it.
    /// `private`: only for clients the upstream accepts (repo/access.rs).
    /// `file_len`: the stored file's length, as the pointer says.
    Stored {
        commit: String,
        object: ObjectKey,
        head: Option<String>,
        cold: Option<ColdServe>,
        private: bool,
        file_len: Option<u64>,
    },
    /// Being built: follow it.
    Building { build: Arc<Build>, head: Option<String>, private: bool },
}

/// What a bundle request gets.
pub enum BundleAnswer {
    /// The base is HEAD: nothing to send.
    UpToDate,
    /// Stored in the tiers under this name.
    Stored(ObjectKey),
}

/// What the owner keeps of a repo's snapshots.
#[derive(Debug, Default)]
struct SnapshotState {
    pointer: Option<Pointer>,
    pointer_loaded: bool,
    building: Option<Arc<Build>>,
    /// Requests waiting while the fleet decides who builds (lease.rs).
    deciding: Option<Vec<oneshot::Sender<()>>>,
}

impl SnapshotState {
    /// Nothing in flight: the state may be dropped with its repo's record.
    fn is_idle(&self) -> bool {
        self.building.is_none() && self.deciding.is_none()
    }
}

/// One shard's snapshots service.
pub struct Snapshots {
    shard: Rc<Shard>,
    port: Port<SnapshotMsg>,
    objects: Rc<Objects>,
    mirrors: Rc<Mirrors>,
    /// The snapshot state of the repos this shard owns, by `RepoKey::hash`.
    states: RefCell<HashMap<u128, SnapshotState>>,
}

impl Snapshots {
    pub fn new(shard: Rc<Shard>, objects: Rc<Objects>, mirrors: Rc<Mirrors>, port: Port<SnapshotMsg>) -> Rc<Self> {
        let snapshots = Rc::new(Self { shard, port, objects, mirrors: mirrors.clone(), states: Default::default() });
        mirrors.listen(snapshots.clone());
        snapshots
    }

    /// The shard this service runs on.
    pub fn shard(&self) -> &Rc<Shard> {
        &self.shard
    }

    /// Serves one request from another shard.
    pub async fn handle(self: Rc<Self>, msg: SnapshotMsg) {
        match msg {
            SnapshotMsg::Snapshot { key, auth, stale, reply } => {
                let _ = reply.send(self.owner_snapshot(key, auth, stale).await);
            }
        }
    }

    /// Runs `f` on `key`'s snapshot state (owner only), making it if needed.
    fn with_state<T>(&self, key: &RepoKey, f: impl FnOnce(&mut SnapshotState) -> T) -> T {
        // The mirrors' record bounds this one: it is dropped with it.
        self.mirrors.note(key);
        f(self.states.borrow_mut().entry(key.hash()).or_default())
    }
}

impl MirrorListener for Snapshots {
    fn mirror_changed(&self, repo: u128, event: MirrorEvent) {
        if event == MirrorEvent::Dropped {
            let mut states = self.states.borrow_mut();
            if states.get(&repo).is_some_and(SnapshotState::is_idle) {
                states.remove(&repo);
            }
        }
    }
}
