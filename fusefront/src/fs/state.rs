//! What every operation of the mount's filesystem shares: the readiness
//! gate, the hydrator, open handles and counters; and the metadata read
//! from the inode table alone (attributes, paths, listings). Nothing here
//! fetches a blob.

use crate::gate::Gate;
use crate::handles::{Handles, InodeFiles};
use crate::options::ReadPath;
use crate::table::{Node, Table};
use fuser::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use trove_engine::hydrate::{Converter, Hydrator};
use trove_engine::tree::index::Kind;

/// A job for a completion thread.
pub type Job = Box<dyn FnOnce() + Send>;

/// What the mount reports of itself (`trove mounts`).
#[derive(Default)]
pub struct MountCounters {
    pub errors: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    pub passthrough: AtomicBool,
    /// The kernel took FUSE over io_uring in INIT (the queues may still
    /// fail to register, and the mount then stays on /dev/fuse).
    pub ring_offered: AtomicBool,
    /// The node's recoveries (`NodeHealth::recoveries`) the record has
    /// seen: a new one clears `last_error`.
    pub recoveries_seen: AtomicU64,
}

impl MountCounters {
    /// The read path in effect for one `asked` for, as `trove mounts`
    /// shows it: passthrough the kernel refused is `daemon`.
    pub fn read_path(&self, asked: ReadPath) -> &'static str {
        match asked {
            ReadPath::Passthrough if !self.passthrough.load(Ordering::Relaxed) => ReadPath::Daemon.name(),
            _ => asked.name(),
        }
    }

    pub(super) fn error(&self, what: String) {
        tracing::warn!("{what}");
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
    }
}

/// How a mount's filesystem is set up.
pub struct FsOptions {
    pub prefetch: bool,
    /// The data dir, whose free space `statfs` (df) reports.
    pub data_dir: std::path::PathBuf,
    /// How files are read (`ReadPath`): on `Kernel` FUSE open is answered
    /// ENOSYS, so the kernel opens files itself and keeps their pages;
    /// `Passthrough` asks the kernel for passthrough (it may refuse).
    pub read_path: ReadPath,
    /// Ask the kernel for FUSE over io_uring in INIT (queues prepared).
    pub ring: bool,
}

pub(crate) struct Shared {
    pub(super) gate: Arc<Gate>,
    pub(super) hydrator: Arc<Hydrator>,
    pub(super) converter: Converter,
    pub(super) handles: Handles,
    /// Files of inodes read without a FUSE open.
    pub(super) inode_files: InodeFiles,
    pub(super) completions: crossbeam_channel::Sender<Job>,
    pub(super) counters: Arc<MountCounters>,
    pub(super) options: FsOptions,
    /// The order a tree walk reads files in (made on the first prefetch),
    /// and how far ahead of each reader prefetch has queued.
    pub(super) walk: std::sync::OnceLock<crate::walk_order::WalkOrder>,
    pub(super) prefetched: Mutex<super::cursors::Cursors>,
    pub(super) uid: u32,
    pub(super) gid: u32,
    /// The overlay of a writable mount (None: read-only).
    pub(super) layered: Option<Arc<super::layered::Layered>>,
}

impl Shared {
    pub(super) fn table(&self) -> Result<&Arc<Table>, Errno> {
        self.gate.pass().map_err(|reason| {
            self.counters.error(format!("not ready: {reason}"));
            Errno::EIO
        })
    }

    /// Every entry's times: the commit's, so they stay put across
    /// remounts (a `make` after one rebuilds nothing).
    pub(super) fn attr(&self, table: &Table, ino: u64, node: &Node) -> FileAttr {
        let time = table.time;
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
            atime: time,
            mtime: time,
            ctime: time,
            crtime: time,
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

    /// The attributes of inode `ino` in the merged tree, and how long the
    /// kernel may keep them: the overlay's object's for what it holds;
    /// else the base table's (a base directory the overlay changed counts
    /// its subdirectories anew, and is asked again each time).
    pub(super) fn attr_of(&self, t: &Table, ino: u64) -> Result<(FileAttr, std::time::Duration), Errno> {
        if let Some(l) = self.layered.as_ref() {
            if l.held(ino) {
                return Ok((l.attr(t, ino)?, crate::limits::HELD_TTL));
            }
            let n = t.node(ino).ok_or(Errno::ENOENT)?;
            let mut attr = self.attr(t, ino, n);
            if matches!(n.kind, Kind::Dir | Kind::Submodule) && !l.lists_base_only(ino) {
                attr.nlink = 2 + l.subdirs(t, ino)?;
                return Ok((attr, crate::limits::HELD_TTL));
            }
            return Ok((attr, crate::limits::BASE_TREE_TTL));
        }
        let n = t.node(ino).ok_or(Errno::ENOENT)?;
        Ok((self.attr(t, ino, n), crate::limits::BASE_TREE_TTL))
    }

    /// `ino`'s path in the tree, for messages.
    pub(super) fn path(table: &Table, ino: u64) -> String {
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

    /// The table and directory `ino` to list. A listing never fetches:
    /// ls, find and du read metadata only, and prefetch follows reads
    /// (opens.rs), not listings.
    pub(super) fn dir_to_list(&self, ino: u64) -> Result<(&Arc<Table>, &Node), Errno> {
        let t = self.table()?;
        let n = t.node(ino).ok_or(Errno::ENOENT)?;
        Ok((t, n))
    }

    /// The entries of directory `ino` from `offset`: (ino, offset, kind, name).
    pub(super) fn listing<'t>(
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

pub(super) fn kind_of(node: &Node) -> FileType {
    match node.kind {
        Kind::Dir | Kind::Submodule => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::File | Kind::Executable => FileType::RegularFile,
    }
}

/// What an entry of `kind` is to the kernel.
pub(super) fn file_type(kind: trove_engine::overlay::Kind) -> FileType {
    use trove_engine::overlay::Kind as O;
    match kind {
        O::Base(Kind::Dir | Kind::Submodule) => FileType::Directory,
        O::Base(Kind::Symlink) => FileType::Symlink,
        O::Base(Kind::File | Kind::Executable) => FileType::RegularFile,
        O::Fifo => FileType::NamedPipe,
        O::Socket => FileType::Socket,
    }
}

pub(super) fn libc_trunc() -> i32 {
    rustix::fs::OFlags::TRUNC.bits() as i32
}
