//! What a trove node's error answer says, for whoever speaks to a node:
//! the mount (tree index, blobs) and the CLI's object commands. The node
//! answers `{"code": ..., "error": ...}` (trove-server's `error.rs`); this
//! module reads it as hostile input and never does I/O.

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
