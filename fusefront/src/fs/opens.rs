//! Opens and first reads: a local blob handed to the kernel (passthrough
//! backing file, or served by `read`), or on the kernel read path a read
//! answered from the inode's kept file; a missing one hydrated off the
//! FUSE thread and the reply made on a completion thread (`prefetch.rs`
//! keeps the next files ahead of the reader). It never blocks a FUSE
//! thread on the node.

use super::state::{Job, Shared};
use crate::answer::{DataAnswer, Fail, OpenAnswer};
use crate::handles::{Backing, Open};
use crate::table::Table;
use fuser::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use trove_engine::hydrate::blobstore::LocalBlob;
use trove_engine::hydrate::{HydrateError, Priority, Want};
use trove_engine::tree::index::Kind;

impl Shared {
    /// A read that came without a FUSE open (the kernel opens files
    /// itself): answered from the inode's local file, which is opened once
    /// and kept; a file not yet local is hydrated first (off this thread)
    /// and its directory's small files queued for prefetch, as a first
    /// open does on the other path.
    pub(super) fn read_inode(self: &Arc<Self>, ino: u64, offset: u64, size: u32, reply: impl DataAnswer) {
        // A file the overlay holds is read from its file there, up to its
        // end as it is now (it may grow: no length is fixed).
        if let Some(l) = self.layered.as_ref().filter(|l| l.held(ino)) {
            return match l.file(ino) {
                Ok(f) => reply.pread(&LocalBlob::own(f, u64::MAX), offset, size),
                Err(e) => reply.error(e),
            };
        }
        if let Some(blob) = self.inode_files.get(ino) {
            return reply.pread(&blob, offset, size);
        }
        let t = match self.table() {
            Ok(t) => t,
            Err(e) => return reply.error(e),
        };
        let Some(n) = t.node(ino) else { return reply.error(Errno::ENOENT) };
        if !matches!(n.kind, Kind::File | Kind::Executable) {
            return reply.error(Errno::EISDIR);
        }
        if n.size == 0 {
            return reply.data(&[]);
        }
        // A retry of a fetch that just failed fails at once in the owner's
        // queue (HYDRATE_FAILED_HOLD): the kernel retries a failed
        // readahead page by page.
        self.with_blob(t, ino, reply, move |s, blob, reply| {
            reply.pread(&s.inode_files.insert(ino, blob), offset, size)
        });
    }

    /// Runs `then` with file `ino`'s local blob: at once if it is local,
    /// else once it landed, on a completion thread (a failed fetch answers
    /// EIO, a full queue EAGAIN). Either way this is the file's first read
    /// here, so prefetch moves on: after the read's own want, so it goes
    /// first.
    pub(super) fn with_blob<R: Fail>(
        self: &Arc<Self>,
        t: &Table,
        ino: u64,
        reply: R,
        then: impl FnOnce(&Shared, LocalBlob, R) + Send + 'static,
    ) {
        let Some(n) = t.node(ino) else { return reply.error(Errno::ENOENT) };
        match self.hydrator.open_local(&n.oid) {
            Ok(Some(blob)) => {
                self.prefetch(t, ino);
                then(self, blob, reply)
            }
            Ok(None) => {
                self.hydrate(t, ino, Shared::path(t, ino), move |s, file| match file {
                    Ok(f) => then(s, f, reply),
                    Err(HydrateError::QueueFull(_)) => reply.error(Errno::EAGAIN),
                    Err(_) => reply.error(Errno::EIO),
                });
                self.prefetch(t, ino);
            }
            Err(e) => {
                self.counters.error(format!("{}: {e}", Shared::path(t, ino)));
                reply.error(Errno::EIO)
            }
        }
    }

    /// Replies to an open of inode `ino` with its local blob: passthrough
    /// on the blob's own file if the kernel takes it (a passthrough
    /// mount's store gives every blob its own file), else served by `read`.
    pub(super) fn reply_open(&self, ino: u64, blob: LocalBlob, reply: impl OpenAnswer) {
        if self.counters.passthrough.load(Ordering::Relaxed) && blob.own_file().is_some() {
            let mut blob = Some(blob);
            let made = self.handles.backing(ino, || {
                let held = blob.take().expect("made once");
                let id = reply.open_backing(held.own_file().expect("checked above"))?;
                Ok(Some(Backing { blob: held, id }))
            });
            match made {
                Ok(Some(backing)) => return self.reply_passthrough(backing, reply),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("the kernel refused a passthrough backing file ({e}); reads go through the daemon");
                    self.counters.passthrough.store(false, Ordering::Relaxed);
                }
            }
            let Some(b) = blob else { return reply.error(Errno::EIO) };
            return self.reply_served(b, reply);
        }
        self.reply_served(blob, reply)
    }

    pub(super) fn reply_served(&self, blob: LocalBlob, reply: impl OpenAnswer) {
        let fh = self.handles.insert(Open::Served(blob));
        reply.opened(fh, FopenFlags::FOPEN_KEEP_CACHE);
    }

    /// A passthrough open on `backing`, which the handle keeps alive until
    /// release. No FOPEN_KEEP_CACHE: the kernel refuses a passthrough open
    /// with any flag outside FOPEN_PASSTHROUGH_MASK (EIO), and the backing
    /// file's page cache is the cache.
    pub(super) fn reply_passthrough(&self, backing: Arc<Backing>, reply: impl OpenAnswer) {
        let fh = self.handles.insert(Open::Passthrough(backing.clone()));
        reply.opened_passthrough(fh, FopenFlags::empty(), &backing.id);
    }

    /// Asks the owner for file `ino`'s blob (converted, for a file
    /// checkout converts); `then` runs on a completion thread with the
    /// file, or the error.
    pub(super) fn hydrate(
        self: &Arc<Self>,
        table: &Table,
        ino: u64,
        what: String,
        then: impl FnOnce(&Shared, Result<LocalBlob, HydrateError>) + Send + 'static,
    ) {
        let Some(node) = table.node(ino) else { return then(self, Err(HydrateError::Store("no such inode".into()))) };
        let (oid, size, me) = (node.oid, node.size, self.clone());
        let from = table.checkout(ino).cloned();
        let (blob, blob_size) = from.as_ref().map_or((oid, size), |c| (c.blob, c.blob_size));
        let done = move |r: Result<(), HydrateError>| {
            let job_me = me.clone();
            let job: Job = Box::new(move || {
                let file = r.and_then(|()| {
                    if let Some(from) = &from {
                        job_me.converter.land(job_me.hydrator.store(), &oid, size, from)?;
                    }
                    job_me.hydrator.open_local(&oid)?.ok_or_else(|| {
                        HydrateError::Store("the blob was evicted as it landed; raise --cache-capacity".into())
                    })
                });
                if let Err(e) = &file {
                    job_me.counters.error(format!("{what}: {e}"));
                }
                then(&job_me, file);
            });
            let _ = me.completions.send(job);
        };
        self.hydrator.want(Want { oid: blob, size: blob_size, priority: Priority::Read, done: Some(Box::new(done)) });
    }
}
