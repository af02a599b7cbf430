//! The pointer object `git-snapshot/<repo>`: the newest snapshot of a
//! repo and the newest HEAD the fleet has seen. Read as hostile input
//! (any node, or anyone with the bucket's keys, may have written it).

use crate::repo::names::parse_sha;
use serde::{Deserialize, Serialize};

/// The newest snapshot of a repo, as stored in the tiers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pointer {
    pub commit: String,
    pub built_ms: u64,
    /// The newest HEAD a node has seen, to advertise a bundle on the cold
    /// path, when no mirror is at hand to ask.
    pub head: String,
    /// The repo's mirror is private (the mirrors service's access.rs): a cold node checks
    /// the client's credentials before serving the snapshot.
    #[serde(default)]
    pub private: bool,
    /// Length of the stored snapshot's sealed file, so a cold node asks S3
    /// for its tail and its first range at once. Hostile input like the
    /// rest: only a hint, which S3's Content-Range must confirm.
    #[serde(default)]
    pub file_len: Option<u64>,
}

impl Pointer {
    /// A pointer read from the tiers is hostile input (any node, or anyone
    /// with the bucket's keys, may have written it): its ids go into
    /// object names and response headers, so both must be full object ids.
    /// None when they are not.
    pub(super) fn checked(self) -> Option<Pointer> {
        let commit = parse_sha(&self.commit)?;
        let head = parse_sha(&self.head)?;
        Some(Pointer { commit, head, ..self })
    }
}
