//! The engine's typed errors. Each variant carries what a user needs to act:
//! the operation, the path or key, and the cause. The HTTP and CLI faces map
//! them to a status or exit code once, at their edge.

pub use crate::key::KeyError;
use std::path::PathBuf;

/// An engine operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid object name: {0}")]
    Key(#[from] KeyError),
    #[error("the local tier is out of space while {op} {path}: free space or lower --local-capacity")]
    DiskFull { op: &'static str, path: PathBuf },
    #[error("local tier I/O failed while {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("stored object {path} is corrupt ({what}); it was removed and will be refetched")]
    Corrupt { path: PathBuf, what: String },
    #[error("the object is {len} bytes, over the limit of {max} bytes")]
    TooLarge { len: u64, max: u64 },
    #[error("remote tier: {0}")]
    Remote(#[from] crate::remote::RemoteError),
    #[error("shard {shard} is shutting down or gone; retry on another node")]
    ShardGone { shard: u16 },
    #[error(
        "data dir {dir} is in use by a trove {holder_role} (pid {holder}); stop it, or give this {role} its own \
         --data-dir"
    )]
    DataDirInUse { dir: PathBuf, holder: String, holder_role: &'static str, role: &'static str },
}

impl EngineError {
    /// Wraps an I/O error with the operation and path, turning ENOSPC and
    /// EDQUOT into [`EngineError::DiskFull`] so callers can answer 507.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(code) if code == libc_enospc() || code == libc_edquot() => EngineError::DiskFull { op, path },
            _ => EngineError::Io { op, path, source },
        }
    }

    /// Same as [`EngineError::io`] for glommio's error type, keeping the
    /// OS error (glommio's own conversion to io::Error drops the errno).
    pub fn glommio(op: &'static str, path: impl Into<PathBuf>, err: glommio::GlommioError<()>) -> Self {
        let source = match err {
            glommio::GlommioError::IoError(e) | glommio::GlommioError::EnhancedIoError { source: e, .. } => e,
            other => std::io::Error::from(other),
        };
        Self::io(op, path, source)
    }
}

fn libc_enospc() -> i32 {
    rustix::io::Errno::NOSPC.raw_os_error()
}

fn libc_edquot() -> i32 {
    rustix::io::Errno::DQUOT.raw_os_error()
}
