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

/// Most characters of a node's error answer shown to a user.
const NODE_MESSAGE_MAX_CHARS: usize = 300;

/// What a node's error answer says, as a sentence: the `error` field of
/// its JSON (`{"code": ..., "error": ...}`), else the text itself. The body
/// is hostile input: at most NODE_MESSAGE_MAX_CHARS characters, control
/// characters dropped.
pub fn node_message(body: &[u8]) -> String {
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let said = json.as_ref().and_then(|v| v.get("error").or_else(|| v.get("message"))).and_then(|m| m.as_str());
    let text = match said {
        Some(m) => m.to_owned(),
        None => String::from_utf8_lossy(body).into_owned(),
    };
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(NODE_MESSAGE_MAX_CHARS).collect();
    if text.chars().filter(|c| !c.is_control()).count() > NODE_MESSAGE_MAX_CHARS {
        out.push_str("...");
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::node_message;

    #[test]
    fn a_nodes_error_is_a_sentence_not_json() {
        let body = br#"{"code":"upstream_failed","error":"the upstream failed for git clone --mirror: refused"}"#;
        assert_eq!(node_message(body), "the upstream failed for git clone --mirror: refused");
        assert_eq!(node_message(b"plain words"), "plain words");
        assert_eq!(node_message(b"a bell\x07 and a\nnewline"), "a bell and anewline", "control characters dropped");
        let long = vec![b'a'; 10_000];
        assert_eq!(node_message(&long).len(), 303, "bounded, and says it was cut");
    }
}
