//! One node per data dir.
//!
//! A node owns its data dir outright: at start it wipes `tmp/`, rebuilds
//! each shard's index from the files, evicts to its capacity, and its
//! memory tier trusts that only its own shards change object files
//! (versions.rs). A second node on the same dir would delete the first's
//! uploads in flight and serve what the first replaced. So the node holds an
//! exclusive `flock` on `DATA_DIR/trove.lock` for its whole life; the kernel
//! drops it when the process exits, however it exits, so a crash never
//! leaves a stale lock. The file holds the holder's pid and role (a node
//! or a mount), for the message.
//!
//! This module must never take the lock by waiting: a second node fails at
//! once with a message that names the holder.

use crate::error::EngineError;
use rustix::fs::{FlockOperation, Mode, OFlags};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

/// The held lock; dropping it releases it.
pub struct DataDirLock {
    _fd: OwnedFd,
}

/// Takes the data dir's lock for a process that is a `role` ("node",
/// "mount"), or says which process holds it.
pub fn lock_data_dir(dir: &Path, role: &'static str) -> Result<DataDirLock, EngineError> {
    let path = dir.join("trove.lock");
    let io = |op, e: rustix::io::Errno| EngineError::io(op, &path, e.into());
    let fd = rustix::fs::open(&path, OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC, Mode::from_raw_mode(0o644))
        .map_err(|e| io("opening the lock file", e))?;
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let held = std::fs::read_to_string(&path).unwrap_or_default();
            let mut words = held.split_whitespace();
            let holder = words.next().unwrap_or("unknown").chars().take(20).collect();
            let holder_role = match words.next() {
                Some("mount") => "mount",
                _ => "node",
            };
            return Err(EngineError::DataDirInUse { dir: dir.to_owned(), holder, holder_role, role });
        }
        Err(e) => return Err(io("locking", e)),
    }
    rustix::fs::ftruncate(&fd, 0).map_err(|e| io("writing the lock file", e))?;
    let mut file = std::fs::File::from(fd);
    writeln!(file, "{} {role}", std::process::id()).map_err(|e| EngineError::io("writing the lock file", &path, e))?;
    Ok(DataDirLock { _fd: file.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = lock_data_dir(dir.path(), "mount").expect("first lock");
        // flock locks belong to the open file: a second open in the same
        // process conflicts just as another process's would.
        match lock_data_dir(dir.path(), "node") {
            Err(e @ EngineError::DataDirInUse { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&format!("a trove mount (pid {})", std::process::id())), "{msg}");
                assert!(msg.contains("give this node its own --data-dir"), "{msg}");
            }
            other => panic!("expected DataDirInUse, got {:?}", other.map(|_| ())),
        }
        drop(first);
        lock_data_dir(dir.path(), "node").expect("free again once dropped");
    }
}
