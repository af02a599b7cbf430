//! tar.zst archives of repos: making them.
//!
//! Two kinds are made. A *working-tree snapshot* is what `git clone` would
//! leave: the files of one commit (from `git archive`, so filters and eol
//! rules apply as on checkout) and a `.git` made by a local clone of the
//! mirror with `origin` pointing at the upstream. A *mirror snapshot* is the
//! bare mirror itself, for a new node to start from instead of cloning.
//!
//! Unpacking them is `unpack.rs`.
//!
//! Everything here blocks: it runs on threads of its own, never on a shard.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// zstd level of every archive: level 3 compresses a source tree about 4x
/// at hundreds of MB/s per worker.
pub const ZSTD_LEVEL: i32 = 3;
/// Write buffer between the compressor and the file.
const OUT_BUF_BYTES: usize = 1 << 20;

/// Why making or unpacking an archive failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{what} failed: {detail}")]
    Git { what: String, detail: String },
    #[error("archive I/O failed at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the archive is not a valid tar.zst: {0}")]
    Corrupt(String),
    #[error("refused archive entry {entry:?}: {why}; the archive may be malicious")]
    Unsafe { entry: String, why: &'static str },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io { path: path.to_owned(), source }
}

/// Receives the count of compressed bytes written so far, after each write
/// reaches the file (so a reader of the file may read up to it).
pub trait Progress: Send + Sync {
    fn written(&self, bytes: u64);
}

/// A file writer that reports how much is written.
struct Tracked<'a> {
    file: File,
    written: u64,
    progress: &'a dyn Progress,
}

impl Write for Tracked<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        self.progress.written(self.written);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// git in `dir`, with the environment every git the node runs gets.
fn git(dir: &Path) -> Command {
    crate::repo::git::Git::new(Vec::<String>::new()).dir(dir).command()
}

fn run(mut cmd: Command, what: &str) -> Result<String, ArchiveError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ArchiveError::Git { what: what.into(), detail: e.to_string() })?;
    if !out.status.success() {
        let detail = String::from_utf8_lossy(&out.stderr).trim().lines().last().unwrap_or("").to_owned();
        return Err(ArchiveError::Git { what: what.into(), detail: format!("{} ({detail})", out.status) });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// What a working-tree snapshot is made from.
pub struct TreeSnapshotJob {
    pub mirror: PathBuf,
    /// Scratch directory for the snapshot's `.git`; removed at the end.
    pub work: PathBuf,
    /// The tar.zst to write.
    pub out: PathBuf,
    /// `origin` of the snapshot's `.git` (the upstream, never the node).
    pub origin_url: String,
    /// The commit to snapshot (HEAD's branch is set to it).
    pub commit: String,
    pub zstd_workers: u32,
}

/// Makes a working-tree snapshot of `job.commit` on the mirror's default
/// branch. Returns the archive's length.
pub fn make_tree_snapshot(job: &TreeSnapshotJob, progress: &dyn Progress) -> Result<u64, ArchiveError> {
    let _ = std::fs::remove_dir_all(&job.work);
    let work = &job.work;
    let mut clone = git(&job.mirror);
    // No template: the snapshot's .git gets no hooks, not even samples.
    clone.args(["clone", "--quiet", "--no-checkout", "--local", "--template="]).arg(&job.mirror).arg(work);
    run(clone, "git clone --local")?;
    let result = (|| {
        let mut c = git(work);
        c.args(["remote", "set-url", "origin", &job.origin_url]);
        run(c, "git remote set-url")?;
        // A fetch may have moved HEAD since the commit was chosen.
        let commit = job.commit.as_str();
        let mut c = git(work);
        c.args(["update-ref", "--no-deref", "HEAD", commit]);
        let mut c2 = git(work);
        c2.args(["symbolic-ref", "-q", "HEAD"]);
        match run(c2, "git symbolic-ref HEAD") {
            Ok(branch) if !branch.is_empty() => {
                c = git(work);
                c.args(["update-ref", &branch, commit]);
            }
            _ => {}
        }
        run(c, "git update-ref")?;
        // An index of the tree (no stat data: git rehashes on first use).
        let mut c = git(work);
        c.args(["read-tree", commit]);
        run(c, "git read-tree")?;
        // The files must be those of a checkout: turn export-ignore and
        // export-subst off for this archive (info/ attributes win).
        let attrs = work.join(".git/info/attributes");
        std::fs::create_dir_all(work.join(".git/info")).map_err(io_at(&attrs))?;
        std::fs::write(&attrs, "* -export-ignore -export-subst\n").map_err(io_at(&attrs))?;
        let file = File::create(&job.out).map_err(io_at(&job.out))?;
        let tracked = BufWriter::with_capacity(OUT_BUF_BYTES, Tracked { file, written: 0, progress });
        let mut enc = zstd::stream::Encoder::new(tracked, ZSTD_LEVEL).map_err(io_at(&job.out))?;
        enc.multithread(job.zstd_workers).map_err(io_at(&job.out))?;
        let mut tar = tar::Builder::new(enc);
        tar.follow_symlinks(false);
        copy_git_archive(work, commit, &mut tar)?;
        std::fs::remove_file(&attrs).map_err(io_at(&attrs))?;
        append_git_dir(&mut tar, &work.join(".git"))?;
        finish(tar, &job.out)
    })();
    let _ = std::fs::remove_dir_all(work);
    result
}

/// Appends the snapshot's `.git`, without hooks (restore would drop them;
/// they are not sent at all).
fn append_git_dir<W: Write>(tar: &mut tar::Builder<W>, git_dir: &Path) -> Result<(), ArchiveError> {
    tar.append_dir(".git", git_dir).map_err(io_at(git_dir))?;
    for entry in std::fs::read_dir(git_dir).map_err(io_at(git_dir))? {
        let entry = entry.map_err(io_at(git_dir))?;
        let name = entry.file_name();
        if name == "hooks" {
            continue;
        }
        let (path, inside) = (entry.path(), Path::new(".git").join(&name));
        let r =
            if path.is_dir() { tar.append_dir_all(&inside, &path) } else { tar.append_path_with_name(&path, &inside) };
        r.map_err(io_at(&path))?;
    }
    Ok(())
}

/// Appends the files of `commit` (as `git archive` writes them) to `tar`.
fn copy_git_archive<W: Write>(work: &Path, commit: &str, tar: &mut tar::Builder<W>) -> Result<(), ArchiveError> {
    let what = "git archive";
    let mut child = git(work)
        .args(["archive", "--format=tar", commit])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ArchiveError::Git { what: what.into(), detail: e.to_string() })?;
    let stdout = child.stdout.take().expect("spawned with a stdout");
    let copied = (|| {
        let mut archive = tar::Archive::new(stdout);
        for entry in archive.entries().map_err(|e| ArchiveError::Corrupt(e.to_string()))? {
            let mut entry = entry.map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
            let path = entry.path().map_err(|e| ArchiveError::Corrupt(e.to_string()))?.into_owned();
            let mut header = entry.header().clone();
            let kind = header.entry_type();
            let io = io_at(&path);
            if kind.is_file() {
                tar.append_data(&mut header, &path, &mut entry).map_err(io)?;
            } else if kind.is_dir() {
                tar.append_data(&mut header, &path, io::empty()).map_err(io)?;
            } else if kind.is_symlink() {
                let target = entry.link_name().map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
                let target = target.ok_or_else(|| ArchiveError::Corrupt("symlink without a target".into()))?;
                tar.append_link(&mut header, &path, &target).map_err(io)?;
            }
            // pax global headers (the commit id comment) are dropped.
        }
        // git pads the archive to whole 10 KiB records after the end
        // marker; closing the pipe before that kills it with SIGPIPE.
        io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
        Ok(())
    })();
    let out = child.wait_with_output().map_err(|e| ArchiveError::Git { what: what.into(), detail: e.to_string() })?;
    if !out.status.success() {
        let detail = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(ArchiveError::Git { what: what.into(), detail: format!("{} ({detail})", out.status) });
    }
    copied
}

/// Ends the tar and the zstd frame, flushes and syncs; returns the length.
fn finish(
    tar: tar::Builder<zstd::stream::Encoder<'static, BufWriter<Tracked<'_>>>>,
    out: &Path,
) -> Result<u64, ArchiveError> {
    let enc = tar.into_inner().map_err(io_at(out))?;
    let buffered = enc.finish().map_err(io_at(out))?;
    let tracked =
        buffered.into_inner().map_err(|e| ArchiveError::Io { path: out.to_owned(), source: e.into_error() })?;
    tracked.file.sync_data().map_err(io_at(out))?;
    Ok(tracked.written)
}

/// Makes a mirror snapshot: the bare repo at `mirror` as tar.zst. Refs are
/// archived before objects, so a fetch running meanwhile can only add
/// objects no archived ref needs, never lose one a ref points at.
pub fn make_mirror_snapshot(
    mirror: &Path,
    out: &Path,
    zstd_workers: u32,
    progress: &dyn Progress,
) -> Result<u64, ArchiveError> {
    let file = File::create(out).map_err(io_at(out))?;
    let tracked = BufWriter::with_capacity(OUT_BUF_BYTES, Tracked { file, written: 0, progress });
    let mut enc = zstd::stream::Encoder::new(tracked, ZSTD_LEVEL).map_err(io_at(out))?;
    enc.multithread(zstd_workers).map_err(io_at(out))?;
    let mut tar = tar::Builder::new(enc);
    tar.follow_symlinks(false);
    let mut names: Vec<String> = std::fs::read_dir(mirror)
        .map_err(io_at(mirror))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // objects/ last; everything else (HEAD, config, packed-refs, refs/) first.
    names.sort_by_key(|n| (n == "objects", n.clone()));
    for name in names {
        let p = mirror.join(&name);
        let r = if p.is_dir() { tar.append_dir_all(&name, &p) } else { tar.append_path_with_name(&p, &name) };
        match r {
            Ok(()) => {}
            // A lock or temp file git removed while we listed: skip it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArchiveError::Io { path: p, source: e }),
        }
    }
    finish(tar, out)
}

/// For archives nobody follows while they are written.
pub struct NoProgress;

impl Progress for NoProgress {
    fn written(&self, _: u64) {}
}

/// A blocking reader over chunks a shard sends through a channel: how an
/// archive streamed by a shard reaches an unpacking thread.
pub struct ChannelReader {
    rx: futures_channel::mpsc::Receiver<bytes::Bytes>,
    cur: bytes::Bytes,
}

impl ChannelReader {
    pub fn new(rx: futures_channel::mpsc::Receiver<bytes::Bytes>) -> Self {
        Self { rx, cur: bytes::Bytes::new() }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match futures_lite::future::block_on(futures_lite::StreamExt::next(&mut self.rx)) {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        bytes::Buf::advance(&mut self.cur, n);
        Ok(n)
    }
}
