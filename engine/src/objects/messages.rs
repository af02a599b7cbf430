//! What one shard's objects service may ask of an owner's. Every message
//! is Send; replies travel on a oneshot channel.

use crate::error::EngineError;
use crate::key::ObjectKey;
use crate::remote::RemoteError;
use crate::store::landing::Landing;
use futures_channel::oneshot;
use std::path::PathBuf;
use std::sync::Arc;

pub enum ObjectMsg {
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
