//! The writes of a writable mount, on its overlay (`layered.rs`): create,
//! mknod, mkdir, symlink, link, unlink, rmdir, rename, setattr (chmod,
//! chown, truncate, utimens), write, fsync and fsyncdir.
//!
//! - The first write, truncate or chmod of a base file copies it up: its
//!   blob (hydrated first if it is not local, off this thread) becomes the
//!   overlay's file under the same inode number, so descriptors opened
//!   before read the new bytes (the kernel's page cache of the inode is
//!   the same). A truncate to nothing copies up no bytes.
//! - A name removed from the base tree leaves a whiteout; a base
//!   directory moved keeps its inode and its base children.
//! - fsync of a file syncs its bytes, then the overlay (every change so
//!   far, in one commit); fsync of a directory syncs the overlay.
//!
//! It never blocks a FUSE thread on the node (copy-up's hydration replies
//! from a completion thread) and never writes to the base.

use super::layered::Layered;
use super::state::Shared;
use crate::answer::{AttrAnswer, CreateAnswer, EntryAnswer, Fail, WriteAnswer};
use crate::limits::*;
use crate::table::Table;
use fuser::*;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use trove_engine::hydrate::blobstore::LocalBlob;
use trove_engine::overlay::{Inode, Kind, Made};
use trove_engine::tree::index::Kind as BaseKind;

/// The table and the overlay, or the reply's error (EROFS on a read-only
/// mount).
macro_rules! writable {
    ($shared:expr, $reply:expr) => {
        match $shared.writable() {
            Ok(found) => found,
            Err(e) => return $reply.error(e),
        }
    };
}

/// The value, or the reply's error.
macro_rules! or_reply {
    ($e:expr, $reply:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $reply.error(e),
        }
    };
}

/// What a setattr sets (None: left as it is).
pub(crate) struct NewAttrs {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
}

/// Who asks: the owner of what they make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    pub uid: u32,
    pub gid: u32,
}

impl Shared {
    fn writable(&self) -> Result<(&Arc<Table>, &Arc<Layered>), Errno> {
        let t = self.table()?;
        let l = self.layered.as_ref().ok_or(Errno::EROFS)?;
        Ok((t, l))
    }

    /// Makes `name` in `parent`: a file, directory, symlink, fifo or socket.
    pub(crate) fn make(
        self: &Arc<Self>,
        parent: u64,
        name: &[u8],
        made: Made<'_>,
        mode: u32,
        caller: Caller,
    ) -> Result<FileAttr, Errno> {
        let (t, l) = self.writable()?;
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if l.resolve(t, parent, name)?.is_some() {
            return Err(Errno::EEXIST);
        }
        let up = self.attr_of(t, parent)?.0;
        if up.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        // A set-group-ID directory gives what is made in it its group
        // (and a directory its set-group-ID bit), as ext4 does.
        let mut mode = mode & 0o7777;
        let mut owner = (caller.uid, caller.gid);
        if up.perm & 0o2000 != 0 {
            owner.1 = up.gid;
            if matches!(made, Made::Dir) {
                mode |= 0o2000;
            }
        }
        let kind = match made {
            Made::File => Kind::Base(BaseKind::File),
            Made::Dir => Kind::Base(BaseKind::Dir),
            Made::Symlink(_) => Kind::Base(BaseKind::Symlink),
            Made::Fifo => Kind::Fifo,
            Made::Socket => Kind::Socket,
        };
        let ns = &l.overlay.namespace;
        let ino =
            ns.create(parent, name, &Inode { kind, mode, links: 1, target: Vec::new() }).map_err(|e| l.failed(e))?;
        if let Err(e) = l.overlay.contents.make(ino, made, mode, owner) {
            tracing::warn!("making the overlay's object of a new entry: {e}");
            let _ = ns.remove(parent, name, ino, l.in_base(t, parent, name));
            return Err(io_errno(&e));
        }
        l.touch(parent, matches!(made, Made::Dir));
        self.dir_changed(l, parent);
        l.attr(t, ino)
    }

    pub(crate) fn create(
        self: &Arc<Self>,
        parent: u64,
        name: &[u8],
        mode: u32,
        caller: Caller,
        reply: impl CreateAnswer,
    ) {
        match self.make(parent, name, Made::File, mode, caller) {
            // No handle: reads and writes name the inode (as on the
            // kernel read path, where the kernel opens files itself).
            Ok(attr) => reply.created(&HELD_TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    /// mknod: a fifo, a socket or a regular file; a device node is refused
    /// (the mount is nodev, and the overlay keeps none).
    pub(crate) fn mknod(
        self: &Arc<Self>,
        parent: u64,
        name: &[u8],
        mode: u32,
        caller: Caller,
        reply: impl EntryAnswer,
    ) {
        use rustix::fs::FileType as T;
        if name.len() > NAME_MAX {
            return reply.error(Errno::ENAMETOOLONG);
        }
        let made = match T::from_raw_mode(mode) {
            T::Fifo => Made::Fifo,
            T::Socket => Made::Socket,
            T::RegularFile => Made::File,
            _ => return reply.error(Errno::EPERM),
        };
        self.reply_made(self.make(parent, name, made, mode, caller), reply)
    }

    pub(crate) fn mkdir(
        self: &Arc<Self>,
        parent: u64,
        name: &[u8],
        mode: u32,
        caller: Caller,
        reply: impl EntryAnswer,
    ) {
        self.reply_made(self.make(parent, name, Made::Dir, mode, caller), reply)
    }

    pub(crate) fn symlink(
        self: &Arc<Self>,
        parent: u64,
        name: &[u8],
        target: &[u8],
        caller: Caller,
        reply: impl EntryAnswer,
    ) {
        if target.len() as u64 > SYMLINK_MAX_BYTES {
            return reply.error(Errno::ENAMETOOLONG);
        }
        self.reply_made(self.make(parent, name, Made::Symlink(target), 0o777, caller), reply)
    }

    pub(crate) fn reply_made(&self, made: Result<FileAttr, Errno>, reply: impl EntryAnswer) {
        match made {
            Ok(attr) => reply.entry(&HELD_TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    /// A second name for `ino`. A base file the overlay does not hold
    /// yet is refused (EPERM): linking it would copy it up.
    pub(crate) fn link(&self, ino: u64, parent: u64, name: &[u8], reply: impl EntryAnswer) {
        let (t, l) = writable!(self, reply);
        if name.len() > NAME_MAX {
            return reply.error(Errno::ENAMETOOLONG);
        }
        if !l.held(ino) {
            return reply.error(Errno::EPERM);
        }
        if or_reply!(l.resolve(t, parent, name), reply).is_some() {
            return reply.error(Errno::EEXIST);
        }
        if let Err(e) = l.overlay.namespace.link(parent, name, ino) {
            return reply.error(l.failed(e));
        }
        l.touch(parent, false);
        self.dir_changed(l, parent);
        touch_ctime(l, ino);
        match l.attr(t, ino) {
            Ok(attr) => reply.entry(&HELD_TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    /// unlink (`dir` false) or rmdir (`dir` true).
    pub(crate) fn remove(&self, parent: u64, name: &[u8], dir: bool) -> Result<(), Errno> {
        let (t, l) = self.writable()?;
        let found = l.resolve(t, parent, name)?.ok_or(Errno::ENOENT)?;
        match (dir, found.is_dir()) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            (true, true) if !l.list(t, found.ino)?.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        let gone =
            l.overlay.namespace.remove(parent, name, found.ino, l.in_base(t, parent, name)).map_err(|e| l.failed(e))?;
        match gone {
            Some(ino) => l.unlinked(ino, found.is_regular())?,
            None if l.held(found.ino) => touch_ctime(l, found.ino),
            None => {}
        }
        l.touch(parent, found.is_dir());
        self.dir_changed(l, parent);
        Ok(())
    }

    pub(crate) fn rename(&self, from: (u64, &[u8]), to: (u64, &[u8]), flags: RenameFlags) -> Result<(), Errno> {
        let (t, l) = self.writable()?;
        if to.1.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let src = l.resolve(t, from.0, from.1)?.ok_or(Errno::ENOENT)?;
        let dst = l.resolve(t, to.0, to.1)?;
        let ns = &l.overlay.namespace;
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            let dst = dst.ok_or(Errno::ENOENT)?;
            ns.exchange((from.0, from.1, src.ino, src.kind), (to.0, to.1, dst.ino, dst.kind))
                .map_err(|e| l.failed(e))?;
        } else {
            if let Some(d) = dst {
                if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                    return Err(Errno::EEXIST);
                }
                if d.ino == src.ino {
                    // Two names of one file: POSIX says do nothing.
                    return Ok(());
                }
                match (src.is_dir(), d.is_dir()) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    (true, true) if !l.list(t, d.ino)?.is_empty() => return Err(Errno::ENOTEMPTY),
                    _ => {}
                }
            }
            let gone = ns
                .rename(from, to, (src.ino, src.kind), dst.map(|d| d.ino), l.in_base(t, from.0, from.1))
                .map_err(|e| l.failed(e))?;
            match (gone, dst) {
                (Some(ino), Some(d)) => l.unlinked(ino, d.is_regular())?,
                // The replaced inode keeps other names: its ctime moves.
                (None, Some(d)) if l.held(d.ino) => touch_ctime(l, d.ino),
                _ => {}
            }
        }
        let moved_dir = src.is_dir() || dst.is_some_and(|d| d.is_dir());
        for dir in [from.0, to.0] {
            l.touch(dir, moved_dir);
            self.dir_changed(l, dir);
        }
        if l.held(src.ino) {
            touch_ctime(l, src.ino);
        }
        Ok(())
    }

    /// chmod, chown, truncate, utimens: on the overlay's object, the base
    /// entry copied up first.
    pub(crate) fn setattr<R: AttrAnswer>(self: &Arc<Self>, ino: u64, new: NewAttrs, reply: R) {
        let NewAttrs { mode, uid, gid, size, atime, mtime } = new;
        let (t, l) = writable!(self, reply);
        let t = t.clone();
        let table = t.clone();
        let apply = move |s: &Shared, reply: R| {
            let t = &table;
            let Some(l) = s.layered.as_ref() else { return reply.error(Errno::EROFS) };
            let path = l.overlay.contents.path(ino);
            let done = (|| -> Result<(), Errno> {
                let kind = l.attr(t, ino)?.kind;
                if let Some(size) = size {
                    if kind == FileType::Directory {
                        return Err(Errno::EISDIR);
                    }
                    l.file(ino)?.set_len(size).map_err(|e| io_errno(&e))?;
                }
                if uid.is_some() || gid.is_some() {
                    rustix::fs::chownat(
                        rustix::fs::CWD,
                        &path,
                        uid.map(rustix::fs::Uid::from_raw),
                        gid.map(rustix::fs::Gid::from_raw),
                        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(rustix_errno)?;
                }
                if let Some(mode) = mode.filter(|_| kind != FileType::Symlink) {
                    rustix::fs::chmod(&path, rustix::fs::Mode::from_raw_mode(mode & 0o7777)).map_err(rustix_errno)?;
                }
                if atime.is_some() || mtime.is_some() {
                    let ts =
                        rustix::fs::Timestamps { last_access: timespec(atime), last_modification: timespec(mtime) };
                    rustix::fs::utimensat(rustix::fs::CWD, &path, &ts, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(rustix_errno)?;
                }
                Ok(())
            })();
            match done.and_then(|()| l.attr(t, ino)) {
                Ok(attr) => reply.attr(&HELD_TTL, &attr),
                Err(e) => reply.error(e),
            }
        };
        if l.held(ino) {
            return apply(self, reply);
        }
        let Some(n) = t.node(ino) else { return reply.error(Errno::ENOENT) };
        match n.kind {
            BaseKind::File | BaseKind::Executable => self.copied_up(&t, ino, size == Some(0), reply, apply),
            _ => match self.copy_up(&t, ino, None) {
                Ok(()) => apply(self, reply),
                Err(e) => reply.error(e),
            },
        }
    }

    pub(crate) fn write<R: WriteAnswer>(self: &Arc<Self>, ino: u64, offset: u64, data: &[u8], reply: R) {
        let (t, l) = writable!(self, reply);
        let write = move |s: &Shared, data: &[u8], reply: R| {
            let Some(l) = s.layered.as_ref() else { return reply.error(Errno::EROFS) };
            match l.file(ino).and_then(|f| f.write_all_at(data, offset).map_err(|e| io_errno(&e))) {
                Ok(()) => reply.written(data.len() as u32),
                Err(e) => reply.error(e),
            }
        };
        if l.held(ino) {
            return write(self, data, reply);
        }
        // The first write of a base file: copied up, then written (the
        // bytes are the request's: kept until then).
        let data = data.to_vec();
        let t2 = t.clone();
        self.copied_up(&t2, ino, false, reply, move |s, reply| write(s, &data, reply));
    }

    /// fsync: the file's bytes, then every change of the overlay so far.
    pub(crate) fn fsync(&self, ino: u64, datasync: bool) -> Result<(), Errno> {
        let (t, l) = self.writable()?;
        if !(l.held(ino) && l.attr(t, ino)?.kind == FileType::RegularFile) {
            return l.overlay.sync().map_err(|e| l.failed(e));
        }
        // The file's bytes and the overlay's log are synced at once: on
        // one journal the two flushes may share a commit.
        let f = l.file(ino)?;
        std::thread::scope(|s| {
            let bytes = s.spawn(|| if datasync { f.sync_data() } else { f.sync_all() });
            let names = l.overlay.sync().map_err(|e| l.failed(e));
            let bytes = bytes.join().unwrap_or_else(|_| Err(std::io::ErrorKind::Other.into()));
            bytes.map_err(|e| io_errno(&e)).and(names)
        })
    }

    /// fsync of a directory: every change of the overlay so far (creates,
    /// renames and unlinks among them).
    pub(crate) fn fsyncdir(&self) -> Result<(), Errno> {
        let (_, l) = self.writable()?;
        l.overlay.sync().map_err(|e| l.failed(e))
    }

    /// Runs `then` once base file `ino` is held: copied up now if its bytes
    /// are not needed (`empty`) or its blob is local, else once it landed
    /// (on a completion thread).
    fn copied_up<R: Fail>(
        self: &Arc<Self>,
        t: &Arc<Table>,
        ino: u64,
        empty: bool,
        reply: R,
        then: impl FnOnce(&Shared, R) + Send + 'static,
    ) {
        let Some(n) = t.node(ino) else { return reply.error(Errno::ENOENT) };
        if empty || n.size == 0 {
            return match self.copy_up(t, ino, None) {
                Ok(()) => then(self, reply),
                Err(e) => reply.error(e),
            };
        }
        let t2 = t.clone();
        self.with_blob(t, ino, reply, move |s, blob, reply| match s.copy_up(&t2, ino, Some(blob)) {
            Ok(()) => then(s, reply),
            Err(e) => reply.error(e),
        });
    }

    /// Copies base entry `ino` up, once (two first writes racing copy it
    /// once): a file from `blob` (None: empty), a directory, symlink or
    /// submodule as its attributes alone (a chmod, chown or utimens of it).
    /// The object keeps the base's mode and the commit's times.
    fn copy_up(&self, t: &Table, ino: u64, blob: Option<LocalBlob>) -> Result<(), Errno> {
        let l = self.layered.as_ref().ok_or(Errno::EROFS)?;
        let _one = l.copying.lock().unwrap_or_else(|p| p.into_inner());
        if l.held(ino) {
            return Ok(());
        }
        let n = t.node(ino).ok_or(Errno::ENOENT)?;
        let attr = self.attr(t, ino, n);
        let mode = u32::from(attr.perm);
        let contents = &l.overlay.contents;
        let copied = match n.kind {
            BaseKind::File | BaseKind::Executable => contents.copy_up(ino, blob.as_ref(), mode, t.time),
            kind => {
                let made = match kind {
                    BaseKind::Symlink => Made::Symlink(t.target(ino).ok_or(Errno::EIO)?),
                    _ => Made::Dir,
                };
                contents.make(ino, made, mode, (attr.uid, attr.gid)).and_then(|()| {
                    let ts = rustix::fs::Timestamps { last_access: at(t.time), last_modification: at(t.time) };
                    let nofollow = rustix::fs::AtFlags::SYMLINK_NOFOLLOW;
                    Ok(rustix::fs::utimensat(rustix::fs::CWD, contents.path(ino), &ts, nofollow)?)
                })
            }
        };
        copied.map_err(|e| {
            self.counters.error(format!("{}: copying it up: {e}", Shared::path(t, ino)));
            io_errno(&e)
        })?;
        l.overlay
            .namespace
            .set_inode(ino, &Inode { kind: Kind::Base(n.kind), mode, links: 1, target: Vec::new() })
            .map_err(|e| l.failed(e))?;
        l.hold_base(ino);
        self.inode_files.forget(ino);
        Ok(())
    }

    /// A name in `dir` changed: a held directory's mtime and ctime move,
    /// as on ext4 (a base directory keeps the commit's times).
    fn dir_changed(&self, l: &Layered, dir: u64) {
        if l.held(dir) {
            let ts = rustix::fs::Timestamps { last_access: omit(), last_modification: now() };
            let _ = rustix::fs::utimensat(
                rustix::fs::CWD,
                l.overlay.contents.path(dir),
                &ts,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            );
        }
    }
}

/// A link came or went: the inode's ctime moves (an owner change to
/// nobody else moves only the ctime).
fn touch_ctime(l: &Layered, ino: u64) {
    let _ = rustix::fs::chownat(
        rustix::fs::CWD,
        l.overlay.contents.path(ino),
        None,
        None,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    );
}

fn timespec(t: Option<TimeOrNow>) -> rustix::fs::Timespec {
    match t {
        None => omit(),
        Some(TimeOrNow::Now) => now(),
        Some(TimeOrNow::SpecificTime(t)) => at(t),
    }
}

fn at(t: std::time::SystemTime) -> rustix::fs::Timespec {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => rustix::fs::Timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos().into() },
        Err(e) => {
            let d = e.duration();
            let (mut s, mut ns) = (-(d.as_secs() as i64), -i64::from(d.subsec_nanos()));
            if ns < 0 {
                s -= 1;
                ns += 1_000_000_000;
            }
            rustix::fs::Timespec { tv_sec: s, tv_nsec: ns as _ }
        }
    }
}

fn omit() -> rustix::fs::Timespec {
    rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT }
}

fn now() -> rustix::fs::Timespec {
    rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_NOW }
}

pub(super) fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(0))
}

fn rustix_errno(e: rustix::io::Errno) -> Errno {
    Errno::from_i32(e.raw_os_error())
}
