//! The snapshots service's state on one shard and its handler (see the
//! `snapshots` module doc).

use super::messages::SnapshotMsg;
use super::pointer::Pointer;
use crate::mirrors::{MirrorEvent, MirrorListener, Mirrors};
use crate::objects::Objects;
use crate::repo::build::Build;
use crate::repo::RepoKey;
use crate::shard::{Port, Shard};
use futures_channel::oneshot;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// What the owner keeps of a repo's snapshots.
#[derive(Debug, Default)]
pub(super) struct SnapshotState {
    pub(super) pointer: Option<Pointer>,
    pub(super) pointer_loaded: bool,
    pub(super) building: Option<Arc<Build>>,
    /// Requests waiting while the fleet decides who builds (lease.rs).
    pub(super) deciding: Option<Vec<oneshot::Sender<()>>>,
}

impl SnapshotState {
    /// Nothing in flight: the state may be dropped with its repo's record.
    fn is_idle(&self) -> bool {
        self.building.is_none() && self.deciding.is_none()
    }
}

/// One shard's snapshots service.
pub struct Snapshots {
    pub(super) shard: Rc<Shard>,
    pub(super) port: Port<SnapshotMsg>,
    pub(super) objects: Rc<Objects>,
    pub(super) mirrors: Rc<Mirrors>,
    /// The snapshot state of the repos this shard owns, by `RepoKey::hash`.
    pub(super) states: RefCell<HashMap<u128, SnapshotState>>,
}

impl Snapshots {
    pub fn new(shard: Rc<Shard>, objects: Rc<Objects>, mirrors: Rc<Mirrors>, port: Port<SnapshotMsg>) -> Rc<Self> {
        let snapshots = Rc::new(Self { shard, port, objects, mirrors: mirrors.clone(), states: Default::default() });
        mirrors.listen(snapshots.clone());
        snapshots
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
    pub(super) fn with_state<T>(&self, key: &RepoKey, f: impl FnOnce(&mut SnapshotState) -> T) -> T {
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
