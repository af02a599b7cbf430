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
//! - The first `readdir` of a directory, or the first fetch of one of its
//!   files, queues the directory's small files as prefetches.
//! - Every write gets EROFS (the mount is also read-only to the kernel).
//!
//! It must never block a FUSE thread on the node, and never reply before
//! the readiness gate opened.

use crate::gate::Gate;
use crate::handles::{Backing, Handles, Open};
use crate::limits::*;
use crate::table::{Node, Table};
use fuser::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use trove_engine::hydrate::{HydrateError, Hydrator, Priority, Want};
use trove_engine::tree::index::Kind;

/// A job for a completion thread.
pub type Job = Box<dyn FnOnce() + Send>;

/// What the mount reports of itself (`trove mounts`).
#[derive(Default)]
pub struct MountCounters {
    pub errors: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    pub passthrough: AtomicBool,
}

impl MountCounters {
    fn error(&self, what: String) {
        tracing::warn!("{what}");
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
    }
}

/// How a mount's filesystem is set up.
pub struct FsOptions {
    pub prefetch: bool,
    /// Ask the kernel for passthrough (it may still refuse).
    pub passthrough: bool,
}

struct Shared {
    gate: Arc<Gate>,
    hydrator: Arc<Hydrator>,
    handles: Handles,
    completions: crossbeam_channel::Sender<Job>,
    counters: Arc<MountCounters>,
    options: FsOptions,
    /// Directories whose files were queued for prefetch (once each).
    prefetched: Mutex<std::collections::HashSet<u64>>,
    uid: u32,
    gid: u32,
    time: SystemTime,
}

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
        let shared = Shared {
            gate,
            hydrator,
            handles: Handles::default(),
            completions,
            counters,
            options,
            prefetched: Mutex::default(),
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            time: SystemTime::now(),
        };
        Self { shared: Arc::new(shared) }
    }
}

impl Shared {
    fn table(&self) -> Result<&Arc<Table>, Errno> {
        self.gate.pass().map_err(|reason| {
            self.counters.error(format!("not ready: {reason}"));
            Errno::EIO
        })
    }

    fn attr(&self, ino: u64, node: &Node) -> FileAttr {
        let (kind, perm, nlink) = match node.kind {
            Kind::Dir => (FileType::Directory, 0o755, 2 + node.subdirs),
            Kind::Submodule => (FileType::Directory, 0o755, 2),
            Kind::File => (FileType::RegularFile, 0o644, 1),
            Kind::Executable => (FileType::RegularFile, 0o755, 1),
            Kind::Symlink => (FileType::Symlink, 0o777, 1),
        };
        FileAttr {
            ino: INodeNo(ino),
            size: node.size,
            blocks: node.size.div_ceil(512),
            atime: self.time,
            mtime: self.time,
            ctime: self.time,
            crtime: self.time,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// `ino`'s path in the tree, for messages.
    fn path(table: &Table, ino: u64) -> String {
        let mut parts = Vec::new();
        let mut at = ino;
        while let Some(n) = table.node(at) {
            if at == 1 {
                break;
            }
            parts.push(String::from_utf8_lossy(table.name(n)).into_owned());
            at = u64::from(n.parent) + 1;
        }
        parts.reverse();
        parts.join("/")
    }

    /// Replies to an open of inode `ino` with a local blob's file:
    /// passthrough if the kernel takes it, else served by `read`.
    fn reply_open(&self, ino: u64, file: std::fs::File, reply: ReplyOpen) {
        if self.counters.passthrough.load(Ordering::Relaxed) {
            let mut file = Some(file);
            let made = self.handles.backing(ino, || {
                let f = file.take().expect("made once");
                reply.open_backing(&f).map(|id| Some(Backing { file: f, id }))
            });
            match made {
                Ok(Some(backing)) => return self.reply_passthrough(backing, reply),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("the kernel refused a passthrough backing file ({e}); reads go through the daemon");
                    self.counters.passthrough.store(false, Ordering::Relaxed);
                }
            }
            let Some(f) = file else { return reply.error(Errno::EIO) };
            return self.reply_served(f, reply);
        }
        self.reply_served(file, reply)
    }

    fn reply_served(&self, file: std::fs::File, reply: ReplyOpen) {
        let fh = self.handles.insert(Open::Served(Arc::new(file)));
        reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
    }

    /// A passthrough open on `backing`, which the handle keeps alive until
    /// release. No FOPEN_KEEP_CACHE: the kernel refuses a passthrough open
    /// with any flag outside FOPEN_PASSTHROUGH_MASK (EIO), and the backing
    /// file's page cache is the cache.
    fn reply_passthrough(&self, backing: Arc<Backing>, reply: ReplyOpen) {
        let fh = self.handles.insert(Open::Passthrough(backing.clone()));
        reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &backing.id);
    }

    /// Asks the owner for `node`'s blob; `then` runs on a completion
    /// thread with the blob's file, or the error.
    fn hydrate(
        self: &Arc<Self>,
        node: &Node,
        what: String,
        then: impl FnOnce(&Shared, Result<std::fs::File, HydrateError>) + Send + 'static,
    ) {
        let (oid, me) = (node.oid, self.clone());
        let done = move |r: Result<(), HydrateError>| {
            let job_me = me.clone();
            let job: Job = Box::new(move || {
                let file = r.and_then(|()| {
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
        self.hydrator.want(Want {
            oid: node.oid,
            size: node.size,
            priority: Priority::Read,
            done: Some(Box::new(done)),
        });
    }

    /// Queues the small files of directory `ino` that are not local, the
    /// first time it is listed or one of its files is fetched.
    fn prefetch(&self, table: &Table, ino: u64) {
        if !self.options.prefetch {
            return;
        }
        let Some(node) = table.node(ino) else { return };
        if !self.prefetched.lock().unwrap_or_else(|p| p.into_inner()).insert(ino) {
            return;
        }
        let store = self.hydrator.store();
        let mut files: Vec<&Node> = table
            .children(node)
            .filter_map(|i| table.node(i))
            .filter(|n| matches!(n.kind, Kind::File | Kind::Executable))
            .filter(|n| n.size > 0 && n.size <= PREFETCH_FILE_MAX_BYTES && !store.contains(&n.oid))
            .collect();
        files.sort_by_key(|n| n.size);
        for n in files.into_iter().take(PREFETCH_FILES_PER_DIR) {
            self.hydrator.want(Want { oid: n.oid, size: n.size, priority: Priority::Prefetch, done: None });
        }
    }

    /// The table and node of directory `ino` for a listing from `offset`;
    /// the first listing (offset 0) queues its files for prefetch.
    fn dir_to_list(&self, ino: u64, offset: u64) -> Result<(&Arc<Table>, &Node), Errno> {
        let t = self.table()?;
        let n = t.node(ino).ok_or(Errno::ENOENT)?;
        if offset == 0 {
            self.prefetch(t, ino);
        }
        Ok((t, n))
    }

    /// The entries of directory `ino` from `offset`: (ino, offset, kind, name).
    fn listing<'t>(
        &self,
        table: &'t Table,
        ino: u64,
        node: &'t Node,
        offset: u64,
    ) -> impl Iterator<Item = (u64, u64, &'t Node, &'t [u8])> + 't {
        let parent = u64::from(node.parent) + 1;
        let dots = [(ino, &b"."[..]), (parent, &b".."[..])].into_iter();
        let kids = table.children(node).map(move |i| (i, table.name(table.node(i).expect("children are nodes"))));
        dots.chain(kids)
            .enumerate()
            .skip(offset as usize)
            .map(move |(k, (i, name))| (i, k as u64 + 1, table.node(i).expect("listed inodes exist"), name))
    }
}

fn kind_of(node: &Node) -> FileType {
    match node.kind {
        Kind::Dir | Kind::Submodule => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::File | Kind::Executable => FileType::RegularFile,
    }
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
        if self.shared.options.passthrough && config.capabilities().contains(InitFlags::FUSE_PASSTHROUGH) {
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
            Some(ino) => reply.entry(&BASE_TREE_TTL, &s.attr(ino, t.node(ino).expect("looked up")), Generation(0)),
            None if t.node(parent.0).is_some() => {
                // A negative entry (inode 0): the base tree never gains
                // a name, so the kernel may remember the miss too.
                let mut none = s.attr(0, t.node(1).expect("root"));
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
        reply.attr(&BASE_TREE_TTL, &s.attr(ino.0, n));
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
        let target = |file: &std::fs::File| -> std::io::Result<Vec<u8>> {
            let mut buf = vec![0u8; n.size as usize];
            file.read_exact_at(&mut buf, 0)?;
            Ok(buf)
        };
        match s.hydrator.open_local(&n.oid) {
            Ok(Some(f)) => match target(&f) {
                Ok(b) => reply.data(&b),
                Err(_) => reply.error(Errno::EIO),
            },
            Ok(None) => {
                let size = n.size as usize;
                self.shared.hydrate(n, Shared::path(t, ino.0), move |_, file| {
                    let bytes = file.ok().and_then(|f| {
                        let mut buf = vec![0u8; size];
                        f.read_exact_at(&mut buf, 0).ok().map(|()| buf)
                    });
                    match bytes {
                        Some(b) => reply.data(&b),
                        None => reply.error(Errno::EIO),
                    }
                });
            }
            Err(e) => {
                s.counters.error(format!("{}: {e}", Shared::path(t, ino.0)));
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
        if n.size == 0 {
            // One blob is empty, and it has one id: an index that says
            // otherwise lies, and is not believed (no bytes at all are
            // still bytes served).
            if n.oid != EMPTY_BLOB {
                s.counters.error(format!(
                    "the tree index says a file is empty but names blob {}, which is not the empty blob",
                    trove_engine::tree::oid_hex(&n.oid)
                ));
                return reply.error(Errno::EIO);
            }
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
                s.hydrate(n, Shared::path(t, ino), move |s, file| match file {
                    Ok(f) => s.reply_open(ino, f, reply),
                    Err(HydrateError::QueueFull(_)) => reply.error(Errno::EAGAIN),
                    Err(_) => reply.error(Errno::EIO),
                });
                // Its siblings are likely next (a build, a grep): they
                // follow in one batch, behind this read.
                s.prefetch(t, u64::from(n.parent) + 1);
            }
            Err(e) => {
                s.counters.error(format!("{}: {e}", Shared::path(t, ino)));
                reply.error(Errno::EIO)
            }
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // Nothing is written, so nothing to flush.
        reply.ok();
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let file = match self.shared.handles.served(fh.0) {
            None => return reply.error(Errno::EBADF),
            Some(Err(())) => return reply.data(&[]),
            Some(Ok(f)) => f,
        };
        let mut buf = vec![0u8; size.min(READ_MAX_BYTES) as usize];
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return reply.error(Errno::EIO),
            }
        }
        reply.data(&buf[..got]);
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
        let (t, n) = match s.dir_to_list(ino.0, offset) {
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
        let (t, n) = match s.dir_to_list(ino.0, offset) {
            Ok(found) => found,
            Err(e) => return reply.error(e),
        };
        for (i, off, child, name) in s.listing(t, ino.0, n, offset) {
            if reply.add(INodeNo(i), off, OsStr::from_bytes(name), &BASE_TREE_TTL, &s.attr(i, child), Generation(0)) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = &self.shared;
        let t = ready!(s, reply);
        reply.statfs(t.file_bytes.div_ceil(4096), 0, 0, t.len() as u64, 0, 4096, 255, 4096);
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
        reply.error(Errno::ENODATA);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }
}

/// The id of the empty blob (`git hash-object /dev/null`).
const EMPTY_BLOB: [u8; 20] = [
    0xe6, 0x9d, 0xe2, 0x9b, 0xb2, 0xd1, 0xd6, 0x43, 0x4b, 0x8b, 0x29, 0xae, 0x77, 0x5a, 0xd8, 0xc2, 0xe4, 0x8c, 0x53,
    0x91,
];

fn libc_trunc() -> i32 {
    rustix::fs::OFlags::TRUNC.bits() as i32
}
