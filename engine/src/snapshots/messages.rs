//! What one shard's snapshots service may ask of a repo's owner.

use super::answer::SnapshotAnswer;
use crate::repo::{RepoError, RepoKey};
use crate::secret::Secret;
use futures_channel::oneshot;

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
