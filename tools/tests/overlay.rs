//! The writable mount against ext4: a seeded random sequence of writes
//! (on base files, copied-up ones and new ones, with open handles kept
//! across operations) applied to a real mount and to a plain directory
//! that started as `git checkout` of the same commit, compared after
//! every step: bytes, sizes, modes, link counts, listings, symlink
//! targets and the errno of every failure. The crash model runs the same
//! generator and kills the daemon (SIGKILL) at random points: after each
//! remount the tree must equal the model at the kill, every path with
//! the inode number it had. A failing run
//! prints its seed; `TROVE_MODEL_SEED=<seed>` runs that one again.

use crate::git::node_for;
use crate::harness::*;
use crate::mount::{checkout, REPO};
use crate::tree::rich_upstream;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What one path is, as compared: kind, permission bits, link count (not
/// for directories: ext4 and the mount agree, but the base tree's
/// directory sizes are not ext4's), and bytes or target.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Dir { mode: u32, links: u64 },
    File { mode: u32, links: u64, bytes: Vec<u8> },
    Link { target: PathBuf },
    Fifo { mode: u32 },
}

/// Every path under `root` (`.git` at its top left out).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Seen> {
    walk(root, true)
}

/// Every path under `root`; files' bytes only `with_bytes`.
fn walk(root: &Path, with_bytes: bool) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let mut names: Vec<_> = std::fs::read_dir(root.join(&rel))
            .unwrap_or_else(|e| panic!("listing {}: {e}", root.join(&rel).display()))
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        for name in names {
            if rel.as_os_str().is_empty() && name == ".git" {
                continue;
            }
            let path = rel.join(&name);
            let full = root.join(&path);
            let m = std::fs::symlink_metadata(&full).expect("lstat");
            if m.file_type().is_dir() {
                todo.push(path.clone());
            }
            out.insert(path, seen(&full, &m, with_bytes));
        }
    }
    out
}

/// What the path `full` (whose lstat is `m`) is; a file's bytes only
/// `with_bytes`.
fn seen(full: &Path, m: &std::fs::Metadata, with_bytes: bool) -> Seen {
    let mode = m.mode() & 0o7777;
    if m.file_type().is_dir() {
        Seen::Dir { mode, links: m.nlink() }
    } else if m.file_type().is_symlink() {
        Seen::Link { target: std::fs::read_link(full).expect("readlink") }
    } else if m.file_type().is_file() {
        let bytes = if with_bytes { std::fs::read(full).expect("read") } else { Vec::new() };
        assert!(!with_bytes || bytes.len() as u64 == m.len(), "{}: its size is its bytes", full.display());
        Seen::File { mode, links: m.nlink(), bytes }
    } else {
        Seen::Fifo { mode }
    }
}

/// A small seeded generator (xorshift64*): a failing seed reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len() as u64) as usize]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Names new paths take: some the base tree has, so writes replace,
/// shadow and re-create base entries.
const NAMES: [&str; 9] = ["a", "b", "c", "d", "src", "empty", "run.sh", "link", "x.txt"];

/// What an operation gave: bytes read, or an errno.
type Outcome = Result<Vec<u8>, i32>;

/// Opens never wait: a fifo (or a symlink to one) opened for writing with
/// no reader fails ENXIO, for reading it opens empty, on both sides.
fn nb() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    o
}

fn errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn done(r: std::io::Result<()>) -> Outcome {
    r.map(|()| Vec::new()).map_err(errno)
}

/// The same file open in the mount and in the model.
struct Handle {
    path: PathBuf,
    mount: File,
    model: File,
}

/// The mount, the model, and the open handles of a run.
struct Run<'a> {
    mount: &'a Path,
    model: &'a Path,
    handles: Vec<Handle>,
    rng: Rng,
}

impl Run<'_> {
    /// One random operation on both trees; its description, outcomes and
    /// the two paths it named.
    fn step(&mut self) -> (String, Outcome, Outcome, [PathBuf; 2]) {
        let now = walk(self.model, false);
        let paths: Vec<&PathBuf> = now.keys().collect();
        let dirs: Vec<PathBuf> = std::iter::once(PathBuf::new())
            .chain(
                now.iter()
                    .filter(|(p, s)| matches!(s, Seen::Dir { .. }) && p.components().count() < 4)
                    .map(|(p, _)| p.clone()),
            )
            .collect();
        let r = &mut self.rng;
        // An existing path most of the time, else a new name in a directory.
        let any = |r: &mut Rng| -> PathBuf {
            if !paths.is_empty() && r.below(10) < 7 {
                (*r.pick(&paths)).clone()
            } else {
                r.pick(&dirs).join(r.pick(&NAMES))
            }
        };
        let path = any(r);
        let other = any(r);
        let op = r.below(24);
        let size = r.below(6000) as usize + 1;
        let (data, offset, len) = (r.bytes(size), r.below(40_000), r.below(50_000));
        let mode = *r.pick(&[0o600u32, 0o644, 0o755, 0o700]);
        let target = format!("t{}", r.below(100));
        let which = r.below(8) as usize;
        let on = |root: &Path, f: &dyn Fn(&Path, &Path) -> Outcome| f(&root.join(&path), &root.join(&other));
        let touched = [path.clone(), other.clone()];
        let both = |what: String, f: &dyn Fn(&Path, &Path) -> Outcome| {
            (what, on(self.mount, f), on(self.model, f), touched.clone())
        };
        let regular = matches!(now.get(&path), Some(Seen::File { .. }));
        match op {
            0 | 1 => both(format!("write {} bytes to {path:?} (create, truncate)", data.len()), &|p, _| {
                let mut f = nb().write(true).create(true).truncate(true).open(p).map_err(errno)?;
                done(std::io::Write::write_all(&mut f, &data))
            }),
            2 => both(format!("create {path:?} exclusively"), &|p, _| {
                done(nb().write(true).create_new(true).mode(0o640).open(p).map(drop))
            }),
            3 => both(format!("append {} bytes to {path:?}", data.len()), &|p, _| {
                done(nb().append(true).open(p).and_then(|mut f| std::io::Write::write_all(&mut f, &data)))
            }),
            4 if regular => both(format!("pwrite {} bytes at {offset} of {path:?}", data.len()), &|p, _| {
                done(nb().write(true).open(p).and_then(|f| f.write_all_at(&data, offset)))
            }),
            5 if regular => both(format!("truncate {path:?} to {len}"), &|p, _| {
                done(nb().write(true).open(p).and_then(|f| f.set_len(len)))
            }),
            6 => both(format!("read {path:?}"), &|p, _| {
                let mut bytes = Vec::new();
                nb().read(true)
                    .open(p)
                    .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut bytes))
                    .map_err(errno)?;
                Ok(bytes)
            }),
            7 => both(format!("mkdir {path:?}"), &|p, _| done(std::fs::create_dir(p))),
            8 => both(format!("rmdir {path:?}"), &|p, _| done(std::fs::remove_dir(p))),
            9 => both(format!("unlink {path:?}"), &|p, _| done(std::fs::remove_file(p))),
            10 | 11 => both(format!("rename {path:?} to {other:?}"), &|p, o| done(std::fs::rename(p, o))),
            12 => both(format!("rename {path:?} to {other:?}, no replace"), &|p, o| {
                rename_with(p, o, rustix::fs::RenameFlags::NOREPLACE)
            }),
            13 => both(format!("exchange {path:?} and {other:?}"), &|p, o| {
                rename_with(p, o, rustix::fs::RenameFlags::EXCHANGE)
            }),
            14 => both(format!("symlink {path:?} -> {target}"), &|p, _| done(std::os::unix::fs::symlink(&target, p))),
            15 => both(format!("readlink {path:?}"), &|p, _| {
                std::fs::read_link(p).map(|t| t.into_os_string().into_encoded_bytes()).map_err(errno)
            }),
            16 => both(format!("chmod {path:?} {mode:o}"), &|p, _| {
                done(std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)))
            }),
            17 => both(format!("mkfifo {path:?}"), &|p, _| {
                done(
                    rustix::fs::mknodat(
                        rustix::fs::CWD,
                        p,
                        rustix::fs::FileType::Fifo,
                        rustix::fs::Mode::from_raw_mode(0o644),
                        0,
                    )
                    .map_err(Into::into),
                )
            }),
            // A hard link of a file written first (the mount refuses one
            // to a base file it has not copied up: README).
            18 if regular => both(format!("link {other:?} to {path:?} (after a chmod)"), &|p, o| {
                let m = std::fs::metadata(p).map_err(errno)?;
                done(std::fs::set_permissions(p, m.permissions()).and_then(|()| std::fs::hard_link(p, o)))
            }),
            19 => both(format!("fsync {path:?}"), &|p, _| done(nb().read(true).open(p).and_then(|f| f.sync_all()))),
            20 if regular && self.handles.len() < 4 => {
                let open = |root: &Path| nb().read(true).write(true).open(root.join(&path));
                match (open(self.mount), open(self.model)) {
                    (Ok(mount), Ok(model)) => {
                        self.handles.push(Handle { path: path.clone(), mount, model });
                        (format!("open {path:?} and keep it"), Ok(Vec::new()), Ok(Vec::new()), touched)
                    }
                    (a, b) => (
                        format!("open {path:?}"),
                        a.map(|_| Vec::new()).map_err(errno),
                        b.map(|_| Vec::new()).map_err(errno),
                        touched,
                    ),
                }
            }
            21..=23 if !self.handles.is_empty() => {
                let h = &self.handles[which % self.handles.len()];
                let what = format!("through the handle of {:?}", h.path);
                match op {
                    21 => (
                        format!("pwrite {} bytes at {offset} {what}", data.len()),
                        done(h.mount.write_all_at(&data, offset)),
                        done(h.model.write_all_at(&data, offset)),
                        [h.path.clone(), other],
                    ),
                    22 => {
                        let read = |f: &File| {
                            let mut buf = vec![0u8; 70_000];
                            let n = f.read_at(&mut buf, 0).map_err(errno)?;
                            buf.truncate(n);
                            Ok(buf)
                        };
                        (format!("read {what}"), read(&h.mount), read(&h.model), [h.path.clone(), other])
                    }
                    _ => {
                        let h = self.handles.remove(which % self.handles.len());
                        (format!("close the handle of {:?}", h.path), Ok(Vec::new()), Ok(Vec::new()), [h.path, other])
                    }
                }
            }
            _ => (String::from("nothing"), Ok(Vec::new()), Ok(Vec::new()), touched),
        }
    }

    /// Runs `steps` operations, comparing the trees after each; panics
    /// with the seed and the step.
    fn go(&mut self, seed: u64, steps: usize, first: usize) {
        for i in first..first + steps {
            let (what, mount, model, touched) = self.step();
            if std::env::var_os("TROVE_MODEL_TRACE").is_some() {
                eprintln!("{i}: {what}: {:?}", model.as_ref().map(Vec::len));
            }
            let show = |o: &Outcome| match o {
                Ok(b) => format!("ok ({} bytes)", b.len()),
                Err(e) => format!("errno {e}"),
            };
            assert_eq!(
                mount,
                model,
                "seed {seed}, step {i}: {what}: the mount gave {}, ext4 {} (TROVE_MODEL_SEED={seed} runs it again)",
                show(&mount),
                show(&model)
            );
            let context = format!("seed {seed}, step {i}: after {what}");
            // What the step touched after every step, the whole tree now
            // and then.
            if i % 500 == 499 {
                same(&snapshot(self.mount), &snapshot(self.model), &context);
            } else {
                same(&near(self.mount, &touched), &near(self.model, &touched), &context);
            }
        }
    }
}

/// What `paths` and their directories are under `root`: each path (and
/// its bytes), and each directory's entries (names and kinds).
fn near(root: &Path, paths: &[PathBuf]) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    for p in paths {
        let up = p.parent().unwrap_or(Path::new("")).to_path_buf();
        let Ok(entries) = std::fs::read_dir(root.join(&up)) else { continue };
        for e in entries.flatten() {
            let name = up.join(e.file_name());
            if name == Path::new(".git") {
                continue;
            }
            let Ok(m) = std::fs::symlink_metadata(root.join(&name)) else { continue };
            let s = seen(&root.join(&name), &m, &name == p);
            out.insert(name, s);
        }
    }
    out
}

/// Panics with the paths where the mount and the model differ (at most
/// five, bytes summed up).
fn same(mount: &BTreeMap<PathBuf, Seen>, model: &BTreeMap<PathBuf, Seen>, context: &str) {
    if mount == model {
        return;
    }
    let diff: Vec<String> = mount
        .keys()
        .chain(model.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|p| mount.get(*p) != model.get(*p))
        .take(5)
        .map(|p| format!("{p:?}: mount {}, ext4 {}", short(mount.get(p)), short(model.get(p))))
        .collect();
    panic!("{context}: the trees differ (TROVE_MODEL_SEED reruns a seed): {diff:#?}");
}

fn short(s: Option<&Seen>) -> String {
    match s {
        Some(Seen::File { mode, links, bytes }) => format!("file {mode:o} x{links} {} bytes", bytes.len()),
        other => format!("{other:?}"),
    }
}

fn rename_with(from: &Path, to: &Path, flags: rustix::fs::RenameFlags) -> Outcome {
    rustix::fs::renameat_with(rustix::fs::CWD, from, rustix::fs::CWD, to, flags)
        .map(|()| Vec::new())
        .map_err(|e| e.raw_os_error())
}

fn seed() -> u64 {
    match std::env::var("TROVE_MODEL_SEED") {
        Ok(s) => s.parse().expect("TROVE_MODEL_SEED is a number"),
        Err(_) => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_nanos() as u64 | 1
        }
    }
}

/// A node with the rich tree, its checkout as the model, and where to
/// mount: (node, model dir, commit).
fn setup(dir: &Path) -> (Node, PathBuf, String) {
    let (up, head) = rich_upstream(dir);
    let node = node_for(dir, &up, &[]);
    let model = checkout(dir, &up, &head);
    (node, model, head)
}

#[test]
fn ten_thousand_random_writes_leave_the_mount_as_ext4_leaves_a_checkout() {
    let dir = tempfile::tempdir().expect("tmp");
    let (node, model, head) = setup(dir.path());
    let m = Mount::start(&dir.path().join("m"), &node.url, REPO, &["--commit", &head]);
    let seed = seed();
    eprintln!("model seed {seed}");
    let mut run = Run { mount: &m.dir, model: &model, handles: Vec::new(), rng: Rng(seed) };
    same(&snapshot(&m.dir), &snapshot(&model), "the mount starts as the checkout");
    run.go(seed, 10_000, 0);
    drop(run);
    // And after a clean remount, the same.
    let base = dir.path().join("m");
    drop(m);
    let m = Mount::start(&base, &node.url, REPO, &["--commit", &head]);
    same(&snapshot(&m.dir), &snapshot(&model), &format!("seed {seed}: a remount"));
}

#[test]
fn after_sigkill_at_random_points_a_remount_shows_every_change_up_to_the_kill() {
    let dir = tempfile::tempdir().expect("tmp");
    let (node, model, head) = setup(dir.path());
    let base = dir.path().join("m");
    let seed = seed();
    eprintln!("crash model seed {seed}");
    let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut done_steps = 0;
    // Each path's inode number at the kill: a remount keeps every one
    // (a build system or file watcher breaks when they move).
    let mut inodes: BTreeMap<PathBuf, u64> = BTreeMap::new();
    for kill in 0..8 {
        let mut m = Mount::start(&base, &node.url, REPO, &["--commit", &head]);
        if kill > 0 {
            for (path, ino) in &inodes {
                let now = std::fs::symlink_metadata(m.dir.join(path)).map(|md| md.ino());
                assert_eq!(now.ok(), Some(*ino), "seed {seed}: {path:?} changed inode number across a remount");
            }
            let (a, b) = (snapshot(&m.dir), snapshot(&model));
            if a != b && std::env::var_os("TROVE_MODEL_KEEP").is_some() {
                eprintln!("kept: {} {}", m.dir.display(), model.display());
                std::mem::forget(m);
                std::mem::forget(node);
                std::mem::forget(dir);
                panic!("kept");
            }
            same(&a, &b, &format!("seed {seed}: the remount after kill {}", kill - 1));
        }
        let steps = 50 + rng.below(250) as usize;
        let mut run = Run { mount: &m.dir, model: &model, handles: Vec::new(), rng: Rng(seed.wrapping_add(kill)) };
        run.go(seed, steps, done_steps);
        done_steps += steps;
        drop(run);
        eprintln!("kill {kill} after step {}", done_steps - 1);
        inodes = walk(&m.dir, false)
            .into_keys()
            .map(|p| {
                let ino = std::fs::symlink_metadata(m.dir.join(&p)).expect("lstat").ino();
                (p, ino)
            })
            .collect();
        m.kill9();
        let (code, out) = m.umount();
        assert_eq!(code, Some(0), "umount of the killed mount: {out}");
    }
    let m = Mount::start(&base, &node.url, REPO, &["--commit", &head]);
    same(&snapshot(&m.dir), &snapshot(&model), &format!("seed {seed}: the last remount"));
    assert!(m.records()[0]["overlay_bytes"].as_u64() > Some(0), "trove mounts shows the overlay's size");
}
