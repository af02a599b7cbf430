//! The owner's record of one repo: its place in the state machine, its
//! job's waiters, backoff, HEAD and refs as last seen, upkeep and
//! recency. Only the mirrors service of the owner shard holds these.

use crate::repo::{RepoError, RepoKey};
use futures_channel::oneshot;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub(super) struct RepoState {
    pub(super) key: RepoKey,
    pub(super) ready: bool,
    /// Set while a job runs: those waiting on it.
    pub(super) waiters: Option<Vec<oneshot::Sender<Result<(), RepoError>>>>,
    pub(super) checked_at: Option<Instant>,
    pub(super) used_at: Instant,
    pub(super) failures: u32,
    /// After a failed clone: not before then, and why.
    pub(super) retry: Option<(Instant, RepoError)>,
    /// HEAD's commit after the last clone or fetch (None: not read yet).
    pub(super) head: Option<String>,
    /// A hash of HEAD and every ref after the last clone or fetch (None:
    /// not read).
    pub(super) refs: Option<u64>,
    /// A fetch moved a ref since the mirror was last packed for serving.
    pub(super) changed_since_upkeep: bool,
    /// When the mirror was last packed for serving (clone, restore or
    /// upkeep); None for a mirror found at startup.
    pub(super) upkept_at: Option<Instant>,
    /// Held by work that needs the mirror's files to hold still: its
    /// repack (upkeep.rs) and the tar of its mirror snapshot.
    pub(super) housekeeping: Rc<glommio::sync::Semaphore>,
    /// Serves of this repo running with no mirror (a cold node serving
    /// what the tiers have); the mirror's restore waits for them.
    pub(super) cold_serves: Arc<AtomicUsize>,
}

impl RepoState {
    pub(super) fn new(key: RepoKey, ready: bool) -> Self {
        Self {
            key,
            ready,
            waiters: None,
            checked_at: None,
            used_at: Instant::now(),
            failures: 0,
            retry: None,
            head: None,
            refs: None,
            changed_since_upkeep: false,
            upkept_at: None,
            housekeeping: Rc::new(glommio::sync::Semaphore::new(1)),
            cold_serves: Arc::default(),
        }
    }

    /// Never Ready, no job running, and its retry time (backoff, or a
    /// remembered not-found) passed: a record that may go.
    pub(super) fn is_dead(&self) -> bool {
        !(self.ready || self.waiters.is_some() || self.retry.as_ref().is_some_and(|(at, _)| *at > Instant::now()))
    }

    /// Makes a Ready mirror with no job in flight Empty again, as its
    /// directory is about to be unpublished (evict.rs); false, and nothing
    /// changed, otherwise.
    pub(super) fn forget_mirror(&mut self) -> bool {
        if !self.ready || self.waiters.is_some() {
            return false;
        }
        self.ready = false;
        self.checked_at = None;
        self.head = None;
        self.refs = None;
        true
    }
}

/// Counts the cold serves of a repo in flight (any shard); the mirror
/// restore waits for them.
#[derive(Debug)]
pub struct ColdServe(Arc<AtomicUsize>);

impl ColdServe {
    pub(super) fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for ColdServe {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
