//! Creating entries relative to open directory fds, never following a
//! link: the stack of directories along the current path, and new files
//! that replace what an earlier entry of the same name left.

use crate::repo::archive::ArchiveError;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// This process's umask (from /proc, as reading it with umask(2) would
/// change it for every thread); 022 when it cannot be read.
pub(super) fn process_umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .unwrap_or(0o022)
}

/// Creates a new regular file with `mode` (the umask applies, as on a
/// checkout), replacing a non-directory an earlier entry left at the name.
pub(super) fn create(parent: &OwnedFd, name: &OsStr, mode: u32) -> Result<OwnedFd, Errno> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    replacing(parent, name, |p| rfs::openat(p, name, flags, Mode::from_raw_mode(mode)))
}

/// Runs `make`; when the name is taken by a file or link (a later entry of
/// the same name wins, as with tar), removes that and runs it once more.
/// A directory in the way is an error: the archive is inconsistent.
pub(super) fn replacing<T>(
    parent: &OwnedFd,
    name: &OsStr,
    make: impl Fn(&OwnedFd) -> Result<T, Errno>,
) -> Result<T, Errno> {
    match make(parent) {
        Err(Errno::EXIST) => {
            rfs::unlinkat(parent, name, AtFlags::empty())?;
            make(parent)
        }
        r => r,
    }
}

/// The directories along the path of the last entry, open, from the root
/// down: archives list a directory's entries together, so most entries
/// reuse the whole stack.
pub(super) struct Tree {
    pub(super) root: Arc<OwnedFd>,
    pub(super) names: Vec<OsString>,
    pub(super) fds: Vec<Arc<OwnedFd>>,
}

impl Tree {
    pub(super) fn open(dest: &Path) -> Result<Tree, ArchiveError> {
        let root = rfs::open(dest, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| ArchiveError::Io { path: dest.to_owned(), source: e.into() })?;
        Ok(Tree { root: Arc::new(root), names: Vec::new(), fds: Vec::new() })
    }

    /// The open directory `rel` (made if missing), with every component
    /// opened without following links.
    pub(super) fn dir(&mut self, rel: &Path, entry: &str) -> Result<Arc<OwnedFd>, ArchiveError> {
        let comps: Vec<&OsStr> = rel.iter().collect();
        let keep = self.names.iter().zip(&comps).take_while(|(a, b)| a.as_os_str() == **b).count();
        self.names.truncate(keep);
        self.fds.truncate(keep);
        for c in &comps[keep..] {
            let parent = self.fds.last().unwrap_or(&self.root);
            let fd = open_or_make_dir(&**parent, c, 0o777, entry)?;
            self.names.push(c.to_os_string());
            self.fds.push(Arc::new(fd));
        }
        Ok(self.fds.last().unwrap_or(&self.root).clone())
    }

    /// Makes the directory `rel` (fine if it is one already).
    pub(super) fn mkdir(&mut self, rel: &Path, mode: u32, entry: &str) -> Result<(), ArchiveError> {
        self.dir(rel, entry).map(|_| ())?;
        // `dir` made it with the default mode if it was missing; an explicit
        // entry sets its own.
        let fd = self.fds.last().expect("rel has a name");
        rfs::fchmod(&**fd, Mode::from_raw_mode(mode))
            .map_err(|e| ArchiveError::Io { path: rel.to_owned(), source: e.into() })
    }

    /// Opens `rel` without touching the stack (for a hard link's source).
    pub(super) fn open_path(&self, rel: &Path, entry: &str) -> Result<OwnedFd, ArchiveError> {
        let mut fd = rfs::openat(&*self.root, ".", dir_flags(), Mode::empty())
            .map_err(|e| ArchiveError::Io { path: rel.to_owned(), source: e.into() })?;
        for c in rel.iter() {
            fd = open_or_make_dir(&fd, c, 0o777, entry)?;
        }
        Ok(fd)
    }
}

pub(super) fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

pub(super) fn open_or_make_dir(
    parent: impl AsFd,
    name: &OsStr,
    mode: u32,
    entry: &str,
) -> Result<OwnedFd, ArchiveError> {
    let through_link =
        || ArchiveError::Unsafe { entry: entry.to_owned(), why: "its path goes through a link or a file" };
    let io = |e: Errno| ArchiveError::Io { path: PathBuf::from(entry), source: e.into() };
    match rfs::openat(&parent, name, dir_flags(), Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOENT) => {
            match rfs::mkdirat(&parent, name, Mode::from_raw_mode(mode)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(io(e)),
            }
            rfs::openat(&parent, name, dir_flags(), Mode::empty()).map_err(|e| match e {
                Errno::LOOP | Errno::NOTDIR => through_link(),
                e => io(e),
            })
        }
        Err(Errno::LOOP | Errno::NOTDIR) => Err(through_link()),
        Err(e) => Err(io(e)),
    }
}
