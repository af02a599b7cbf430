//! What the mirrors service tells the services built on it: a mirror's
//! changes, heard by a listener on the owner shard.

/// What happened to a repo's mirror, as services built on it hear it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorEvent {
    /// A clone, or a fetch that moved a ref: what was made from the old
    /// refs is stale.
    RefsChanged,
    /// Unused for an hour: what is kept for it may go.
    Idle,
    /// Evicted: the next request clones it again.
    Evicted,
    /// Its record was dropped (it never became Ready, and nothing waits).
    Dropped,
}

/// A service that keeps state per repo and must hear when the mirror
/// changes. Called on the owner shard, while the mirrors' records are
/// borrowed: a listener must not call back into the mirrors service.
pub trait MirrorListener {
    fn mirror_changed(&self, repo: u128, event: MirrorEvent);
}
