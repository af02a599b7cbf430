//! What a repo's owner answers about its snapshot, and a bundle request's
//! answer.

use crate::key::ObjectKey;
use crate::mirrors::ColdServe;
use crate::repo::build::Build;
use std::sync::Arc;

/// What the owner says about a repo's snapshot.
pub enum SnapshotAnswer {
    /// Stored in the tiers. `head` is the mirror's HEAD when known (a bundle
    /// from `commit` to it is on offer when they differ). `cold` is held
    /// while a cold node serves it.
    /// `private`: only for clients the upstream accepts (the mirrors service's access.rs).
    /// `file_len`: the stored file's length, as the pointer says.
    Stored {
        commit: String,
        object: ObjectKey,
        head: Option<String>,
        cold: Option<ColdServe>,
        private: bool,
        file_len: Option<u64>,
    },
    /// Being built: follow it.
    Building { build: Arc<Build>, head: Option<String>, private: bool },
}

/// What a bundle request gets.
pub enum BundleAnswer {
    /// The base is HEAD: nothing to send.
    UpToDate,
    /// Stored in the tiers under this name.
    Stored(ObjectKey),
}
