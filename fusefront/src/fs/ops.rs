//! The kernel's operations on a mount, written against `answer`'s reply
//! traits so that both transports (fuser's `/dev/fuse` loop and the
//! io_uring queues) run this one code. Metadata comes from the table
//! alone; opens and first reads go to `opens.rs`.

use super::state::{file_type, kind_of, libc_trunc, Shared};
use crate::answer::*;
use crate::limits::*;
use crate::options::ReadPath;
use fuser::{Errno, FileType, FopenFlags, INodeNo};
use std::sync::Arc;
use trove_engine::tree::index::Kind;

/// `open(2)`'s access mode bits (O_ACCMODE): any but O_RDONLY (0) writes,
/// as does O_TRUNC (refused on a read-only mount).
const ACCESS_MODE: i32 = 0o3;
/// access(2)'s W_OK.
const W_OK: i32 = 2;

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
        match $table.node($ino) {
            Some(n) => n,
            None => return $reply.error(Errno::ENOENT),
        }
    };
}

impl Shared {
    pub(crate) fn lookup(&self, parent: u64, name: &[u8], reply: impl EntryAnswer) {
        let t = ready!(self, reply);
        if name.len() > NAME_MAX {
            return reply.error(Errno::ENAMETOOLONG);
        }
        let found = match &self.layered {
            Some(l) => match l.resolve(t, parent, name) {
                Ok(f) => f.map(|f| f.ino),
                Err(e) => return reply.error(e),
            },
            None => t.lookup(parent, name),
        };
        match found {
            Some(ino) => match self.attr_of(t, ino) {
                Ok((attr, ttl)) => reply.entry(&ttl, &attr),
                Err(e) => reply.error(e),
            },
            None if t.node(parent).is_some() || self.layered.as_ref().is_some_and(|l| l.held(parent)) => {
                // A negative entry (inode 0): a name appears only through
                // this kernel, which then drops it.
                let mut none = self.attr(t, 0, t.node(1).expect("root"));
                none.ino = INodeNo(0);
                reply.entry(&BASE_TREE_TTL, &none);
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    pub(crate) fn getattr(&self, ino: u64, reply: impl AttrAnswer) {
        let t = ready!(self, reply);
        match self.attr_of(t, ino) {
            Ok((attr, ttl)) => reply.attr(&ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    pub(crate) fn readlink(&self, ino: u64, reply: impl DataAnswer) {
        let t = ready!(self, reply);
        if let Some(l) = self.layered.as_ref().filter(|l| l.held(ino)) {
            return match rustix::fs::readlinkat(rustix::fs::CWD, l.overlay.contents.path(ino), Vec::new()) {
                Ok(target) => reply.data(target.as_bytes()),
                Err(rustix::io::Errno::INVAL) => reply.error(Errno::EINVAL),
                Err(e) => reply.error(Errno::from_i32(e.raw_os_error())),
            };
        }
        let n = node!(t, ino, reply);
        if n.kind != Kind::Symlink {
            return reply.error(Errno::EINVAL);
        }
        if n.size > SYMLINK_MAX_BYTES {
            self.counters.error(format!(
                "{}: a symlink target of {} bytes is over PATH_MAX",
                Shared::path(t, ino),
                n.size
            ));
            return reply.error(Errno::ENAMETOOLONG);
        }
        // The target rides in the tree index: readlink fetches nothing.
        match t.target(ino) {
            Some(target) if target.len() as u64 == n.size => reply.data(target),
            _ => {
                self.counters.error(format!("{}: the tree index has no target for this symlink", Shared::path(t, ino)));
                reply.error(Errno::EIO)
            }
        }
    }

    pub(crate) fn open(self: &Arc<Self>, ino: u64, flags: i32, reply: impl OpenAnswer) {
        let t = ready!(self, reply);
        let writes = flags & ACCESS_MODE != 0 || flags & libc_trunc() != 0;
        if writes && self.layered.is_none() {
            return reply.error(Errno::EROFS);
        }
        if self.options.read_path == ReadPath::Kernel {
            // From now on the kernel opens files itself, keeps their page
            // cache across opens and sends only reads (`read_inode`) and
            // writes (by inode).
            return reply.error(Errno::ENOSYS);
        }
        let held = self.layered.as_ref().is_some_and(|l| l.held(ino));
        if writes && self.handles.live_backing(ino).is_some() {
            // The kernel binds an inode to one passthrough backing file
            // while any open of it lives, and that file is the base blob:
            // a write must wait for those readers to close.
            return reply.error(Errno::ETXTBSY);
        }
        if held || writes {
            // Reads and writes name the inode: the overlay's file once it
            // holds one, the base blob until then (`read`).
            return match self.attr_of(t, ino) {
                Ok((a, _)) if a.kind == FileType::Directory => reply.error(Errno::EISDIR),
                Ok(_) => reply.opened(0, FopenFlags::FOPEN_KEEP_CACHE),
                Err(e) => reply.error(e),
            };
        }
        let n = node!(t, ino, reply);
        match n.kind {
            Kind::Dir | Kind::Submodule => return reply.error(Errno::EISDIR),
            Kind::Symlink => return reply.error(Errno::ELOOP),
            Kind::File | Kind::Executable => {}
        }
        if n.size == 0 {
            // The empty blob (the index decoder refused any other id).
            let fh = self.handles.insert(crate::handles::Open::Empty);
            return reply.opened(fh, FopenFlags::FOPEN_KEEP_CACHE);
        }
        // Open already: the kernel has its backing file (whatever became
        // of the blob in the cache since).
        if let Some(backing) = self.handles.live_backing(ino) {
            return self.reply_passthrough(backing, reply);
        }
        self.with_blob(t, ino, reply, move |s, file, reply| s.reply_open(ino, file, reply));
    }

    /// A read of `fh` (0: a read without a FUSE open, on the kernel path).
    pub(crate) fn read(self: &Arc<Self>, ino: u64, fh: u64, offset: u64, size: u32, reply: impl DataAnswer) {
        if fh == 0 || self.layered.as_ref().is_some_and(|l| l.held(ino)) {
            return self.read_inode(ino, offset, size, reply);
        }
        let file = match self.handles.served(fh) {
            None => return reply.error(Errno::EBADF),
            Some(Err(())) => return reply.data(&[]),
            Some(Ok(f)) => f,
        };
        reply.pread(&file, offset, size);
    }

    pub(crate) fn release(&self, fh: u64, reply: impl EmptyAnswer) {
        self.handles.release(fh);
        reply.ok();
    }

    pub(crate) fn opendir(&self, ino: u64, reply: impl OpenAnswer) {
        let t = ready!(self, reply);
        match self.attr_of(t, ino) {
            Ok((a, _)) if a.kind != FileType::Directory => reply.error(Errno::ENOTDIR),
            Ok(_) => reply.opened(0, FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    pub(crate) fn readdir(&self, ino: u64, offset: u64, mut reply: impl DirAnswer) {
        if let Some(merged) = self.merged_listing(ino, offset) {
            let entries = match merged {
                Ok(e) => e,
                Err(e) => return reply.error(e),
            };
            for (i, off, kind, name) in entries {
                if reply.add(i, off, kind, &name) {
                    break;
                }
            }
            return reply.ok();
        }
        let (t, n) = match self.dir_to_list(ino) {
            Ok(found) => found,
            Err(e) => return reply.error(e),
        };
        for (i, off, child, name) in self.listing(t, ino, n, offset) {
            if reply.add(i, off, kind_of(child), name) {
                break;
            }
        }
        reply.ok();
    }

    pub(crate) fn readdirplus(&self, ino: u64, offset: u64, mut reply: impl DirPlusAnswer) {
        if let Some(merged) = self.merged_listing(ino, offset) {
            let entries = match merged {
                Ok(e) => e,
                Err(e) => return reply.error(e),
            };
            let t = ready!(self, reply);
            for (i, off, _, name) in entries {
                let Ok((attr, ttl)) = self.attr_of(t, i) else { continue };
                if reply.add(off, &name, &ttl, &attr) {
                    break;
                }
            }
            return reply.ok();
        }
        let (t, n) = match self.dir_to_list(ino) {
            Ok(found) => found,
            Err(e) => return reply.error(e),
        };
        for (i, off, child, name) in self.listing(t, ino, n, offset) {
            // A base entry the overlay copied up has its attributes there,
            // a base directory it changed its links counted anew.
            let (attr, ttl) = match &self.layered {
                Some(l) if l.held(i) || !l.lists_base_only(i) => match self.attr_of(t, i) {
                    Ok(found) => found,
                    Err(_) => continue,
                },
                _ => (self.attr(t, i, child), BASE_TREE_TTL),
            };
            if reply.add(off, name, &ttl, &attr) {
                break;
            }
        }
        reply.ok();
    }

    /// The listing of a directory the overlay changed or made, from
    /// `offset`: (ino, offset, kind, name); None where the base table's
    /// own listing is the whole of it.
    #[allow(clippy::type_complexity)]
    fn merged_listing(&self, ino: u64, offset: u64) -> Option<Result<Vec<(u64, u64, FileType, Vec<u8>)>, Errno>> {
        let l = self.layered.as_ref()?;
        if l.lists_base_only(ino) {
            return None;
        }
        let listed = (|| {
            let t = self.table()?;
            let parent = match t.node(ino) {
                Some(n) if ino != 1 => u64::from(n.parent) + 1,
                _ => 1,
            };
            let dots = [(ino, FileType::Directory, b".".to_vec()), (parent, FileType::Directory, b"..".to_vec())];
            let kids = l.list(t, ino)?.into_iter().map(|(name, f)| (f.ino, file_type(f.kind), name));
            Ok(dots
                .into_iter()
                .chain(kids)
                .enumerate()
                .skip(offset as usize)
                .map(|(k, (i, kind, name))| (i, k as u64 + 1, kind, name))
                .collect())
        })();
        Some(listed)
    }

    /// df: the data dir's disk, where hydrated files (and, with writes,
    /// new ones) go; the tree's own bytes are not "used" space.
    pub(crate) fn statfs(&self, reply: impl StatfsAnswer) {
        match rustix::fs::statvfs(&self.options.data_dir) {
            Ok(v) => reply.statfs(&v),
            Err(e) => {
                self.counters.error(format!("statfs of the data dir {}: {e}", self.options.data_dir.display()));
                reply.error(Errno::EIO)
            }
        }
    }

    pub(crate) fn access(&self, ino: u64, mask: i32, reply: impl EmptyAnswer) {
        let t = ready!(self, reply);
        if let Err(e) = self.attr_of(t, ino) {
            return reply.error(e);
        }
        if mask & W_OK != 0 && self.layered.is_none() {
            return reply.error(Errno::EROFS);
        }
        reply.ok();
    }
}
