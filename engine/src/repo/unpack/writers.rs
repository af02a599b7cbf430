//! The writer threads of an unpack: small files, batched per directory,
//! created while the reading thread decompresses.

use super::at::create;
use crate::repo::archive::ArchiveError;
use rustix::fs as rfs;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Small files go to the writers in batches of up to this many files...
pub(super) const BATCH_FILES: usize = 64;
/// ...or of this many bytes, so a batch costs one channel operation and
/// not 64: one per file cost 180k `sched_yield`s and 50k futex calls on
/// the bench's 50k-file tree, taken from the cores doing the work.
pub(super) const BATCH_BYTES: usize = 1 << 20;
/// A small file for the writer thread.
pub(super) struct Job {
    pub(super) dir: Arc<OwnedFd>,
    pub(super) name: OsString,
    pub(super) rel: PathBuf,
    pub(super) mode: u32,
    pub(super) data: Vec<u8>,
}

/// What the writer thread shares with the reading thread.
#[derive(Default)]
pub(super) struct Shared {
    /// Jobs sent and not yet done (a hard link waits for zero).
    pub(super) pending: AtomicUsize,
    pub(super) first_error: Mutex<Option<ArchiveError>>,
}

/// The reading thread's side of the writers: small files batched per
/// writer. A directory's files always go to the same writer, so entries of
/// one name keep their order (the later wins) and two writers never
/// contend for one directory.
pub(super) struct Writers<'a> {
    txs: Vec<crossbeam_channel::Sender<Vec<Job>>>,
    batches: Vec<(Vec<Job>, usize)>,
    shared: &'a Shared,
}

impl<'a> Writers<'a> {
    pub(super) fn new(txs: Vec<crossbeam_channel::Sender<Vec<Job>>>, shared: &'a Shared) -> Self {
        let batches = txs.iter().map(|_| (Vec::with_capacity(BATCH_FILES), 0)).collect();
        Writers { txs, batches, shared }
    }

    /// Queues `job`; false once a writer is gone (its error says why).
    pub(super) fn send(&mut self, job: Job) -> bool {
        let dir = job.rel.parent().unwrap_or(Path::new(""));
        let w = xxhash_rust::xxh3::xxh3_64(dir.as_os_str().as_bytes()) as usize % self.txs.len();
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        let (batch, bytes) = &mut self.batches[w];
        *bytes += job.data.len();
        batch.push(job);
        if batch.len() < BATCH_FILES && *bytes < BATCH_BYTES {
            return true;
        }
        self.flush_one(w)
    }

    fn flush_one(&mut self, w: usize) -> bool {
        let (batch, bytes) = &mut self.batches[w];
        *bytes = 0;
        let full = std::mem::replace(batch, Vec::with_capacity(BATCH_FILES));
        full.is_empty() || self.txs[w].send(full).is_ok()
    }

    /// Sends what is batched and waits until every queued file is written.
    pub(super) fn wait_idle(&mut self) {
        for w in 0..self.txs.len() {
            if !self.flush_one(w) {
                return;
            }
        }
        while self.shared.pending.load(Ordering::Acquire) > 0 {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

impl Drop for Writers<'_> {
    /// Sends the last batches; dropping the senders then ends the writers.
    fn drop(&mut self) {
        for w in 0..self.txs.len() {
            self.flush_one(w);
        }
    }
}

/// The writer thread: creates the files it is sent and returns their stat
/// data. After the first error it only drains the queue.
pub(super) fn write_jobs(
    rx: crossbeam_channel::Receiver<Vec<Job>>,
    w: &Shared,
    dest: &Path,
) -> Vec<(PathBuf, rfs::Stat)> {
    let mut stats = Vec::new();
    for job in rx.into_iter().flatten() {
        let failed = w.first_error.lock().expect("not poisoned").is_some();
        if !failed {
            match write_file(&job.dir, &job.name, job.mode, &mut &job.data[..], &mut []) {
                Ok(st) => stats.push((job.rel, st)),
                Err(e) => {
                    let e = ArchiveError::Io { path: dest.join(&job.rel), source: e };
                    w.first_error.lock().expect("not poisoned").get_or_insert(e);
                }
            }
        }
        w.pending.fetch_sub(1, Ordering::AcqRel);
    }
    stats
}

/// Creates `name` in `dir` with `mode` and the bytes of `data`, through
/// `buf` when `data` is a stream (an empty `buf` means one read suffices).
pub(super) fn write_file(
    dir: &OwnedFd,
    name: &OsStr,
    mode: u32,
    data: &mut dyn Read,
    buf: &mut [u8],
) -> io::Result<rfs::Stat> {
    let mut file = std::fs::File::from(create(dir, name, mode)?);
    if buf.is_empty() {
        io::copy(data, &mut file)?;
    } else {
        loop {
            let n = data.read(buf)?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n])?;
        }
    }
    Ok(rfs::fstat(&file)?)
}
