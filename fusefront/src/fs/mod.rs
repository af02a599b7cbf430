//! The FUSE filesystem of a mount: the base tree of one commit, read-only.
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
//! - The first fetch of a file queues its directory's small files as
//!   prefetches, below every read. A listing, stat or getattr never
//!   fetches a blob, whatever the settings.
//! - Every write gets EROFS (the mount is also read-only to the kernel).
//!
//! It must never block a FUSE thread on the node, and never reply before
//! the readiness gate opened.
//!
//! Split: this file is the kernel's operations; `state.rs` what they
//! share and the metadata from the table; `opens.rs` opens, hydration and
//! prefetch.

mod opens;
mod state;

pub use state::{FsOptions, Job, MountCounters};

use crate::gate::Gate;
use crate::handles::{Handles, InodeFiles, Open};
use crate::limits::*;
use crate::options::ReadPath;
use fuser::*;
use opens::pread_reply;
use state::{kind_of, libc_trunc, Shared};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use trove_engine::hydrate::{Converter, HydrateError, Hydrator};
use trove_engine::tree::index::Kind;

/// See the module doc.
pub struct TroveFs {
    shared: Arc<Shared>,
}

impl TroveFs {
    pub fn new(
        gate: Arc<Gate>,
        hydrator: Arc<Hydrator>,
        completions: crossbeam_channel::Sender<Job>,
        counters: Arc<MountCounters>,
        options: FsOptions,
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
            prefetched: Mutex::default(),
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
        };
        Self { shared: Arc::new(shared) }
    }
}

/// Files the daemon may keep open for reads without a FUSE open: the
/// bound, or half the descriptors it may open, whichever is fewer.
fn inode_files_max() -> usize {
    use rustix::process::{getrlimit, Resource};
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    INODE_FILES_MAX.min(usize::try_from(soft / 2).unwrap_or(usize::MAX))
}

macro_rules! ready {
    ($shared:expr, $reply:expr) => {
        match $shared.table() {
            Ok(t) => t,
            Err(e) => return $reply.error(e),
        }
    };
}

macro_rules! node {
    ($table:expr, $ino:expr, $reply:expr) => {
        match $table.node($ino.0) {
            Some(n) => n,
            None => return $reply.error(Errno::ENOENT),
        }
    };
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
        let _ = config.set_max_readahead(READ_MAX_BYTES);
        Ok(())
    }

    fn destroy(&mut self) {
        self.shared.hydrator.close();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let s = &self.shared;
        let t = ready!(s, reply);
        match t.lookup(parent.0, name.as_bytes()) {
            Some(ino) => reply.entry(&BASE_TREE_TTL, &s.attr(t, ino, t.node(ino).expect("looked up")), Generation(0)),
            None if t.node(parent.0).is_some() => {
                // A negative entry (inode 0): the base tree never gains
                // a name, so the kernel may remember the miss too.
                let mut none = s.attr(t, 0, t.node(1).expect("root"));
                none.ino = INodeNo(0);
                reply.entry(&BASE_TREE_TTL, &none, Generation(0));
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let s = &self.shared;
        let t = ready!(s, reply);
        let n = node!(t, ino, reply);
        reply.attr(&BASE_TREE_TTL, &s.attr(t, ino.0, n));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let s = &self.shared;
        let t = ready!(s, reply);
        let n = node!(t, ino, reply);
        if n.kind != Kind::Symlink {
            return reply.error(Errno::EINVAL);
        }
        if n.size > SYMLINK_MAX_BYTES {
            s.counters.error(format!(
                "{}: a symlink target of {} bytes is over PATH_MAX",
                Shared::path(t, ino.0),
                n.size
            ));
            return reply.error(Errno::ENAMETOOLONG);
        }
        // The target rides in the tree index: readlink fetches nothing.
        match t.target(ino.0) {
            Some(target) if target.len() as u64 == n.size => reply.data(target),
            _ => {
                s.counters.error(format!("{}: the tree index has no target for this symlink", Shared::path(t, ino.0)));
                reply.error(Errno::EIO)
            }
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let s = &self.shared;
        let t = ready!(s, reply);
        let n = node!(t, ino, reply);
        if flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc_trunc() != 0 {
            return reply.error(Errno::EROFS);
        }
        match n.kind {
            Kind::Dir | Kind::Submodule => return reply.error(Errno::EISDIR),
            Kind::Symlink => return reply.error(Errno::ELOOP),
            Kind::File | Kind::Executable => {}
        }
        if s.options.read_path == ReadPath::Kernel {
            // From now on the kernel opens files itself, keeps their page
            // cache across opens and sends only reads (`read_inode`).
            return reply.error(Errno::ENOSYS);
        }
        if n.size == 0 {
            // The empty blob (the index decoder refused any other id).
            let fh = s.handles.insert(Open::Empty);
            return reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
        }
        // Open already: the kernel has its backing file (whatever became
        // of the blob in the cache since).
        if let Some(backing) = s.handles.live_backing(ino.0) {
            return s.reply_passthrough(backing, reply);
        }
        let ino = ino.0;
        match s.hydrator.open_local(&n.oid) {
            Ok(Some(file)) => s.reply_open(ino, file, reply),
            Ok(None) => {
                s.hydrate(t, ino, Shared::path(t, ino), move |s, file| match file {
                    Ok(f) => s.reply_open(ino, f, reply),
                    Err(HydrateError::QueueFull(_)) => reply.error(Errno::EAGAIN),
                    Err(_) => reply.error(Errno::EIO),
                });
                // Its siblings are likely next (a build, a grep): they
                // follow in one batch, behind this read.
                s.prefetch(t, u64::from(n.parent) + 1, ino);
            }
            Err(e) => {
                s.counters.error(format!("{}: {e}", Shared::path(t, ino)));
                reply.error(Errno::EIO)
            }
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // Nothing is written, so nothing to flush. ENOSYS makes the kernel
        // stop sending flush: a close then costs no round trip here.
        reply.error(Errno::ENOSYS);
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
        if fh.0 == 0 {
            return self.shared.read_inode(ino.0, offset, size, reply);
        }
        let file = match self.shared.handles.served(fh.0) {
            None => return reply.error(Errno::EBADF),
            Some(Err(())) => return reply.data(&[]),
            Some(Ok(f)) => f,
        };
        pread_reply(&file, offset, size, reply);
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
        self.shared.handles.release(fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let s = &self.shared;
        let t = ready!(s, reply);
        let n = node!(t, ino, reply);
        if kind_of(n) != FileType::Directory {
            return reply.error(Errno::ENOTDIR);
        }
        reply.opened(FileHandle(0), FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let s = &self.shared;
        let (t, n) = match s.dir_to_list(ino.0) {
            Ok(found) => found,
            Err(e) => return reply.error(e),
        };
        for (i, off, child, name) in s.listing(t, ino.0, n, offset) {
            if reply.add(INodeNo(i), off, kind_of(child), OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let s = &self.shared;
        let (t, n) = match s.dir_to_list(ino.0) {
            Ok(found) => found,
            Err(e) => return reply.error(e),
        };
        for (i, off, child, name) in s.listing(t, ino.0, n, offset) {
            if reply.add(INodeNo(i), off, OsStr::from_bytes(name), &BASE_TREE_TTL, &s.attr(t, i, child), Generation(0))
            {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // df: the data dir's disk, where hydrated files (and, with
        // writes, new ones) go; the tree's own bytes are not "used" space.
        match rustix::fs::statvfs(&self.shared.options.data_dir) {
            Ok(v) => reply.statfs(
                v.f_blocks,
                v.f_bfree,
                v.f_bavail,
                v.f_files,
                v.f_ffree,
                v.f_bsize as u32,
                255,
                v.f_frsize as u32,
            ),
            Err(e) => {
                let what = format!("statfs of the data dir {}: {e}", self.shared.options.data_dir.display());
                self.shared.counters.error(what);
                reply.error(Errno::EIO)
            }
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let s = &self.shared;
        let t = ready!(s, reply);
        let _ = node!(t, ino, reply);
        if mask.contains(AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        reply.ok();
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
