//! The pointer object read from and written to the tiers, through the
//! objects service. What is read is checked (`Pointer::checked`) before
//! anything uses it.

use super::pointer::Pointer;
use super::service::Snapshots;
use crate::repo::names::pointer_object;
use crate::repo::RepoKey;
use std::rc::Rc;

/// Largest pointer object read.
const POINTER_MAX_BYTES: u64 = 64 * 1024;

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
