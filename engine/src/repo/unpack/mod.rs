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
//!
//! Split: this file reads the archive and decides; `writers.rs` the
//! writer threads; `at.rs` fd-relative creation along the open directory
//! stack; `paths.rs` the lexical and resolved path checks.

mod at;
mod paths;
mod writers;

use super::archive::ArchiveError;
use super::untrusted::{Filter, Verdict};
use at::{process_umask, replacing, Tree};
use paths::{inside, resolves_inside, target_is_absolute};
use rustix::fs::{self as rfs, AtFlags};
use std::ffi::OsStr;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use writers::{write_file, write_jobs, Job, Shared, Writers};

/// Copy buffer between the decompressor and a large file.
const COPY_BUF_BYTES: usize = 256 << 10;
/// Files up to this size go to the writer thread whole; larger ones are
/// streamed by the reading thread (memory stays bounded).
const SMALL_FILE_BYTES: u64 = 256 << 10;
/// Batches queued per writer: at most 8 x (1 MiB + one small file).
const QUEUE_BATCHES: usize = 8;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::untrusted::keep_all;

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
