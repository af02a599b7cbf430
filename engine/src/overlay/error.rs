//! Why an overlay operation failed. Plain data.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// The store could not be opened, read or written; `what` says which
    /// and `path` where. The mount's overlay is then unusable: the user's
    /// edits are in that file, so it is reported, never removed.
    #[error("the mount's overlay store {path}: {what}: {reason}; its edits are kept there, move it aside only if they may be lost")]
    Store { path: PathBuf, what: &'static str, reason: String },
    /// The overlay holds changes over another repo or commit.
    #[error("the overlay in {dir} holds changes over {repo} at {commit}; mount that commit (--commit {commit}) to use them, or mount on another directory (moving an overlay to a new commit is not supported yet)")]
    OtherBase { dir: PathBuf, repo: String, commit: String },
    /// A name that is already an entry.
    #[error("{0:?} exists already")]
    Exists(String),
    /// A name that is not an entry of the overlay.
    #[error("{0:?} is not in the overlay")]
    NotFound(String),
}
