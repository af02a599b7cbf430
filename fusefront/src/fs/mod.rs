//! The FUSE filesystem of a mount: the base tree of one commit, with the
//! mount's writable overlay over it.
//!
//! - Metadata (lookup, getattr, readdir, readdirplus, statfs) comes from
//!   the inode table alone: no blob is ever fetched for it. Entries,
//!   attributes and negative lookups carry the base tree's long TTL,
//!   directories are opened with `FOPEN_CACHE_DIR`, files with
//!   `FOPEN_KEEP_CACHE`: the kernel answers repeats itself.
//! - `open` of a file whose blob is local opens it on the FUSE thread (no
//!   message to any shard) and hands it to the kernel as a passthrough
//!   backing file, so reads never reach the daemon; where the kernel
//!   refuses passthrough, reads are served from the file by `read`.
//! - `open` of a file not yet local sends a read-priority want to the
//!   repo's owner shard and returns; the reply is made on a completion
//!   thread once the blob landed (or EIO once it could not).
//! - Each first read of a file moves prefetch on: the small files a walk
//!   reads next are queued below every read (`prefetch.rs`). A listing,
//!   stat or getattr never fetches a blob, whatever the settings.
//! - Writes go to the mount's overlay (`write.rs`, `layered.rs`): a
//!   read-only mount (the io_uring transport, which carries reads only)
//!   gets EROFS for each.
//!
//! It must never block a FUSE thread on the node, and never reply before
//! the readiness gate opened.
//!
//! Split: this file is fuser's `Filesystem` (the `/dev/fuse` transport),
//! which only forwards; `ops.rs` the operations, written against the
//! reply traits of `crate::answer` so the io_uring transport (`crate::ring`)
//! runs them too; `state.rs` what they share and the metadata from the
//! table; `opens.rs` opens, hydration and prefetch; `layered.rs` the
//! tree merged with the overlay; `write.rs` the writes.

mod cursors;
mod layered;
mod opens;
mod ops;
mod prefetch;
mod state;
mod write;

pub(crate) use layered::Layered;
pub(crate) use state::Shared;
pub use state::{FsOptions, Job, MountCounters};
pub(crate) use write::{Caller, NewAttrs};

use crate::answer::done;
use crate::gate::Gate;
use crate::handles::{Handles, InodeFiles};
use crate::limits::*;
use crate::options::ReadPath;
use fuser::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use trove_engine::hydrate::{Converter, Hydrator};

fn caller(req: &Request) -> Caller {
    Caller { uid: req.uid(), gid: req.gid() }
}

/// See the module doc.
pub struct TroveFs {
    shared: Arc<Shared>,
}

impl TroveFs {
    pub(crate) fn new(
        gate: Arc<Gate>,
        hydrator: Arc<Hydrator>,
        completions: crossbeam_channel::Sender<Job>,
        counters: Arc<MountCounters>,
        options: FsOptions,
        layered: Option<Arc<Layered>>,
    ) -> Self {
        // What the inode files hold open may be evicted blobs: at most a
        // quarter of the cache's capacity past it.
        let inode_files = InodeFiles::new(inode_files_max(), hydrator.store().capacity_bytes() / 4);
        let shared = Shared {
            gate,
            hydrator,
            converter: Converter::default(),
            handles: Handles::default(),
            inode_files,
            completions,
            counters,
            options,
            walk: std::sync::OnceLock::new(),
            prefetched: Mutex::default(),
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            layered,
        };
        Self { shared: Arc::new(shared) }
    }

    /// What the operations share, for the io_uring queues to serve the
    /// same filesystem (`crate::ring`).
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

/// Files the daemon may keep open for reads without a FUSE open: the
/// bound, or half the descriptors it may open, whichever is fewer.
fn inode_files_max() -> usize {
    use rustix::process::{getrlimit, Resource};
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    INODE_FILES_MAX.min(usize::try_from(soft / 2).unwrap_or(usize::MAX))
}

impl Filesystem for TroveFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let want = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_PARALLEL_DIROPS;
        let _ = config.add_capabilities(want & config.capabilities());
        let mut passthrough = false;
        let wants_passthrough = self.shared.options.read_path == ReadPath::Passthrough;
        if wants_passthrough && config.capabilities().contains(InitFlags::FUSE_PASSTHROUGH) {
            passthrough =
                config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok() && config.set_max_stack_depth(1).is_ok();
        }
        self.shared.counters.passthrough.store(passthrough, Ordering::Relaxed);
        // No writeback cache (FUSE_WRITEBACK_CACHE), though it makes a
        // rewrite of a written file cost what it costs on ext4 (p50 2.3 us
        // against 19 us written through, by hand): with it this kernel
        // asks the daemon for a file's attributes on every read that
        // reaches its end, base files included (one GETATTR per file a
        // grep reads; the bench's warm 8-reader search went from 1.02x to
        // 1.77x ext4). Reads are most of what a working tree serves.
        if self.shared.options.ring && config.add_capabilities(InitFlags::FUSE_OVER_IO_URING).is_ok() {
            // Each ring entry carries a payload of the largest request or
            // reply: reads are capped at READ_MAX_BYTES, and so are writes.
            let _ = config.set_max_write(READ_MAX_BYTES);
            self.shared.counters.ring_offered.store(true, Ordering::Relaxed);
        }
        let _ = config.set_max_readahead(READ_MAX_BYTES);
        Ok(())
    }

    // No `destroy`: the repo's hydrator is shared with the daemon's other
    // mounts of it, and closes when the last of them lets go of its lease
    // (`crate::repos`), not when one session ends.

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.shared.lookup(parent.0, name.as_bytes(), reply)
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.shared.getattr(ino.0, reply)
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.shared.readlink(ino.0, reply)
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.shared.open(ino.0, flags.0, reply)
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // Writes reach the overlay's file as they are made, so a close has
        // nothing to flush. ENOSYS makes the kernel stop sending flush: a
        // close then costs no round trip here.
        reply.error(Errno::ENOSYS);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, _nlookup: u64) {
        if let Some(l) = &self.shared.layered {
            l.forget(ino.0);
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.shared.setattr(ino.0, NewAttrs { mode, uid, gid, size, atime, mtime }, reply)
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        self.shared.mknod(parent.0, name.as_bytes(), mode, caller(req), reply)
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        self.shared.mkdir(parent.0, name.as_bytes(), mode, caller(req), reply)
    }

    fn symlink(&self, req: &Request, parent: INodeNo, name: &OsStr, target: &std::path::Path, reply: ReplyEntry) {
        self.shared.symlink(parent.0, name.as_bytes(), target.as_os_str().as_bytes(), caller(req), reply)
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        self.shared.create(parent.0, name.as_bytes(), mode, caller(req), reply)
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        self.shared.link(ino.0, newparent.0, newname.as_bytes(), reply)
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        done(self.shared.remove(parent.0, name.as_bytes(), false), reply)
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        done(self.shared.remove(parent.0, name.as_bytes(), true), reply)
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        done(self.shared.rename((parent.0, name.as_bytes()), (newparent.0, newname.as_bytes()), flags), reply)
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.shared.write(ino.0, offset, data, reply)
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        done(self.shared.fsync(ino.0, datasync), reply)
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        done(self.shared.fsyncdir(), reply)
    }

    fn lseek(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _offset: i64, _whence: i32, reply: ReplyLseek) {
        // ENOSYS makes the kernel stop asking and answer SEEK_DATA and
        // SEEK_HOLE itself (the whole file is data, its end the one hole),
        // which is right: a blob has no holes.
        reply.error(Errno::ENOSYS);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.shared.read(ino.0, fh.0, offset, size, reply)
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.shared.release(fh.0, reply)
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.shared.opendir(ino.0, reply)
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, reply: ReplyDirectory) {
        self.shared.readdir(ino.0, offset, reply)
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, reply: ReplyDirectoryPlus) {
        self.shared.readdirplus(ino.0, offset, reply)
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.shared.statfs(reply)
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.shared.access(ino.0, mask.bits(), reply)
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        // A file here is no terminal (isatty asks) and has no ioctls.
        reply.error(Errno::ENOTTY);
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        // A tree has no extended attributes. ENOSYS makes the kernel stop
        // asking: `ls -l` asks for two on every file (an ACL, a security
        // label), and from then on the kernel says "not supported" itself.
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }
}
