//! The tree a writable mount shows: its base table with its overlay
//! (`trove_engine::overlay`) over it. What a name is, what an inode's
//! attributes are and what a directory lists, merged; and the files the
//! overlay holds, kept open for reads and writes.
//!
//! - A name is the overlay's if it says anything of it (an entry or a
//!   whiteout), else the base tree's. Only directories the overlay ever
//!   named something in are asked (`touched`), so a lookup elsewhere costs
//!   what it did read-only.
//! - An inode is the overlay's (held) if the overlay made it (numbers from
//!   OVERLAY_INO_BASE) or copied it up (its base number, in `held_base`);
//!   its attributes are its object's in the overlay's `files/`. Every
//!   other inode is the base table's, attributes and all.
//! - An unlinked file stays readable and writable through this daemon
//!   until the kernel forgets its inode: its descriptor is kept
//!   (`orphans`) and its object removed at once, so a crash leaves
//!   nothing of it behind.
//!
//! It never fetches a blob (copy-up gets the base bytes from its caller)
//! and never touches FUSE.

use crate::table::{Node, Table};
use fuser::{Errno, FileAttr, FileType, INodeNo};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use trove_engine::overlay::{Change, Kind, Overlay, OVERLAY_INO_BASE};
use trove_engine::tree::index::Kind as BaseKind;

/// Files of held inodes kept open for reads and writes; past it the table
/// starts over (a file is one open(2) away).
const HELD_FILES_MAX: usize = 1024;

/// What a name in the merged tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub ino: u64,
    pub kind: Kind,
}

impl Found {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Base(BaseKind::Dir | BaseKind::Submodule))
    }

    pub fn is_regular(&self) -> bool {
        matches!(self.kind, Kind::Base(BaseKind::File | BaseKind::Executable))
    }
}

/// See the module doc.
pub(crate) struct Layered {
    pub overlay: Overlay,
    /// Directories the overlay has said something of (a superset).
    touched: RwLock<HashSet<u64>>,
    /// Whether `touched` has any base directory: until then a listing or
    /// lookup of the base tree takes no lock.
    any_touched: AtomicBool,
    /// Base inodes the overlay holds (copied up).
    held_base: RwLock<HashSet<u64>>,
    any_held_base: AtomicBool,
    files: Mutex<HashMap<u64, Arc<File>>>,
    orphans: Mutex<HashMap<u64, Arc<File>>>,
    /// Subdirectories of each changed directory the overlay has counted
    /// (its link count), forgotten when a directory in it comes, goes or
    /// moves: a stat of a directory being filled with files (an untar)
    /// must not list it each time (that made an untar quadratic in the
    /// size of its directories: 38% of the daemon's time on git's tree).
    subdirs: Mutex<HashMap<u64, u32>>,
    /// Moves with every such change, so a count made across one is not kept.
    changes: std::sync::atomic::AtomicU64,
    /// Held by a copy-up in progress: one at a time, so two first writes
    /// to a base file copy it once.
    pub copying: Mutex<()>,
}

impl Layered {
    pub fn new(overlay: Overlay) -> Result<Layered, trove_engine::overlay::OverlayError> {
        let (dirs, inodes) = overlay.namespace.touched()?;
        let held_base: HashSet<u64> = inodes.into_iter().filter(|&i| i < OVERLAY_INO_BASE).collect();
        Ok(Layered {
            overlay,
            any_touched: AtomicBool::new(!dirs.is_empty()),
            touched: RwLock::new(dirs.into_iter().collect()),
            any_held_base: AtomicBool::new(!held_base.is_empty()),
            held_base: RwLock::new(held_base),
            files: Mutex::default(),
            orphans: Mutex::default(),
            subdirs: Mutex::default(),
            changes: std::sync::atomic::AtomicU64::new(0),
            copying: Mutex::default(),
        })
    }

    /// Whether the overlay holds inode `ino` (made or copied up).
    pub fn held(&self, ino: u64) -> bool {
        ino >= OVERLAY_INO_BASE
            || (self.any_held_base.load(Ordering::Acquire)
                && self.held_base.read().unwrap_or_else(|p| p.into_inner()).contains(&ino))
    }

    /// Marks base inode `ino` held (it was copied up).
    pub fn hold_base(&self, ino: u64) {
        self.held_base.write().unwrap_or_else(|p| p.into_inner()).insert(ino);
        self.any_held_base.store(true, Ordering::Release);
    }

    /// Subdirectories of directory `dir` in the merged tree.
    pub fn subdirs(&self, t: &Table, dir: u64) -> Result<u32, Errno> {
        if let Some(&n) = self.subdirs.lock().unwrap_or_else(|p| p.into_inner()).get(&dir) {
            return Ok(n);
        }
        let before = self.changes.load(Ordering::Acquire);
        let n = self.list(t, dir)?.iter().filter(|(_, f)| f.is_dir()).count() as u32;
        let mut counted = self.subdirs.lock().unwrap_or_else(|p| p.into_inner());
        if self.changes.load(Ordering::Acquire) == before {
            counted.insert(dir, n);
        }
        Ok(n)
    }

    /// Marks directory `dir` as one the overlay names something in (a
    /// name in it changed). `subdirs_changed`: the name was a directory's
    /// (before or after), so its count of subdirectories is done again.
    pub fn touch(&self, dir: u64, subdirs_changed: bool) {
        if subdirs_changed {
            let mut counted = self.subdirs.lock().unwrap_or_else(|p| p.into_inner());
            self.changes.fetch_add(1, Ordering::AcqRel);
            counted.remove(&dir);
        }
        if !self.is_touched(dir) {
            self.touched.write().unwrap_or_else(|p| p.into_inner()).insert(dir);
            self.any_touched.store(true, Ordering::Release);
        }
    }

    fn is_touched(&self, dir: u64) -> bool {
        dir >= OVERLAY_INO_BASE
            || (self.any_touched.load(Ordering::Acquire)
                && self.touched.read().unwrap_or_else(|p| p.into_inner()).contains(&dir))
    }

    /// What `name` in directory `parent` is, if anything.
    pub fn resolve(&self, t: &Table, parent: u64, name: &[u8]) -> Result<Option<Found>, Errno> {
        if self.is_touched(parent) {
            match self.overlay.namespace.lookup(parent, name).map_err(|e| self.failed(e))? {
                Some(Change::Whiteout) => return Ok(None),
                Some(Change::Entry { ino, kind }) => return Ok(Some(Found { ino, kind })),
                None => {}
            }
        }
        Ok(base_child(t, parent, name))
    }

    /// Whether the base tree has `name` in `dir` (a removal there leaves a
    /// whiteout).
    pub fn in_base(&self, t: &Table, dir: u64, name: &[u8]) -> bool {
        base_child(t, dir, name).is_some()
    }

    /// The entries of directory `dir` in the merged tree, in name order.
    pub fn list(&self, t: &Table, dir: u64) -> Result<Vec<(Vec<u8>, Found)>, Errno> {
        let mut all: BTreeMap<Vec<u8>, Found> = BTreeMap::new();
        if let Some(n) = t.node(dir).filter(|n| n.kind == BaseKind::Dir) {
            for i in t.children(n) {
                let c = t.node(i).expect("children are nodes");
                all.insert(t.name(c).to_vec(), Found { ino: i, kind: Kind::Base(c.kind) });
            }
        }
        if self.is_touched(dir) {
            for (name, change) in self.overlay.namespace.list(dir).map_err(|e| self.failed(e))? {
                match change {
                    Change::Whiteout => all.remove(&name),
                    Change::Entry { ino, kind } => all.insert(name, Found { ino, kind }),
                };
            }
        }
        Ok(all.into_iter().collect())
    }

    /// Whether `dir`'s listing is the base table's alone.
    pub fn lists_base_only(&self, dir: u64) -> bool {
        !self.is_touched(dir)
    }

    /// The open file of held inode `ino` (a regular file).
    pub fn file(&self, ino: u64) -> Result<Arc<File>, Errno> {
        if let Some(f) = self.orphans.lock().unwrap_or_else(|p| p.into_inner()).get(&ino) {
            return Ok(f.clone());
        }
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = files.get(&ino) {
            return Ok(f.clone());
        }
        let path = self.overlay.contents.path(ino);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .map_err(|e| {
                tracing::warn!("opening the overlay's file {}: {e}", path.display());
                Errno::from_i32(e.raw_os_error().unwrap_or(0))
            })?;
        if files.len() >= HELD_FILES_MAX {
            files.clear();
        }
        let f = Arc::new(f);
        files.insert(ino, f.clone());
        Ok(f)
    }

    /// Inode `ino` lost its last name: a regular file stays readable and
    /// writable through its descriptor until the kernel forgets it
    /// ([`Layered::forget`]); its object goes now.
    pub fn unlinked(&self, ino: u64, regular: bool) -> Result<(), Errno> {
        if regular {
            let f = self.file(ino)?;
            self.orphans.lock().unwrap_or_else(|p| p.into_inner()).insert(ino, f);
        }
        self.files.lock().unwrap_or_else(|p| p.into_inner()).remove(&ino);
        self.overlay.contents.remove(ino).map_err(|e| {
            tracing::warn!("removing the overlay's object of inode {ino}: {e}");
            Errno::EIO
        })
    }

    /// The kernel forgot inode `ino`: an unlinked file's last descriptor
    /// goes.
    pub fn forget(&self, ino: u64) {
        self.orphans.lock().unwrap_or_else(|p| p.into_inner()).remove(&ino);
    }

    /// The attributes of held inode `ino`, from its object (an unlinked
    /// file's from its descriptor, with no links).
    pub fn attr(&self, t: &Table, ino: u64) -> Result<FileAttr, Errno> {
        let orphan = self.orphans.lock().unwrap_or_else(|p| p.into_inner()).get(&ino).cloned();
        let st = match &orphan {
            Some(f) => rustix::fs::fstat(&**f),
            None => rustix::fs::statat(
                rustix::fs::CWD,
                self.overlay.contents.path(ino),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            ),
        }
        .map_err(|e| {
            if e == rustix::io::Errno::NOENT {
                Errno::ENOENT
            } else {
                Errno::from_i32(e.raw_os_error())
            }
        })?;
        let kind = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
            rustix::fs::FileType::Directory => FileType::Directory,
            rustix::fs::FileType::Symlink => FileType::Symlink,
            rustix::fs::FileType::Fifo => FileType::NamedPipe,
            rustix::fs::FileType::Socket => FileType::Socket,
            _ => FileType::RegularFile,
        };
        let nlink = if orphan.is_some() {
            0
        } else if kind == FileType::Directory {
            2 + self.subdirs(t, ino)?
        } else {
            match self.overlay.namespace.inode(ino).map_err(|e| self.failed(e))? {
                Some(i) => i.links,
                None => 1,
            }
        };
        let time = |s: i64, ns: i64| {
            let at = std::time::Duration::new(s.unsigned_abs(), ns.clamp(0, 999_999_999) as u32);
            if s >= 0 {
                std::time::UNIX_EPOCH + at
            } else {
                std::time::UNIX_EPOCH - at
            }
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            atime: time(st.st_atime, st.st_atime_nsec as i64),
            mtime: time(st.st_mtime, st.st_mtime_nsec as i64),
            ctime: time(st.st_ctime, st.st_ctime_nsec as i64),
            crtime: time(st.st_ctime, st.st_ctime_nsec as i64),
            kind,
            perm: (st.st_mode & 0o7777) as u16,
            nlink,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    /// A store error, said, as the errno a caller gets.
    pub fn failed(&self, e: trove_engine::overlay::OverlayError) -> Errno {
        tracing::warn!("{e}");
        Errno::EIO
    }
}

/// Base inode named `name` in base directory `dir`.
fn base_child(t: &Table, dir: u64, name: &[u8]) -> Option<Found> {
    let ino = t.lookup(dir, name)?;
    let n: &Node = t.node(ino)?;
    Some(Found { ino, kind: Kind::Base(n.kind) })
}
