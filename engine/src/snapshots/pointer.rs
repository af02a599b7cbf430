//! The pointer object `git-snapshot/<repo>`: the newest snapshot of a
//! repo and the newest HEAD the fleet has seen. Read as hostile input
//! (any node, or anyone with the bucket's keys, may have written it).

use super::Snapshots;
use crate::repo::names::{parse_sha, pointer_object};
use crate::repo::RepoKey;
use serde::{Deserialize, Serialize};
use std::rc::Rc;

/// Largest pointer object read.
const POINTER_MAX_BYTES: u64 = 64 * 1024;

/// The newest snapshot of a repo, as stored in the tiers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pointer {
    pub commit: String,
    pub built_ms: u64,
    /// The newest HEAD a node has seen, to advertise a bundle on the cold
    /// path, when no mirror is at hand to ask.
    pub head: String,
    /// The repo's mirror is private (repo/access.rs): a cold node checks
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

impl Snapshots {
    pub(super) async fn read_pointer(self: &Rc<Self>, key: &RepoKey) -> Option<Pointer> {
        match self.objects.read_bytes(&pointer_object(key), POINTER_MAX_BYTES).await {
            Ok(Some(b)) => match serde_json::from_slice::<Pointer>(&b).map(Pointer::checked) {
                Ok(Some(p)) => Some(p),
                Ok(None) => {
                    tracing::warn!(repo = %key, "the snapshot pointer names no valid commit; ignoring it (building from the mirror)");
                    None
                }
                Err(e) => {
                    tracing::warn!(repo = %key, error = %e, "unreadable snapshot pointer; ignoring it");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(repo = %key, error = %e, "could not read the snapshot pointer; building from the mirror");
                None
            }
        }
    }

    pub(super) async fn write_pointer(self: &Rc<Self>, key: &RepoKey, p: &Pointer) {
        let bytes = serde_json::to_vec(p).expect("a pointer serializes");
        if let Err(e) = self.objects.put_bytes(&pointer_object(key), &bytes).await {
            tracing::warn!(repo = %key, error = %e, "could not store the snapshot pointer");
        }
    }
}
