//! What `trove restore` exits with: its own codes beyond the client's
//! (3 not found, 5 node unreachable, 1 node error), and the error that
//! carries one. A leaf: every other part of restore uses it.

use crate::client::ClientFailure;

/// Exit codes of `trove restore`, beyond the client's own (3 not found,
/// 5 node unreachable, 1 node error).
pub mod codes {
    /// The archive was refused: an entry would escape the target, or it is corrupt.
    pub const UNSAFE_ARCHIVE: i32 = 6;
    /// A git step (bundle, fetch, checkout) failed.
    pub const GIT_FAILED: i32 = 7;
    /// The target exists and is not empty, or it could not be written.
    pub const TARGET: i32 = 8;
}

pub(crate) fn fail(code: i32, message: impl Into<String>) -> anyhow::Error {
    ClientFailure { code, message: message.into() }.into()
}
