//! The cross-shard protocol: what one shard may ask of an owner. Every
//! message is Send; replies travel on a oneshot channel.

use crate::key::ObjectKey;
use crate::remote::RemoteError;
use crate::repo::{Need, RepoError, RepoKey};
use crate::secret::Secret;
use crate::store::landing::Landing;
use crate::EngineError;
use futures_channel::oneshot;
use std::path::PathBuf;
use std::sync::Arc;

pub enum ShardRequest {
    /// Publish a synced tmp file as the object `hash`.
    Commit {
        hash: u128,
        tmp: PathBuf,
        disk_bytes: u64,
        expires_ms: u64,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    /// Remove the object; replies whether there was one.
    Remove { hash: u128, reply: oneshot::Sender<Result<bool, EngineError>> },
    /// Drop an object a reader found corrupt or expired, if its change
    /// counter still is `seen` (the file was not replaced since). Replies
    /// when done.
    Drop { hash: u128, seen: u64, reply: oneshot::Sender<()> },
    /// These objects were read (recency for eviction). No reply.
    Touch { hashes: Vec<u128> },
    /// Local miss: find the object in the remote tier, once for all askers.
    /// `len`: the stored file's length if the asker knows it (a snapshot
    /// pointer says it), so the first range can go with the tail.
    Fetch { key: ObjectKey, len: Option<u64>, reply: oneshot::Sender<FetchReply> },
    /// Make a repo's mirror meet `need` (clone, check, fetch), once for all
    /// askers. `auth` is the client's Authorization header, for the upstream.
    Repo { key: RepoKey, auth: Option<Secret>, need: Need, reply: oneshot::Sender<Result<(), RepoError>> },
    /// Say where a repo's snapshot is (stored, or building), starting a
    /// build when there is none. `stale`: a stored snapshot found missing.
    Snapshot {
        key: RepoKey,
        auth: Option<Secret>,
        stale: Option<String>,
        reply: oneshot::Sender<Result<crate::repo::snapshot::SnapshotAnswer, RepoError>>,
    },
    /// Make the tree index of a repo's commit, once for all askers.
    TreeIndex { key: RepoKey, auth: Option<Secret>, commit: String, reply: oneshot::Sender<Result<(), RepoError>> },
    /// Find (or, with `claim`, start) the shared response to clone request
    /// `id` of a repo.
    PackRun {
        key: RepoKey,
        id: u128,
        claim: bool,
        reply: oneshot::Sender<Result<Option<crate::repo::packcache::PackClaim>, RepoError>>,
    },
}

/// The owner's answer to a fetch.
#[derive(Clone)]
pub enum FetchReply {
    /// It is (now) sealed in the local tier: open it.
    Local,
    /// It is landing: follow it.
    Landing(Arc<Landing>),
    NotFound,
    Failed(RemoteError),
}
