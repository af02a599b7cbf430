//! What a mount is asked for (`MountOptions`, from `trove mount`'s flags)
//! and why one fails (`MountError`, each with its exit code). Plain data:
//! nothing here mounts, fetches or prints. Both travel over the mount
//! daemon's control socket (`crate::daemon::control`), so they serialize;
//! the node's credentials only there, never into a record or a log.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;
use trove_engine::Secret;

/// The node's credentials as the control socket carries them to the
/// daemon (a socket only its own user reaches): the one place they are
/// serialized.
mod auth_on_the_socket {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use trove_engine::Secret;

    pub fn serialize<S: Serializer>(auth: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
        auth.as_ref().map(Secret::expose).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(Secret::new))
    }
}

/// Which commit to mount.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Revision {
    Ref(String),
    Commit(String),
}

/// Everything `trove mount` resolved from its flags.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountOptions {
    /// `host/org/repo`.
    pub repo: String,
    pub mountpoint: PathBuf,
    /// The node's base URL.
    pub node: String,
    pub revision: Revision,
    pub data_dir: PathBuf,
    pub cache_capacity_bytes: u64,
    pub prefetch: bool,
    pub fetch_timeout: Duration,
    pub ready_timeout: Duration,
    #[serde(with = "auth_on_the_socket")]
    pub auth: Option<Secret>,
    pub read_path: ReadPath,
    pub transport: Transport,
    /// Shards of the mount's engine (`--shards`), at least 1.
    pub shards: usize,
    /// Bytes of small files fetched in the background once ready
    /// (`--prehydrate`); 0 is off.
    pub prehydrate_bytes: u64,
    /// Let other users than the one who mounted reach the mount
    /// (`--allow-other`); the kernel then checks each access against the
    /// tree's modes and owners.
    pub allow_other: bool,
}

/// How the kernel reads a mounted file (`trove mount --read-path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadPath {
    /// The kernel opens files itself (FUSE open answered ENOSYS): an open
    /// costs no round trip and each file's page cache lives across opens;
    /// reads of pages not cached come to the daemon. The default: warm
    /// opens cost what they cost on ext4.
    Kernel,
    /// Each open goes to the daemon, which hands the kernel the blob's
    /// file as a passthrough backing file: reads never reach the daemon,
    /// but every open and close does.
    Passthrough,
    /// Each open and every read goes to the daemon.
    Daemon,
}

impl ReadPath {
    pub fn name(self) -> &'static str {
        match self {
            ReadPath::Kernel => "kernel",
            ReadPath::Passthrough => "passthrough",
            ReadPath::Daemon => "daemon",
        }
    }
}

/// How requests travel between the kernel and the daemon (`trove mount
/// --transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transport {
    /// io_uring where the kernel has it on, else `/dev/fuse`, quietly.
    Auto,
    /// Threads reading and writing `/dev/fuse`: every kernel has it.
    DevFuse,
    /// FUSE over io_uring: a queue per CPU, each served by a thread pinned
    /// to that CPU (Linux 6.14+, `enable_uring` on). Falls back to
    /// `/dev/fuse` where the kernel refuses, and for passthrough reads.
    IoUring,
}

impl Transport {
    /// As `trove mounts` shows it (`Auto` is never shown: a mount shows
    /// the one it got).
    pub fn name(self) -> &'static str {
        match self {
            Transport::Auto => "auto",
            Transport::DevFuse => "/dev/fuse",
            Transport::IoUring => "io_uring",
        }
    }
}

/// Why a mount failed; each has its exit code (`trove mount --help`).
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("the node at {node} is unreachable: {reason}; start it (trove serve) or pass --node")]
    Unreachable { node: String, reason: String },
    #[error("{0}")]
    NotFound(String),
    #[error("the node answered {status}: {message}")]
    Node { status: u16, message: String },
    #[error("the node's tree index was refused: {0}")]
    BadIndex(String),
    #[error("{0}")]
    Mountpoint(String),
    #[error("mounting failed: {0}; trove mount needs /dev/fuse and root (or CAP_SYS_ADMIN)")]
    Fuse(String),
    #[error("the mount's data dir: {0}")]
    DataDir(String),
    #[error("{0}")]
    Overlay(String),
    #[error("stopped (SIGTERM or SIGINT) before the tree was ready")]
    Interrupted,
    #[error("the mount daemon on this data dir is stopping (its last mount went); run the mount again")]
    Stopping,
    #[error("the mount daemon: {0}")]
    Daemon(String),
    #[error(
        "a mount daemon (pid {0}) already serves this data dir; run trove mount without --foreground to add \
         this mount to it"
    )]
    DaemonRunning(String),
    /// A failure the daemon reported over its control socket, as it said it.
    #[error("{message}")]
    Reported { code: i32, message: String },
}

impl MountError {
    /// 3 no such repo/ref/commit, 5 node unreachable, 6 index refused,
    /// 8 mountpoint or data dir unusable, 9 FUSE refused, 1 the node or
    /// the mount daemon failed, 130 stopped by a signal while preparing.
    pub fn exit_code(&self) -> i32 {
        match self {
            MountError::NotFound(_) => 3,
            MountError::Unreachable { .. } => 5,
            MountError::BadIndex(_) => 6,
            MountError::Mountpoint(_)
            | MountError::DataDir(_)
            | MountError::Overlay(_)
            | MountError::DaemonRunning(_) => 8,
            MountError::Fuse(_) => 9,
            MountError::Node { .. } | MountError::Stopping | MountError::Daemon(_) => 1,
            MountError::Interrupted => 130,
            MountError::Reported { code, .. } => *code,
        }
    }
}
