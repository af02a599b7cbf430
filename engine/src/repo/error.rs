//! Why a repo operation failed. Clone, so one failed clone can answer
//! every request that waited on it; each variant says what to do.

use std::time::Duration;

/// Why a repo operation failed. Clone, so one failed clone can answer every
/// request that waited on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RepoError {
    #[error("invalid repo name {0}; see the README for the rules")]
    BadName(String),
    #[error("invalid --upstream {0}")]
    BadUpstream(String),
    #[error("host {0:?} is not served by this node; add it with --upstream HOST=BASE_URL")]
    HostNotAllowed(String),
    #[error("the upstream has no repo {0} (or it is private and no valid Authorization was given)")]
    UpstreamNotFound(String),
    #[error("the upstream failed for {what}: {stderr}")]
    Git { what: String, stderr: String },
    #[error("could not run {0}: {1}; is git installed?")]
    Spawn(String, String),
    #[error("{0} ran over {1:?} and was killed")]
    Timeout(String, Duration),
    #[error("{0} made no progress for {1:?} and was killed: the upstream is not answering (see --upstream-timeout)")]
    Stalled(String, Duration),
    #[error("the last clone of {key} failed ({cause}); retrying in {retry_in:?}")]
    Backoff { key: String, cause: String, retry_in: Duration },
    #[error("local mirror I/O failed: {0}")]
    Io(String),
    #[error(
        "{0} is private: send credentials the upstream accepts (a git credential helper, or an Authorization header)"
    )]
    Unauthorized(String),
    #[error("shard {0} is shutting down or gone; retry")]
    ShardGone(u16),
    #[error("every upstream job slot and the queue are taken (--max-upstream-jobs); retry shortly")]
    Busy,
    #[error("the repo {0} has no commits yet: there is nothing to snapshot")]
    NoCommits(String),
    #[error("commit {0} is not in the mirror (nor upstream after a fetch)")]
    UnknownCommit(String),
    #[error("{id} names a {kind}, not a commit; give a commit id (`git rev-parse REF^{{commit}}` prints one)")]
    NotACommit { id: String, kind: &'static str },
    #[error("{0}")]
    Unsupported(String),
    #[error(
        "the upstream of {key} answered {what} with a redirect (HTTP {status}); the node never follows an upstream's \
         redirect, since your credentials and the mirror would go with it: point --upstream at the URL it redirects to"
    )]
    Redirected { key: String, what: String, status: u16 },
}
