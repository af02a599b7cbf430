//! What an ask for a blob is: its id, size, priority and who waits for
//! the answer. Plain data, sent from any thread to the owner shard.

use super::error::HydrateError;
use crate::tree::oid_hex;

/// A git object id (SHA-1).
pub type Oid = [u8; 20];

/// Who is waiting: a read outranks a prefetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Prefetch,
    Read,
}

/// What the owner shard calls once a blob is local, or cannot be. It runs
/// on the shard thread, so it must only hand the result on (to a channel),
/// never do I/O.
pub type Done = Box<dyn FnOnce(Result<(), HydrateError>) + Send>;

/// One ask for a blob.
pub struct Want {
    pub oid: Oid,
    /// Its size as the tree index says; the node's frame must agree.
    pub size: u64,
    pub priority: Priority,
    /// None for a prefetch nobody waits on.
    pub done: Option<Done>,
}

/// What travels to the owner shard: one want, or a list of blobs to
/// fetch in the background (prehydration), below every read and
/// prefetch, each once and never retried.
pub(crate) enum Ask {
    One(Want),
    Background(Vec<(Oid, u64)>),
}

/// `oid` for messages.
pub(crate) fn hex(oid: &Oid) -> String {
    oid_hex(oid)
}
