//! The overlay's contents: one plain object per inode the overlay holds,
//! under the mount's `files/`, named by its number in hex. A written or
//! copied-up file is a plain file (so it can be a passthrough backing
//! file and the kernel's own `fsync` makes it durable), a directory an
//! empty directory, a symlink a symlink, a fifo a fifo: each holds its
//! own mode, owner, size and times, so `chmod`, `chown`, `truncate` and
//! `utimens` are the host filesystem's and stat reads them back.
//!
//! Copy-up writes a base file's bytes to a temporary file and renames it
//! into place; its bytes are made durable (fdatasync) before any commit
//! of the namespace that names it ([`Contents::sync_before_commit`]), so
//! after a crash a copied-up file is either its base bytes or whole, never
//! a torn copy. A new file's bytes are durable when it is fsynced, as on
//! ext4.
//!
//! It never decides what a name is (the namespace does), and never
//! removes an object the namespace still names: [`Contents::sweep`] runs
//! only at open, against the namespace's own list.

use crate::hydrate::blobstore::LocalBlob;
use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// What kind of object to make.
#[derive(Debug, Clone, Copy)]
pub enum Made<'a> {
    File,
    Dir,
    Symlink(&'a [u8]),
    Fifo,
    Socket,
}

/// See the module doc.
pub struct Contents {
    dir: PathBuf,
    dir_file: File,
    /// Copied-up files whose bytes may not be on disk yet.
    unsynced: Mutex<HashSet<u64>>,
    /// Objects were made or renamed into `dir` since it was last synced.
    dir_dirty: AtomicBool,
    /// The last [`Contents::disk_bytes`] and when it was counted.
    counted: Mutex<Option<(std::time::Instant, u64)>>,
}

/// How long a count of the contents' bytes stands: counting stats every
/// object, which a status refreshed every second must not do.
const COUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl Contents {
    /// Opens (creating) the contents directory `dir`.
    pub fn open(dir: &Path) -> io::Result<Contents> {
        std::fs::create_dir_all(dir)?;
        Ok(Contents {
            dir: dir.to_owned(),
            dir_file: File::open(dir)?,
            unsynced: Mutex::default(),
            dir_dirty: AtomicBool::new(false),
            counted: Mutex::default(),
        })
    }

    /// Where inode `ino`'s object is.
    pub fn path(&self, ino: u64) -> PathBuf {
        self.dir.join(format!("{ino:x}"))
    }

    /// Makes inode `ino`'s object, with exactly `mode`'s permission bits
    /// (no umask) and `owner`. Whatever was there is nobody's: a number
    /// handed out again after a crash lost the create that first took it.
    pub fn make(&self, ino: u64, what: Made<'_>, mode: u32, owner: (u32, u32)) -> io::Result<()> {
        use rustix::fs::{FileType, Mode};
        let path = self.path(ino);
        remove_any(&path)?;
        let perm = Mode::from_raw_mode(mode & 0o7777);
        match what {
            Made::File => {
                let f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
                rustix::fs::fchown(&f, Some(uid(owner.0)), Some(gid(owner.1)))?;
                rustix::fs::fchmod(&f, perm)?;
            }
            Made::Dir => {
                std::fs::DirBuilder::new().mode(0o700).create(&path)?;
                rustix::fs::chown(&path, Some(uid(owner.0)), Some(gid(owner.1)))?;
                rustix::fs::chmod(&path, perm)?;
            }
            Made::Symlink(target) => {
                rustix::fs::symlink(target, &path)?;
                rustix::fs::chownat(
                    rustix::fs::CWD,
                    &path,
                    Some(uid(owner.0)),
                    Some(gid(owner.1)),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            Made::Fifo | Made::Socket => {
                let kind = if matches!(what, Made::Fifo) { FileType::Fifo } else { FileType::Socket };
                rustix::fs::mknodat(rustix::fs::CWD, &path, kind, Mode::from_raw_mode(0o600), 0)?;
                rustix::fs::chown(&path, Some(uid(owner.0)), Some(gid(owner.1)))?;
                rustix::fs::chmod(&path, perm)?;
            }
        }
        self.dir_dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Copies a base file up: `from`'s bytes become inode `ino`'s file,
    /// with `mode` and the base's `time` as its times (a chmod copies up
    /// and must not look like a write). Whole or not at all.
    /// `from` None copies up an empty file (one truncated to nothing as it
    /// is first written needs no bytes of its base).
    pub fn copy_up(
        &self,
        ino: u64,
        from: Option<&LocalBlob>,
        mode: u32,
        time: std::time::SystemTime,
    ) -> io::Result<()> {
        let tmp = self.dir.join(format!("tmp-{ino:x}"));
        remove_any(&tmp)?;
        let f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        let copied = from.map_or(Ok(()), |b| b.copy_to(&f)).and_then(|()| {
            rustix::fs::fchmod(&f, rustix::fs::Mode::from_raw_mode(mode & 0o7777))?;
            f.set_times(std::fs::FileTimes::new().set_accessed(time).set_modified(time))?;
            std::fs::rename(&tmp, self.path(ino))
        });
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.unsynced.lock().unwrap_or_else(|p| p.into_inner()).insert(ino);
        self.dir_dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Removes inode `ino`'s object (gone already is fine).
    pub fn remove(&self, ino: u64) -> io::Result<()> {
        self.unsynced.lock().unwrap_or_else(|p| p.into_inner()).remove(&ino);
        remove_any(&self.path(ino))
    }

    /// What a commit of the namespace needs on disk first: the bytes of
    /// every file copied up since, and the names of objects made.
    pub fn sync_before_commit(&self) -> io::Result<()> {
        let copied: Vec<u64> = self.unsynced.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect();
        for ino in copied {
            match File::open(self.path(ino)) {
                Ok(f) => f.sync_data()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.unsynced.lock().unwrap_or_else(|p| p.into_inner()).remove(&ino);
        }
        if self.dir_dirty.swap(false, Ordering::AcqRel) {
            if let Err(e) = self.dir_file.sync_all() {
                self.dir_dirty.store(true, Ordering::Release);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Removes every object whose inode is not in `keep` (what a crash
    /// left of creates it lost, of unlinked files still open then, and
    /// half-done copy-ups). Reads only this directory, never the tree.
    pub fn sweep(&self, keep: &HashSet<u64>) -> io::Result<u64> {
        let mut removed = 0;
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            let name = e.file_name();
            let kept = name.to_str().and_then(|n| u64::from_str_radix(n, 16).ok()).is_some_and(|i| keep.contains(&i));
            if !kept {
                remove_any(&e.path())?;
                removed += 1;
            }
        }
        if removed > 0 {
            self.dir_file.sync_all()?;
        }
        Ok(removed)
    }

    /// Bytes the contents take on disk (what `trove mounts` reports), as
    /// counted at most COUNT_EVERY ago.
    pub fn disk_bytes(&self) -> u64 {
        let mut counted = self.counted.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, bytes)) = *counted {
            if at.elapsed() < COUNT_EVERY {
                return bytes;
            }
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return 0 };
        let bytes = entries
            .flatten()
            .filter_map(|e| std::fs::symlink_metadata(e.path()).ok())
            .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
            .sum();
        *counted = Some((std::time::Instant::now(), bytes));
        bytes
    }
}

/// Removes the object at `path`, of whatever kind, if there is one.
fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    }
}

fn uid(raw: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(raw)
}

fn gid(raw: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(raw)
}
