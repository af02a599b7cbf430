//! What one shard's mirrors service may ask of a repo's owner.

use crate::repo::{Need, RepoError, RepoKey};
use crate::secret::Secret;
use futures_channel::oneshot;

/// What one shard may ask of a repo's owner.
pub enum MirrorMsg {
    /// Make a repo's mirror meet `need` (clone, check, fetch), once for all
    /// askers. `auth` is the client's Authorization header, for the upstream.
    Ensure { key: RepoKey, auth: Option<Secret>, need: Need, reply: oneshot::Sender<Result<(), RepoError>> },
}
