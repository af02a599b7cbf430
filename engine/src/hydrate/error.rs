//! Why a blob could not be hydrated: each error says what to do. The mount
//! maps them to errno; nothing here speaks FUSE.

use std::time::Duration;

/// Why a blob could not be hydrated. Each says what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HydrateError {
    #[error("the node at {node} is unreachable ({reason}); files already hydrated still read, and this one will once the node is back")]
    Unreachable { node: String, reason: String },
    #[error("the node did not answer within {0:?} (--fetch-timeout); try again, or raise it for a slow node")]
    Timeout(Duration),
    #[error(
        "the node sent {bytes} bytes of blobs slower than the {min_rate} bytes/s a fetch must keep (it was cut after \
         {after:?}); the node is failing or the link is too slow"
    )]
    TooSlow { bytes: u64, min_rate: u64, after: Duration },
    #[error("blob {oid} is {len} bytes, more than the whole blob cache ({capacity} bytes); raise --cache-capacity")]
    LargerThanCache { oid: String, len: u64, capacity: u64 },
    #[error("the node answered {status} to POST blobs: {message}")]
    Status { status: u16, message: String },
    #[error("the node does not have blob {0}; the mount's tree index names an object its mirror lacks")]
    Missing(String),
    #[error("the node refused blob {oid}: {why}")]
    Refused { oid: String, why: &'static str },
    #[error("the node sent bytes for blob {0} that do not match its id; they were dropped, never served")]
    Corrupt(String),
    #[error("the node's blob stream is invalid: {0}")]
    Protocol(String),
    #[error("the local blob store failed: {0}; check the --data-dir disk")]
    Store(String),
    #[error("{0} hydration requests are already waiting; try again")]
    QueueFull(usize),
    #[error("the mount is stopping")]
    Stopping,
    #[error(
        "the node stopped answering ({0}); files not yet hydrated fail at once until it answers again (it is probed \
         every second), and hydrated files still read"
    )]
    NodeDown(String),
}

impl HydrateError {
    pub(crate) fn store(op: &str, path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        HydrateError::Store(format!("{op} {}: {e}", path.display()))
    }
}
