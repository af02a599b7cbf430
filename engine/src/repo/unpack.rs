//! Unpacking a tar.zst archive into a directory, safely and in few syscalls.
//!
//! Every entry is created relative to an open directory fd, and every
//! directory on the way is opened with `O_NOFOLLOW`: no entry can write
//! through a symlink, whatever the archive put there before. Paths that are
//! absolute or climb with `..` are refused before anything is touched, and
//! so are links whose target leaves the tree, device files and fifos. Once
//! the tree is whole, every symlink is resolved once more, so link chains
//! that lead out are refused too. A hard link may only name a regular file
//! already unpacked: a hard link to a symlink would re-create that symlink
//! in another directory, where its relative target resolves elsewhere.
//!
//! The caller's [`Filter`] decides, by path, what else is kept: which parts
//! of a `.git` survive (`untrusted.rs`), and which small files (a config)
//! are captured into memory for the caller to read instead of written.
//!
//! A file costs one `openat` (created with its mode), its writes, one
//! `fstat` (the stat data a git index needs) and a `close`; the directories
//! along the current path stay open between entries. Small files are
//! written by writer threads while this one decompresses, so creating
//! files (most of the work) overlaps decompression; they get them in
//! batches, one channel operation per 64 files. How many writers is the
//! caller's choice. On this 2-core VM's bench tree (50k files) two
//! restored 1.15x faster than one into a fresh ext4, but on ext4 without a
//! journal right after mass deletes they contend for inodes and were up to
//! 2x slower; a node restoring its mirror uses one. The same code serves
//! `trove restore` and a node restoring its mirror. It blocks: it runs on a
//! thread of its own, never on a shard. It never follows a link while
//! creating, and never writes outside `dest`.

use super::archive::ArchiveError;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Copy buffer between the decompressor and a large file.
const COPY_BUF_BYTES: usize = 256 << 10;
/// Files up to this size go to the writer thread whole; larger ones are
/// streamed by the reading thread (memory stays bounded).
const SMALL_FILE_BYTES: u64 = 256 << 10;
/// Small files go to the writers in batches of up to this many files...
const BATCH_FILES: usize = 64;
/// ...or of this many bytes, so a batch costs one channel operation and
/// not 64: one per file cost 180k `sched_yield`s and 50k futex calls on
/// the bench's 50k-file tree, taken from the cores doing the work.
const BATCH_BYTES: usize = 1 << 20;
/// Batches queued per writer: at most 8 x (1 MiB + one small file).
const QUEUE_BATCHES: usize = 8;

/// A small file for the writer thread.
struct Job {
    dir: Arc<OwnedFd>,
    name: OsString,
    rel: PathBuf,
    mode: u32,
    data: Vec<u8>,
}

/// What to do with one archive entry, by its path inside the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Not written; the unpack goes on.
    Skip,
    /// A regular file of at most `untrusted::CONFIG_MAX_BYTES`, handed to
    /// the caller in [`Unpacked::captured`] and not written.
    Capture,
    /// The whole archive is refused, for this reason.
    Refuse(&'static str),
}

/// Decides each entry's fate from its path (relative, `..` folded) and kind.
pub type Filter = fn(&Path, tar::EntryType) -> Verdict;

/// Keeps every entry (what is unsafe is refused all the same).
pub fn keep_all(_: &Path, _: tar::EntryType) -> Verdict {
    Verdict::Keep
}

/// What the writer thread shares with the reading thread.
#[derive(Default)]
struct Shared {
    /// Jobs sent and not yet done (a hard link waits for zero).
    pending: AtomicUsize,
    first_error: Mutex<Option<ArchiveError>>,
}

/// What an unpack left behind.
#[derive(Default)]
pub struct Unpacked {
    /// Entries created (files, directories, links).
    pub entries: u64,
    /// The stat data of every regular file and symlink, by path relative to
    /// the target, as the kernel reported it right after creation.
    pub stats: Vec<(PathBuf, rfs::Stat)>,
    /// The entries the filter captured, with their bytes.
    pub captured: Vec<(PathBuf, Vec<u8>)>,
}

/// Unpacks a tar.zst stream into `dest` (which must exist and should be
/// empty), refusing every entry that could write or point outside it and
/// applying `filter` to the rest. `writers` threads create the small files
/// (at least one).
pub fn unpack_safely(input: impl Read, dest: &Path, writers: usize, filter: Filter) -> Result<Unpacked, ArchiveError> {
    let dest = dest.canonicalize().map_err(|e| ArchiveError::Io { path: dest.to_owned(), source: e })?;
    let shared = Shared::default();
    let writers = writers.max(1);
    let (read, written) = std::thread::scope(|s| {
        let mut txs = Vec::with_capacity(writers);
        let mut handles = Vec::with_capacity(writers);
        for _ in 0..writers {
            let (tx, rx) = crossbeam_channel::bounded::<Vec<Job>>(QUEUE_BATCHES);
            txs.push(tx);
            let (shared, dest) = (&shared, &dest);
            handles.push(s.spawn(move || write_jobs(rx, shared, dest)));
        }
        let mut queue = Writers::new(txs, &shared);
        let read = read_entries(input, &dest, &mut queue, &shared, filter);
        drop(queue);
        let written: Vec<_> = handles.into_iter().map(|h| h.join().expect("a writer thread panicked")).collect();
        (read, written)
    });
    let mut out = read?;
    if let Some(e) = shared.first_error.lock().expect("not poisoned").take() {
        return Err(e);
    }
    for w in written {
        out.entries += w.len() as u64;
        out.stats.extend(w);
    }
    Ok(out)
}

/// The reading thread's side of the writers: small files batched per
/// writer. A directory's files always go to the same writer, so entries of
/// one name keep their order (the later wins) and two writers never
/// contend for one directory.
struct Writers<'a> {
    txs: Vec<crossbeam_channel::Sender<Vec<Job>>>,
    batches: Vec<(Vec<Job>, usize)>,
    shared: &'a Shared,
}

impl<'a> Writers<'a> {
    fn new(txs: Vec<crossbeam_channel::Sender<Vec<Job>>>, shared: &'a Shared) -> Self {
        let batches = txs.iter().map(|_| (Vec::with_capacity(BATCH_FILES), 0)).collect();
        Writers { txs, batches, shared }
    }

    /// Queues `job`; false once a writer is gone (its error says why).
    fn send(&mut self, job: Job) -> bool {
        let dir = job.rel.parent().unwrap_or(Path::new(""));
        let w = xxhash_rust::xxh3::xxh3_64(dir.as_os_str().as_bytes()) as usize % self.txs.len();
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        let (batch, bytes) = &mut self.batches[w];
        *bytes += job.data.len();
        batch.push(job);
        if batch.len() < BATCH_FILES && *bytes < BATCH_BYTES {
            return true;
        }
        self.flush_one(w)
    }

    fn flush_one(&mut self, w: usize) -> bool {
        let (batch, bytes) = &mut self.batches[w];
        *bytes = 0;
        let full = std::mem::replace(batch, Vec::with_capacity(BATCH_FILES));
        full.is_empty() || self.txs[w].send(full).is_ok()
    }

    /// Sends what is batched and waits until every queued file is written.
    fn wait_idle(&mut self) {
        for w in 0..self.txs.len() {
            if !self.flush_one(w) {
                return;
            }
        }
        while self.shared.pending.load(Ordering::Acquire) > 0 {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

impl Drop for Writers<'_> {
    /// Sends the last batches; dropping the senders then ends the writers.
    fn drop(&mut self) {
        for w in 0..self.txs.len() {
            self.flush_one(w);
        }
    }
}

/// The writer thread: creates the files it is sent and returns their stat
/// data. After the first error it only drains the queue.
fn write_jobs(rx: crossbeam_channel::Receiver<Vec<Job>>, w: &Shared, dest: &Path) -> Vec<(PathBuf, rfs::Stat)> {
    let mut stats = Vec::new();
    for job in rx.into_iter().flatten() {
        let failed = w.first_error.lock().expect("not poisoned").is_some();
        if !failed {
            match write_file(&job.dir, &job.name, job.mode, &mut &job.data[..], &mut []) {
                Ok(st) => stats.push((job.rel, st)),
                Err(e) => {
                    let e = ArchiveError::Io { path: dest.join(&job.rel), source: e };
                    w.first_error.lock().expect("not poisoned").get_or_insert(e);
                }
            }
        }
        w.pending.fetch_sub(1, Ordering::AcqRel);
    }
    stats
}

/// Creates `name` in `dir` with `mode` and the bytes of `data`, through
/// `buf` when `data` is a stream (an empty `buf` means one read suffices).
fn write_file(dir: &OwnedFd, name: &OsStr, mode: u32, data: &mut dyn Read, buf: &mut [u8]) -> io::Result<rfs::Stat> {
    let mut file = std::fs::File::from(create(dir, name, mode)?);
    if buf.is_empty() {
        io::copy(data, &mut file)?;
    } else {
        loop {
            let n = data.read(buf)?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n])?;
        }
    }
    Ok(rfs::fstat(&file)?)
}

/// The reading thread: decompresses, checks every entry, makes directories
/// and links itself, streams large files and queues small ones.
fn read_entries(
    input: impl Read,
    dest: &Path,
    writers: &mut Writers,
    shared: &Shared,
    filter: Filter,
) -> Result<Unpacked, ArchiveError> {
    let corrupt = |e: io::Error| ArchiveError::Corrupt(e.to_string());
    let dec = zstd::stream::Decoder::new(input).map_err(corrupt)?;
    let mut archive = tar::Archive::new(dec);
    let mut tree = Tree::open(dest)?;
    let mut out = Unpacked::default();
    let mut symlinks = Vec::new();
    let umask = process_umask();
    let mut buf = vec![0u8; COPY_BUF_BYTES];
    for entry in archive.entries().map_err(corrupt)? {
        if shared.first_error.lock().expect("not poisoned").is_some() {
            break; // the writer failed: its error is the answer
        }
        let mut entry = entry.map_err(corrupt)?;
        let raw = entry.path().map_err(corrupt)?.into_owned();
        let name = raw.display().to_string();
        let unsafe_entry = |why| ArchiveError::Unsafe { entry: name.clone(), why };
        let rel = inside(&raw).ok_or_else(|| unsafe_entry("its path leaves the target"))?;
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().map_err(corrupt)? & 0o777;
        if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
            continue;
        }
        let Some(file_name) = rel.file_name().map(OsStr::to_owned) else {
            // The root itself (`./`): it exists.
            if kind == tar::EntryType::Directory {
                continue;
            }
            return Err(unsafe_entry("it names the target itself"));
        };
        match filter(&rel, kind) {
            Verdict::Keep => {}
            Verdict::Skip => continue,
            Verdict::Refuse(why) => return Err(unsafe_entry(why)),
            Verdict::Capture => {
                let max = super::untrusted::CONFIG_MAX_BYTES;
                if kind.is_file() && entry.size() <= max {
                    let mut data = Vec::with_capacity(entry.size() as usize);
                    entry.read_to_end(&mut data).map_err(corrupt)?;
                    out.captured.push((rel, data));
                    continue;
                }
                return Err(unsafe_entry("a config that is not a small regular file"));
            }
        }
        let parent = tree.dir(rel.parent().unwrap_or(Path::new("")), &name)?;
        let io_err = |e: io::Error| ArchiveError::Io { path: dest.join(&rel), source: e };
        match kind {
            tar::EntryType::Directory => {
                // Kept writable for the entries that follow, whatever it
                // says, and under the umask as a created file is (fchmod
                // does not apply it): 02777 from a node is not a world-
                // writable directory (`& 0o777` already dropped setgid).
                tree.mkdir(&rel, (mode & !umask) | 0o700, &name)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous if entry.size() <= SMALL_FILE_BYTES => {
                let mut data = Vec::with_capacity(entry.size() as usize);
                entry.read_to_end(&mut data).map_err(corrupt)?;
                let job = Job { dir: parent, name: file_name, rel, mode, data };
                if !writers.send(job) {
                    break; // the writer is gone; its error says why
                }
                continue; // counted with the writer's
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let st = write_file(&parent, &file_name, mode, &mut entry, &mut buf).map_err(|e| match e.kind() {
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => corrupt(e),
                    _ => io_err(e),
                })?;
                out.stats.push((rel.clone(), st));
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| unsafe_entry("a link without a target"))?
                    .into_owned();
                // A symlink resolves from its own directory; a hard link
                // names a path from the archive's root.
                let resolved = if kind == tar::EntryType::Symlink {
                    rel.parent().unwrap_or(Path::new("")).join(&target)
                } else {
                    target.clone()
                };
                if target_is_absolute(&resolved) || inside(&resolved).is_none() {
                    return Err(unsafe_entry("its link target leaves the target"));
                }
                if kind == tar::EntryType::Symlink {
                    replacing(&parent, &file_name, |p| rfs::symlinkat(&target, p, &file_name))
                        .map_err(|e| io_err(e.into()))?;
                    let st =
                        rfs::statat(&*parent, &file_name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| io_err(e.into()))?;
                    out.stats.push((rel.clone(), st));
                    symlinks.push(rel);
                } else {
                    // The link's source may still be queued.
                    writers.wait_idle();
                    let src = inside(&resolved).expect("checked above");
                    // Writing the tree's file would write git's own (HEAD,
                    // refs): a hard link into `.git` is refused.
                    if src.components().next().is_some_and(|c| c.as_os_str().eq_ignore_ascii_case(".git")) {
                        return Err(unsafe_entry("a hard link into .git"));
                    }
                    let src_name = src.file_name().ok_or_else(|| unsafe_entry("a hard link to the target itself"))?;
                    let src_dir = tree.open_path(src.parent().unwrap_or(Path::new("")), &name)?;
                    let src_stat = rfs::statat(&src_dir, src_name, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|_| unsafe_entry("a hard link to nothing unpacked before it"))?;
                    if rfs::FileType::from_raw_mode(src_stat.st_mode) != rfs::FileType::RegularFile {
                        return Err(unsafe_entry("a hard link to a link or a directory"));
                    }
                    replacing(&parent, &file_name, |p| {
                        rfs::linkat(&src_dir, src_name, p, &file_name, AtFlags::empty())
                    })
                    .map_err(|e| io_err(e.into()))?;
                }
            }
            _ => return Err(unsafe_entry("devices, fifos and other special files are refused")),
        }
        out.entries += 1;
    }
    // Links that each stay inside may still chain out (`a/b -> ..` then
    // `c -> a/b/..`): once the tree is whole, resolve every one.
    writers.wait_idle();
    for rel in symlinks {
        if !resolves_inside(dest, &dest.join(&rel)) {
            return Err(ArchiveError::Unsafe {
                entry: rel.display().to_string(),
                why: "its link target leaves the target through other links",
            });
        }
    }
    Ok(out)
}

/// This process's umask (from /proc, as reading it with umask(2) would
/// change it for every thread); 022 when it cannot be read.
fn process_umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .unwrap_or(0o022)
}

/// Creates a new regular file with `mode` (the umask applies, as on a
/// checkout), replacing a non-directory an earlier entry left at the name.
fn create(parent: &OwnedFd, name: &OsStr, mode: u32) -> Result<OwnedFd, Errno> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    replacing(parent, name, |p| rfs::openat(p, name, flags, Mode::from_raw_mode(mode)))
}

/// Runs `make`; when the name is taken by a file or link (a later entry of
/// the same name wins, as with tar), removes that and runs it once more.
/// A directory in the way is an error: the archive is inconsistent.
fn replacing<T>(parent: &OwnedFd, name: &OsStr, make: impl Fn(&OwnedFd) -> Result<T, Errno>) -> Result<T, Errno> {
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
struct Tree {
    root: Arc<OwnedFd>,
    names: Vec<OsString>,
    fds: Vec<Arc<OwnedFd>>,
}

impl Tree {
    fn open(dest: &Path) -> Result<Tree, ArchiveError> {
        let root = rfs::open(dest, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| ArchiveError::Io { path: dest.to_owned(), source: e.into() })?;
        Ok(Tree { root: Arc::new(root), names: Vec::new(), fds: Vec::new() })
    }

    /// The open directory `rel` (made if missing), with every component
    /// opened without following links.
    fn dir(&mut self, rel: &Path, entry: &str) -> Result<Arc<OwnedFd>, ArchiveError> {
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
    fn mkdir(&mut self, rel: &Path, mode: u32, entry: &str) -> Result<(), ArchiveError> {
        self.dir(rel, entry).map(|_| ())?;
        // `dir` made it with the default mode if it was missing; an explicit
        // entry sets its own.
        let fd = self.fds.last().expect("rel has a name");
        rfs::fchmod(&**fd, Mode::from_raw_mode(mode))
            .map_err(|e| ArchiveError::Io { path: rel.to_owned(), source: e.into() })
    }

    /// Opens `rel` without touching the stack (for a hard link's source).
    fn open_path(&self, rel: &Path, entry: &str) -> Result<OwnedFd, ArchiveError> {
        let mut fd = rfs::openat(&*self.root, ".", dir_flags(), Mode::empty())
            .map_err(|e| ArchiveError::Io { path: rel.to_owned(), source: e.into() })?;
        for c in rel.iter() {
            fd = open_or_make_dir(&fd, c, 0o777, entry)?;
        }
        Ok(fd)
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn open_or_make_dir(parent: impl AsFd, name: &OsStr, mode: u32, entry: &str) -> Result<OwnedFd, ArchiveError> {
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

/// Whether the link at `link` resolves inside `dest` (canonical): the
/// target itself if it exists, else its nearest existing ancestor.
fn resolves_inside(dest: &Path, link: &Path) -> bool {
    let Ok(target) = std::fs::read_link(link) else { return false };
    let mut p = link.parent().unwrap_or(dest).join(target);
    loop {
        if let Ok(c) = p.canonicalize() {
            return c.starts_with(dest);
        }
        if !p.pop() {
            return false;
        }
    }
}

fn target_is_absolute(p: &Path) -> bool {
    p.has_root() || matches!(p.components().next(), Some(Component::Prefix(_)))
}

/// `p` as a path that stays inside the root (lexically, `..` folded), or
/// None when it is absolute or climbs out.
fn inside(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) if !n.as_bytes().is_empty() => out.push(n),
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_root_are_refused() {
        assert_eq!(inside(Path::new("a/b/../c")), Some(PathBuf::from("a/c")));
        assert_eq!(inside(Path::new("./a")), Some(PathBuf::from("a")));
        assert_eq!(inside(Path::new("a/../../etc")), None);
        assert_eq!(inside(Path::new("/etc/passwd")), None);
        assert_eq!(inside(Path::new("..")), None);
    }

    /// Many small files over many directories, names given twice (the later
    /// entry wins) and hard links to files still queued, with one writer
    /// and with several.
    #[test]
    fn every_file_lands_whole_and_in_archive_order_whatever_the_writer_count() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut expect = std::collections::BTreeMap::new();
        let mut add = |tar: &mut tar::Builder<Vec<u8>>, path: String, data: Vec<u8>| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, &path, &data[..]).expect("append");
            expect.insert(path, data);
        };
        for i in 0..1500u32 {
            add(&mut tar, format!("d{}/f{i}", i % 37), format!("first {i}").repeat(i as usize % 50).into_bytes());
        }
        for i in (0..1500u32).step_by(7) {
            add(&mut tar, format!("d{}/f{i}", i % 37), format!("second {i}").into_bytes());
        }
        for i in (0..1500u32).step_by(101) {
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Link);
            let (link, src) = (format!("links/l{i}"), format!("d{}/f{i}", i % 37));
            tar.append_link(&mut h, &link, &src).expect("link");
            let data = expect[&src].clone();
            expect.insert(link, data);
        }
        let archive = zstd::encode_all(&tar.into_inner().expect("tar")[..], 1).expect("zstd");
        for writers in [1, 3] {
            let dir = tempfile::tempdir().expect("tempdir");
            let out = unpack_safely(&archive[..], dir.path(), writers, keep_all).expect("unpack");
            let regular = 1500 + 1500usize.div_ceil(7);
            assert_eq!(out.stats.len(), regular, "stat data for every regular file written ({writers} writers)");
            for (path, data) in &expect {
                let got = std::fs::read(dir.path().join(path)).expect(path);
                assert!(got == *data, "{path} with {writers} writers");
            }
        }
    }

    #[test]
    fn a_directorys_mode_from_the_network_gets_the_umask_and_no_setgid() {
        use std::os::unix::fs::PermissionsExt;
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o2777);
        h.set_entry_type(tar::EntryType::Directory);
        tar.append_data(&mut h, "d", &[][..]).expect("append");
        let archive = zstd::encode_all(&tar.into_inner().expect("tar")[..], 1).expect("zstd");
        let dir = tempfile::tempdir().expect("tempdir");
        unpack_safely(&archive[..], dir.path(), 1, keep_all).expect("unpack");
        let mode = std::fs::metadata(dir.path().join("d")).expect("d").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o777 & !process_umask(), "0{mode:o}: the umask applies, setgid is dropped");
    }
}
