//! One mount's overlay on disk: its namespace and its contents, opened
//! together, in the order they must reach the disk (a commit of the
//! namespace only after the bytes and objects it names), and the base it
//! is an overlay of.
//!
//! Layout, under `<data dir>/overlays/<mountpoint's id>/`:
//!
//! ```text
//! namespace.redb   the namespace (namespace.rs)
//! files/           one object per inode the overlay holds (contents.rs)
//! base             "repo\ncommit\nmountpoint\n": what it is an overlay of
//! ```
//!
//! It never deletes an overlay: it is the user's data.

use super::contents::Contents;
use super::error::OverlayError;
use super::namespace::Namespace;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// See the module doc.
pub struct Overlay {
    pub namespace: Namespace,
    pub contents: Arc<Contents>,
    dir: PathBuf,
}

/// The overlay directory of the mount at `mountpoint` (absolute) on
/// `data_dir`: the same path mounted again finds its overlay.
pub fn dir_for(data_dir: &Path, mountpoint: &Path) -> PathBuf {
    data_dir.join("overlays").join(path_id(mountpoint))
}

/// A path's short stable name: 16 hex digits of its SHA-1 (an overlay's
/// directory, a mount's record, a daemon's control socket).
pub fn path_id(path: &Path) -> String {
    let mut h = gix::hash::hasher(gix::hash::Kind::Sha1);
    h.update(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()));
    h.try_finalize().map(|d| d.to_hex_with_len(16).to_string()).unwrap_or_else(|_| "0".repeat(16))
}

impl Overlay {
    /// Opens (creating) the overlay in `dir`. What a crash left that the
    /// namespace does not name (a lost create's object, an unlinked file
    /// that was still open, a half copy-up) is removed; only `files/` is
    /// read for it, never the tree.
    pub fn open(dir: &Path) -> Result<Overlay, OverlayError> {
        let io = |what: &'static str| {
            move |e: std::io::Error| OverlayError::Store { path: dir.to_owned(), what, reason: e.to_string() }
        };
        std::fs::create_dir_all(dir).map_err(io("creating"))?;
        let contents = Arc::new(Contents::open(&dir.join("files")).map_err(io("opening files/"))?);
        let namespace = Namespace::open(&dir.join("namespace.redb"))?;
        let first = contents.clone();
        namespace.before_commit(Box::new(move || first.sync_before_commit()));
        let (_, inodes) = namespace.touched()?;
        let removed = contents.sweep(&inodes.into_iter().collect()).map_err(io("sweeping files/"))?;
        if removed > 0 {
            tracing::info!(removed, "removed what a crash left in the overlay that nothing names");
        }
        Ok(Overlay { namespace, contents, dir: dir.to_owned() })
    }

    /// Binds the overlay to its base: the first mount records `repo` at
    /// `commit`; a later mount of another base is refused (its changes
    /// were made over that one). Moving an overlay to a new commit is a
    /// later step.
    pub fn bind(&self, repo: &str, commit: &str, mountpoint: &Path) -> Result<(), OverlayError> {
        let path = self.dir.join("base");
        let want = format!("{repo}\n{commit}\n{}\n", mountpoint.display());
        match std::fs::read_to_string(&path) {
            Ok(had) => {
                let mut lines = had.lines();
                let (r, c) = (lines.next().unwrap_or_default(), lines.next().unwrap_or_default());
                if r == repo && c == commit {
                    return Ok(());
                }
                Err(OverlayError::OtherBase { dir: self.dir.clone(), repo: r.to_owned(), commit: c.to_owned() })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let tmp = self.dir.join("base.tmp");
                let write = || -> std::io::Result<()> {
                    std::fs::write(&tmp, want.as_bytes())?;
                    std::fs::File::open(&tmp)?.sync_all()?;
                    std::fs::rename(&tmp, &path)?;
                    std::fs::File::open(&self.dir)?.sync_all()
                };
                write().map_err(|e| OverlayError::Store { path: path.clone(), what: "writing", reason: e.to_string() })
            }
            Err(e) => Err(OverlayError::Store { path, what: "reading", reason: e.to_string() }),
        }
    }

    /// Makes every change so far durable (what an fsync of a file or of a
    /// directory asks): the copied-up bytes and objects first, then one
    /// commit of the namespace.
    pub fn sync(&self) -> Result<(), OverlayError> {
        self.namespace.sync()
    }

    /// The overlay's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
