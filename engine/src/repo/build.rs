//! A file being written by one producer, and the readers that follow it:
//! a snapshot being built, or a shared upload-pack response
//! (the shared-packs service).
//!
//! A snapshot is built once, on its repo's owner, by a thread that writes
//! the tar.zst to a plain file under the owner's `tmp/` and advances a
//! watermark after every write. Any request, on any shard, that arrives
//! while it builds streams the same file up to the watermark, so N
//! concurrent requests cost one build and the first byte leaves long
//! before the last is compressed. Only immutable fields and atomics are
//! shared; the readers never block their shard (glommio buffered reads).
//! This module never decides when to build; `snapshot.rs` does.

use crate::repo::archive::Progress;
use bytes::Bytes;
use futures_lite::Stream;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

const RUNNING: u8 = 0;
const DONE: u8 = 1;
const FAILED: u8 = 2;

/// How long a reader that caught up with the builder waits before looking
/// again. The builder writes about a MiB at a time.
const FOLLOW_POLL: Duration = Duration::from_millis(2);
/// Most bytes a follower reads at once.
const FOLLOW_READ_BYTES: usize = 1 << 20;

/// A tar.zst being written by a build thread.
#[derive(Debug)]
pub struct Build {
    /// The commit it is a snapshot of.
    pub commit: String,
    pub path: PathBuf,
    /// Opened before the first byte is written; followers read through
    /// duplicates of it, so the file may be unlinked once it is stored.
    file: std::fs::File,
    written: AtomicU64,
    state: AtomicU8,
}

impl Progress for Build {
    fn written(&self, bytes: u64) {
        self.written.store(bytes, Ordering::Release);
    }
}

impl Build {
    /// Creates the (empty) file at `path`.
    pub fn create(commit: String, path: PathBuf) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        Ok(Self { commit, path, file, written: AtomicU64::new(0), state: AtomicU8::new(RUNNING) })
    }

    /// A descriptor to write the file through, valid even once the path is
    /// unlinked.
    pub fn writer(&self) -> io::Result<std::fs::File> {
        self.file.try_clone()
    }

    /// [`Build::writer`] for the shard's executor: a glommio file over its
    /// own duplicate of the descriptor.
    pub fn async_writer(&self) -> io::Result<glommio::io::BufferedFile> {
        use std::os::fd::{FromRawFd, IntoRawFd};
        let fd = self.writer()?.into_raw_fd();
        // SAFETY: `fd` was just duplicated for this writer alone, and
        // ownership passes to the glommio file, which closes it.
        Ok(unsafe { glommio::io::BufferedFile::from_raw_fd(fd) })
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    pub fn failed(&self) -> bool {
        self.state.load(Ordering::Acquire) == FAILED
    }

    pub fn mark_done(&self, len: u64) {
        self.written.store(len, Ordering::Release);
        self.state.store(DONE, Ordering::Release);
    }

    pub fn mark_failed(&self) {
        self.state.store(FAILED, Ordering::Release);
    }

    /// The whole length, once the build is done.
    pub fn len_if_done(&self) -> Option<u64> {
        (self.state.load(Ordering::Acquire) == DONE).then(|| self.written.load(Ordering::Acquire))
    }

    /// The archive from its first byte, as it is written. A failed build
    /// ends the stream with an error (the client sees a cut response).
    pub fn follow(self: std::sync::Arc<Self>) -> io::Result<impl Stream<Item = io::Result<Bytes>>> {
        let fd = self.file.try_clone()?.into_raw_fd();
        // SAFETY: `fd` was just duplicated for this reader alone.
        let file = unsafe { glommio::io::BufferedFile::from_raw_fd(fd) };
        Ok(futures_lite::stream::unfold((self, file, 0u64), |(build, file, pos)| async move {
            loop {
                // Read the state before the watermark: DONE then means the
                // watermark is final.
                let state = build.state.load(Ordering::Acquire);
                let written = build.written.load(Ordering::Acquire);
                if pos < written {
                    let n = FOLLOW_READ_BYTES.min((written - pos) as usize);
                    return match file.read_at(pos, n).await {
                        Ok(r) if !r.is_empty() => {
                            let b = Bytes::copy_from_slice(&r);
                            let next = pos + b.len() as u64;
                            Some((Ok(b), (build, file, next)))
                        }
                        Ok(_) => Some((
                            Err(io::Error::other("the file being followed ended early")),
                            (build, file, u64::MAX),
                        )),
                        Err(e) => Some((Err(io::Error::other(e.to_string())), (build, file, u64::MAX))),
                    };
                }
                match state {
                    DONE => return None,
                    FAILED => {
                        if pos == u64::MAX {
                            return None;
                        }
                        return Some((
                            Err(io::Error::other("the file being followed was not finished: its writer failed")),
                            (build, file, u64::MAX),
                        ));
                    }
                    _ if pos == u64::MAX => return None,
                    _ => glommio::timer::sleep(FOLLOW_POLL).await,
                }
            }
        }))
    }
}
