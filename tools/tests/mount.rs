//! `trove mount`: real FUSE mounts of a real node's repo, read with stock
//! tools and compared with `git checkout` of the same commit; the node's
//! blob counters say what was fetched. Every mount is a `Mount` fixture,
//! which unmounts in Drop, also when a test fails.

use crate::git::{git, node_for, Upstream};
use crate::harness::*;
use crate::tree::rich_upstream;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Each read path's flags: the default (kernel, over io_uring where the
/// kernel has it on), the other two, and the kernel path over /dev/fuse.
pub(crate) const READ_PATHS: [&[&str]; 4] =
    [&[], &["--read-path", "passthrough"], &["--read-path", "daemon"], &["--transport", "dev-fuse"]];

/// The transport `trove mounts` shows for a mount with `extra` flags:
/// io_uring by default where the kernel has it on (`ring_on`), except
/// for passthrough reads.
pub(crate) fn transport_of(extra: &[&str], ring_on: bool) -> &'static str {
    let dev_fuse = extra.contains(&"dev-fuse") || extra.contains(&"passthrough");
    if ring_on && !dev_fuse {
        "io_uring"
    } else {
        "/dev/fuse"
    }
}

pub(crate) const REPO: &str = "example.test/org/repo";
const EIO: i32 = 5;
const ENOTCONN: i32 = 107;
const ECONNABORTED: i32 = 103;
const ECANCELED: i32 = 125;

pub(crate) fn blobs_served(node: &Node) -> u64 {
    node.stats()["git"]["blobs_served"].as_u64().expect("blobs_served")
}

fn blob_requests(node: &Node) -> u64 {
    node.stats()["git"]["blob_requests"].as_u64().expect("blob_requests")
}

pub(crate) fn sh(dir: &Path, script: &str) -> std::process::Output {
    Command::new("sh").arg("-c").arg(script).current_dir(dir).output().expect("sh")
}

/// The commit checked out by stock git, beside the mount.
pub(crate) fn checkout(base: &Path, up: &Upstream, commit: &str) -> std::path::PathBuf {
    let dir = base.join("checkout");
    git(base, &["clone", "-q", up.bare().to_str().expect("utf8"), dir.to_str().expect("utf8")]);
    git(&dir, &["checkout", "-q", "--detach", commit]);
    dir
}

/// `diff -r` of the mount and git's checkout finds nothing (links not
/// followed, `.git` left out).
pub(crate) fn assert_same_tree(mount: &Path, checkout: &Path) {
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference", "--exclude=.git"])
        .arg(mount)
        .arg(checkout)
        .output()
        .expect("diff");
    assert!(
        diff.status.success(),
        "the mount differs from git checkout: {}{}",
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
}

/// The bytes and name of a file of `len` distinct bytes.
fn content(seed: u64, len: usize) -> Vec<u8> {
    trove_bench::node::bytes(seed, len)
}

#[test]
fn a_mount_is_the_commit_as_git_checks_it_out_and_metadata_fetches_no_blob() {
    let dir = tempfile::tempdir().expect("tmp");
    let (up, head) = rich_upstream(dir.path());
    let node = node_for(dir.path(), &up, &[]);
    let want = checkout(dir.path(), &up, &head);
    let (_switch, ring_on) = UringSwitch::shared();
    let owner = |shards: usize| trove_engine::repo::key::RepoKey::parse_canonical(REPO).expect("a repo").owner(shards);
    assert!((2..=4).any(|n| owner(n) != 0), "some shard count below puts the repo on a shard other than 0");
    for (i, extra) in crate::mount::READ_PATHS.into_iter().enumerate() {
        let base = dir.path().join(format!("m{i}"));
        let before = blobs_served(&node);
        // 1 to 4 shards: hydration goes to whichever shard owns the repo.
        let shards = (i + 1).to_string();
        let args: Vec<&str> = ["--commit", head.as_str(), "--prefetch", "off", "--shards", &shards]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        let m = Mount::start(&base, &node.url, REPO, &args);
        assert!(m.ready.contains(&head[..12]), "{}", m.ready);

        // Every name, size, mode and type, and a stat of every file:
        // not one blob.
        let listing = sh(&m.dir, "find . -printf '%p %s %m %y\\n' && find . -type f -exec stat -c '%s %a' {} +");
        assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
        let text = String::from_utf8_lossy(&listing.stdout);
        assert!(text.contains("./run.sh 18 755 f"), "the executable bit: {text}");
        assert!(text.contains("./link 11 777 l"), "a symlink: {text}");
        assert!(text.contains("./vendor/sub 4096 755 d"), "a submodule is an empty directory: {text}");
        assert!(text.contains("./src/deep/a/b/c/d/leaf.txt 5 644 f"), "a deep path: {text}");
        assert_eq!(blobs_served(&node), before, "metadata never fetches a blob");
        assert_eq!(std::fs::read_link(m.path("link")).expect("readlink"), Path::new("src/main.rs"));

        // The whole tree, byte for byte, names that are not UTF-8 included.
        assert_same_tree(&m.dir, &want);
        assert!(blobs_served(&node) > before);

        // Reads at and past EOF see EOF, on either read path.
        let f = std::fs::File::open(m.path("src/main.rs")).expect("open");
        let len = f.metadata().expect("stat").len();
        let mut buf = [0u8; 64];
        assert_eq!(f.read_at(&mut buf, len - 1).expect("read"), 1);
        assert_eq!(f.read_at(&mut buf, len).expect("read at EOF"), 0);
        assert_eq!(f.read_at(&mut buf, len + 4096).expect("read past EOF"), 0);
        let dd = sh(&m.dir, "dd if=src/main.rs bs=4096 skip=1 2>/dev/null | wc -c");
        assert_eq!(String::from_utf8_lossy(&dd.stdout).trim(), "0");
        assert_eq!(std::fs::read(m.path("empty")).expect("empty file"), b"");

        // Misses are misses (also the second time: the kernel may cache
        // them). Writable over /dev/fuse; over io_uring, read-only.
        for _ in 0..2 {
            let e = std::fs::metadata(m.path("nope")).expect_err("no such file");
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        }
        // Writable on every read path and transport.
        assert_eq!(m.records()[0]["writable"], true);
        if extra.contains(&"passthrough") {
            // A file open for reading through passthrough is bound to its
            // base blob: writing it waits for that reader.
            let e = std::fs::write(m.path("src/main.rs"), b"edited").expect_err("a reader holds it");
            assert_eq!(e.raw_os_error(), Some(26), "ETXTBSY");
        }
        drop(f);
        std::fs::write(m.path("new"), b"x").expect("a new file");
        std::fs::write(m.path("src/main.rs"), b"edited").expect("a base file written");
        assert_eq!(std::fs::read(m.path("src/main.rs")).expect("read"), b"edited");
        assert_eq!(std::fs::read(want.join("src/main.rs")).expect("read"), b"fn main() {}\n", "not the checkout");

        let recs = m.records();
        let rec = &recs[0];
        assert_eq!(rec["state"], "ready");
        assert_eq!(rec["commit"], head.as_str());
        let path = if extra.first() == Some(&"--read-path") { extra[1] } else { "kernel" };
        assert_eq!(rec["read_path"], path, "{rec}");
        assert_eq!(rec["transport"], transport_of(extra, ring_on), "{rec}");
        assert_eq!(rec["passthrough"], path == "passthrough", "{rec}");
        assert_eq!(
            (rec["shards"].as_u64(), rec["owner_shard"].as_u64()),
            (Some(i as u64 + 1), Some(owner(i + 1).into()))
        );
        wait_until("trove mounts to count the hydrated blobs", Duration::from_secs(10), || {
            m.records()[0]["hydrated_blobs"].as_u64() > Some(0)
        });
    }
}

#[test]
fn a_shard_count_out_of_range_is_refused_before_anything_is_mounted() {
    let dir = tempfile::tempdir().expect("tmp");
    for bad in ["0", "257", "many"] {
        let out = Command::new(trove_bin())
            .args(["mount", REPO])
            .arg(dir.path())
            .args(["--node", "http://127.0.0.1:9", "--shards", bad])
            .output()
            .expect("trove mount");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--shards {bad}: {err}");
        assert!(err.contains("--shards"), "says which flag: {err}");
    }
}

#[test]
fn prehydrate_fetches_small_files_in_the_background_within_its_budget() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    // Ten small files of 10 KiB (a walk reads d/0..d/9 after a.txt), and
    // one over the 128 KiB a prehydration takes.
    std::fs::create_dir_all(up.work.join("d")).expect("mkdir");
    std::fs::write(up.work.join("a.txt"), content(1, 10_000)).expect("write");
    for i in 0..10u64 {
        std::fs::write(up.work.join(format!("d/{i}")), content(10 + i, 10_000)).expect("write");
    }
    std::fs::write(up.work.join("big.bin"), content(99, 200_000)).expect("write");
    up.commit_worktree("files");
    let node = node_for(dir.path(), &up, &[]);
    let before = blobs_served(&node);
    // A budget for five of them: a.txt and d/0..d/3.
    let m = Mount::start(dir.path(), &node.url, REPO, &["--ref", "main", "--prefetch", "off", "--prehydrate", "50000"]);
    wait_until("the prehydration to be chosen", Duration::from_secs(10), || m.records()[0]["prehydrate_blobs"] == 5);
    assert_eq!(m.records()[0]["prehydrate_bytes"], 50_000);
    wait_until("five blobs to land without a read", Duration::from_secs(20), || {
        m.records()[0]["hydrated_blobs"].as_u64() == Some(5)
    });
    assert_eq!(blobs_served(&node) - before, 5);
    // Those read without a fetch; the others are fetched when read.
    for f in ["a.txt", "d/0", "d/1", "d/2", "d/3"] {
        std::fs::read(m.path(f)).expect("read");
    }
    assert_eq!(blobs_served(&node) - before, 5, "the prehydrated files were local");
    assert_eq!(std::fs::read(m.path("big.bin")).expect("read"), content(99, 200_000));
    assert_eq!(std::fs::read(m.path("d/4")).expect("read"), content(14, 10_000));
    assert_eq!(blobs_served(&node) - before, 7, "the rest on their first reads");
}

#[test]
fn thirty_two_first_reads_of_one_file_fetch_it_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    let big = content(7, 8 << 20);
    std::fs::write(up.work.join("big.bin"), &big).expect("write");
    up.commit_worktree("big");
    let node = node_for(dir.path(), &up, &[]);
    let m = Mount::start(dir.path(), &node.url, REPO, &["--ref", "main", "--prefetch", "off"]);
    let (served, requests) = (blobs_served(&node), blob_requests(&node));
    let start = std::sync::Arc::new(std::sync::Barrier::new(32));
    let readers: Vec<_> = (0..32)
        .map(|_| {
            let (path, start) = (m.path("big.bin"), start.clone());
            std::thread::spawn(move || {
                start.wait();
                std::fs::read(path).expect("read")
            })
        })
        .collect();
    for r in readers {
        assert!(r.join().expect("reader") == big, "every reader gets the file's bytes");
    }
    assert_eq!(blobs_served(&node) - served, 1, "one blob fetched for 32 first reads");
    assert_eq!(blob_requests(&node) - requests, 1);
}

#[test]
fn with_the_node_gone_hydrated_files_read_and_others_fail_then_work_once_it_is_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    let mut node = node_for(dir.path(), &up, &[]);
    let m = Mount::start(dir.path(), &node.url, REPO, &["--ref", "main", "--prefetch", "off", "--fetch-timeout", "3s"]);
    let f1 = std::fs::read(m.path("f1")).expect("hydrate f1");
    node.kill9();
    assert_eq!(std::fs::read(m.path("f1")).expect("a hydrated file reads without the node"), f1);
    let t = Instant::now();
    let e = std::fs::read(m.path("f2")).expect_err("f2 needs the node");
    assert_eq!(e.raw_os_error(), Some(EIO), "{e}");
    assert!(t.elapsed() < Duration::from_secs(3), "an error, not a hang: {:?}", t.elapsed());
    // The record is rewritten every second.
    wait_until("trove mounts to show the error", Duration::from_secs(10), || {
        let r = &m.records()[0];
        r["errors"].as_u64() >= Some(1) && r["last_error"].as_str().is_some_and(|e| e.contains("unreachable"))
    });
    node.restart();
    // Opens fail at once until the mount's probe (every second) sees the
    // node answer; then they fetch again, and the record forgets the error.
    let want = std::fs::read(up.work.join("f2")).expect("f2");
    wait_until("f2 to read once the probe sees the node back", Duration::from_secs(20), || {
        std::fs::read(m.path("f2")).is_ok_and(|b| b == want)
    });
    wait_until("trove mounts to clear the outage's error", Duration::from_secs(10), || {
        let r = &m.records()[0];
        r["node_down"] == false && r["last_error"].is_null() && r["errors"].as_u64() >= Some(1)
    });
}

/// An upstream whose `main` has `n` directories `dNN`, each holding one
/// file `f.txt` of `content(i, len)`.
fn one_file_per_dir(base: &Path, n: u64, len: usize) -> Upstream {
    let up = Upstream::new(base);
    for i in 0..n {
        let d = up.work.join(format!("d{i:02}"));
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("f.txt"), content(i, len)).expect("write");
    }
    up.commit_worktree("one file per directory");
    up
}

#[test]
fn a_hung_node_fails_later_opens_at_once_and_recovers() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().expect("tmp");
    let up = one_file_per_dir(dir.path(), 8, 1000);
    let node = node_for(dir.path(), &up, &[]);
    // In front of the node: relays, or while `hang` is set takes every
    // connection and never answers (a node that accepts and hangs).
    let hang = std::sync::Arc::new(AtomicBool::new(false));
    let relay = crate::upstream_faults::switchable_proxy(node.port, hang.clone());
    let m = Mount::start(dir.path(), &relay.url(), REPO, &["--ref", "main", "--fetch-timeout", "1s"]);
    let d0 = std::fs::read(m.path("d00/f.txt")).expect("hydrated while the node answers");

    hang.store(true, Ordering::Release);
    let t = Instant::now();
    let e = std::fs::read(m.path("d01/f.txt")).expect_err("the node hangs");
    assert_eq!(e.raw_os_error(), Some(EIO), "{e}");
    assert!(t.elapsed() >= Duration::from_millis(900), "the first open waits out --fetch-timeout: {:?}", t.elapsed());
    let mut took = Vec::new();
    for i in 2..7 {
        let t = Instant::now();
        let e = std::fs::read(m.path(&format!("d{i:02}/f.txt"))).expect_err("the node still hangs");
        took.push(t.elapsed());
        assert_eq!(e.raw_os_error(), Some(EIO), "{e}");
    }
    took.sort();
    assert!(took[took.len() / 2] < Duration::from_millis(100), "later opens fail at once: {took:?}");
    assert!(took.iter().all(|t| *t < Duration::from_millis(500)), "every one of them: {took:?}");
    assert_eq!(std::fs::read(m.path("d00/f.txt")).expect("a hydrated file reads"), d0);
    wait_until("trove mounts to say the node is down", Duration::from_secs(10), || m.records()[0]["node_down"] == true);

    hang.store(false, Ordering::Release);
    wait_until("an unfetched file to read once the node answers", Duration::from_secs(20), || {
        std::fs::read(m.path("d07/f.txt")).is_ok_and(|b| b == content(7, 1000))
    });
    wait_until("trove mounts to clear the outage", Duration::from_secs(10), || {
        let r = &m.records()[0];
        r["node_down"] == false && r["last_error"].is_null()
    });
}

/// A stand-in node: a real tree index for `files` (name, bytes), and for
/// POST blobs whatever `blobs` answers (the request body in, the
/// response body out, None to hold the connection without answering).
fn fake_node(
    files: Vec<(&'static str, Vec<u8>)>,
    blobs: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync + 'static,
    index_override: Option<Vec<u8>>,
) -> TcpServer {
    fake_node_with(files, index_override, move |body, conn| match blobs(body) {
        Some(b) => {
            let _ = conn.write_all(
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", b.len()).as_bytes(),
            );
            let _ = conn.write_all(&b);
        }
        // Hold the connection until the client gives up on it.
        None => {
            let mut chunk = [0u8; 4096];
            while conn.read(&mut chunk).is_ok_and(|n| n > 0) {}
        }
    })
}

/// The tree index of `files` (name, bytes), as a node makes it.
fn index_of(files: &[(&'static str, Vec<u8>)]) -> Vec<u8> {
    use trove_engine::tree::index::{encode, Entry, Kind};
    let entries: Vec<Entry> = files
        .iter()
        .map(|(name, bytes)| Entry {
            kind: Kind::File,
            oid: git_oid(bytes),
            size: bytes.len() as u64,
            path: name.as_bytes().to_vec(),
            checkout: None,
            target: None,
        })
        .collect();
    encode(&[3; 20], 0, &entries)
}

/// As `fake_node`, with POST blobs answered by `respond` on the
/// connection itself (the request body in).
fn fake_node_with(
    files: Vec<(&'static str, Vec<u8>)>,
    index_override: Option<Vec<u8>>,
    respond: impl Fn(&[u8], &mut std::net::TcpStream) + Send + Sync + 'static,
) -> TcpServer {
    let index = index_override.unwrap_or_else(|| index_of(&files));
    TcpServer::start(move |mut conn| {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let Ok(n) = conn.read(&mut chunk) else { return };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let Ok(n) = conn.read(&mut chunk) else { return };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        if head.starts_with("get ") {
            let _ = conn.write_all(
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", index.len()).as_bytes(),
            );
            let _ = conn.write_all(&index);
        } else {
            respond(&buf[head_end..head_end + len], &mut conn);
        }
    })
}

fn git_oid(bytes: &[u8]) -> [u8; 20] {
    let mut h = gix_hash::hasher(gix_hash::Kind::Sha1);
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    let id = h.try_finalize().expect("sha1");
    let mut out = [0u8; 20];
    out.copy_from_slice(id.as_bytes());
    out
}

fn frame(oid: &[u8; 20], status: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = trove_engine::tree::blobs::frame_header(oid, status, bytes.len() as u64).to_vec();
    out.extend_from_slice(bytes);
    out
}

#[test]
fn a_node_that_lies_about_a_blob_is_never_believed() {
    let dir = tempfile::tempdir().expect("tmp");
    let (hello, world) = (b"hello".to_vec(), b"world".to_vec());
    let (h, w) = (git_oid(&hello), git_oid(&world));
    // Wrong bytes for a.txt, a wrong length for b.txt.
    let fake = fake_node(
        vec![("a.txt", hello), ("b.txt", world)],
        move |body| {
            let text = String::from_utf8_lossy(body);
            let mut out = Vec::new();
            for line in text.lines() {
                let oid = trove_engine::tree::parse_oid(line.trim()).expect("an id");
                if oid == h {
                    out.extend(frame(&oid, 0, b"hellp"));
                } else if oid == w {
                    out.extend(frame(&oid, 0, b"world, and more"));
                }
            }
            out.extend_from_slice(&trove_engine::tree::blobs::end_frame());
            Some(out)
        },
        None,
    );
    let m = Mount::start(dir.path(), &fake.url(), REPO, &["--prefetch", "off", "--fetch-timeout", "3s"]);
    for name in ["a.txt", "b.txt"] {
        let e = std::fs::read(m.path(name)).expect_err("a lie is not served");
        assert_eq!(e.raw_os_error(), Some(EIO), "{name}: {e}");
    }
    let landed = sh(&m.data_dir, "find blobs -type f | grep -v /tmp/ | wc -l");
    assert_eq!(String::from_utf8_lossy(&landed.stdout).trim(), "0", "nothing wrong was kept");
    wait_until("trove mounts to show why", Duration::from_secs(10), || {
        let r = &m.records()[0];
        r["errors"].as_u64() >= Some(2)
            && r["last_error"].as_str().is_some_and(|e| e.contains("do not match") || e.contains("invalid"))
    });
}

#[test]
fn a_node_that_never_answers_fails_the_open_within_the_fetch_timeout() {
    let dir = tempfile::tempdir().expect("tmp");
    let fake = fake_node(vec![("a.txt", b"hello".to_vec())], |_| None, None);
    let m = Mount::start(dir.path(), &fake.url(), REPO, &["--prefetch", "off", "--fetch-timeout", "1s"]);
    let t = Instant::now();
    let e = std::fs::read(m.path("a.txt")).expect_err("no answer, no bytes");
    assert_eq!(e.raw_os_error(), Some(EIO), "{e}");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "within --fetch-timeout: {took:?}");
}

#[test]
fn a_killed_daemon_gives_enotconn_and_umount_cleans_up() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    let node = node_for(dir.path(), &up, &[]);
    let mut m = Mount::start(dir.path(), &node.url, REPO, &["--ref", "main"]);
    assert_eq!(m.records()[0]["state"], "ready");
    m.kill9();
    // Over io_uring the kernel ends the connection once the dead
    // process's ring is torn down (asynchronously): a request caught in
    // between is aborted (ECONNABORTED) or cancelled with the ring's task
    // (ECANCELED); from then on, ENOTCONN.
    let e = std::fs::metadata(m.path("f1")).expect_err("the daemon is gone");
    assert!(matches!(e.raw_os_error(), Some(ENOTCONN | ECONNABORTED | ECANCELED)), "{e}");
    wait_until("every access to say ENOTCONN", Duration::from_secs(5), || {
        std::fs::metadata(m.path("f1")).err().and_then(|e| e.raw_os_error()) == Some(ENOTCONN)
    });
    assert_eq!(m.records()[0]["state"], "dead");
    let (code, out) = m.umount();
    assert_eq!(code, Some(0), "{out}");
    assert!(!is_mounted(&m.dir));
    assert_eq!(m.records().as_array().map(Vec::len), Some(0), "the dead record is gone");
    drop(m);
    let again = Mount::start(dir.path(), &node.url, REPO, &["--ref", "main"]);
    assert_eq!(
        std::fs::read(again.path("f1")).expect("a new mount reads"),
        std::fs::read(up.work.join("f1")).expect("f1")
    );
    // And a live one stops cleanly on `trove umount`.
    let (code, out) = again.umount();
    assert_eq!(code, Some(0), "{out}");
    assert!(!is_mounted(&again.dir));
}

#[test]
fn mount_failures_exit_with_their_documented_codes() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    let node = node_for(dir.path(), &up, &[]);
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let (code, log) = Mount::fail(&dir.path().join("a"), &nobody, REPO, &[]);
    assert_eq!(code, Some(5), "node unreachable: {log}");
    assert!(log.contains("unreachable"), "{log}");
    // `trove mounts` keeps the failure and its reason until `trove umount`.
    let failed = Mount::record_of_failed(&dir.path().join("a"));
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(failed["reason"].as_str().is_some_and(|r| r.contains("unreachable")), "{failed}");
    let (code, log) = Mount::fail(&dir.path().join("b"), &node.url, REPO, &["--commit", &"0".repeat(40)]);
    assert_eq!(code, Some(3), "unknown commit: {log}");
    let tree = git(&up.work, &["rev-parse", "HEAD^{tree}"]);
    let (code, log) = Mount::fail(&dir.path().join("b2"), &node.url, REPO, &["--commit", &tree]);
    assert_eq!(code, Some(3), "a tree's id: {log}");
    assert!(log.contains(&format!("{tree} names a tree, not a commit")), "{log}");
    let (code, log) = Mount::fail(&dir.path().join("c"), &node.url, REPO, &["--commit", "nothex"]);
    assert_eq!(code, Some(2), "bad --commit: {log}");
    let busy = dir.path().join("d");
    std::fs::create_dir_all(busy.join("mnt")).expect("mkdir");
    std::fs::write(busy.join("mnt/file"), b"x").expect("write");
    let (code, log) = Mount::fail(&busy, &node.url, REPO, &[]);
    assert_eq!(code, Some(8), "non-empty mountpoint: {log}");
    // A data dir another daemon serves, with --foreground: that daemon is
    // named, and the way to join it.
    let first = Mount::start(&dir.path().join("g"), &node.url, REPO, &[]);
    let second = dir.path().join("h");
    std::fs::create_dir_all(&second).expect("mkdir");
    std::os::unix::fs::symlink(&first.data_dir, second.join("mount-data")).expect("symlink");
    let (code, log) = Mount::fail(&second, &node.url, REPO, &[]);
    assert_eq!(code, Some(8), "a data dir in use: {log}");
    assert!(log.contains(&format!("a mount daemon (pid {}) already serves this data dir", first.pid())), "{log}");
    assert!(log.contains("without --foreground"), "{log}");
    drop(first);
    // The node's JSON error is shown as its sentence.
    let (code, log) = Mount::fail(&dir.path().join("f"), &node.url, "elsewhere.test/org/repo", &[]);
    assert!(log.contains("is not served by this node"), "the node's sentence: {log}");
    assert!(!log.contains("{\"code\""), "not its JSON: {log}");
    assert_ne!(code, Some(0), "{log}");
    let garbage = fake_node(vec![], |_| None, Some(b"not an index".to_vec()));
    let (code, log) = Mount::fail(&dir.path().join("e"), &garbage.url(), REPO, &[]);
    assert_eq!(code, Some(6), "a bad index: {log}");
}

#[test]
fn a_bounded_cache_evicts_rehydrates_and_an_open_file_keeps_reading() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    let big = content(11, 128 << 10);
    std::fs::write(up.work.join("big"), &big).expect("write");
    for i in 0..6 {
        std::fs::write(up.work.join(format!("s{i}")), content(20 + i, 64 << 10)).expect("write");
    }
    up.commit_worktree("sizes");
    let node = node_for(dir.path(), &up, &[]);
    // The passthrough read path: each open reaches the daemon, so the
    // reopen below shows the re-hydration (on the kernel path the kernel
    // keeps the file's pages and its file stays open in the daemon).
    let args = ["--ref", "main", "--prefetch", "off", "--cache-capacity", "200K", "--read-path", "passthrough"];
    let m = Mount::start(dir.path(), &node.url, REPO, &args);
    let open = std::fs::File::open(m.path("big")).expect("open big");
    let mut head = vec![0u8; 4096];
    open.read_exact_at(&mut head, 0).expect("read");
    for i in 0..6 {
        std::fs::read(m.path(&format!("s{i}"))).expect("read");
    }
    let big_file = m.data_dir.join("blobs").join(&hex(&git_oid(&big))[..2]).join(hex(&git_oid(&big)));
    assert!(!big_file.exists(), "the least recently used blob was evicted");
    let mut rest = vec![0u8; big.len()];
    open.read_exact_at(&mut rest, 0).expect("an open file keeps reading");
    assert!(rest == big);
    // A second open while the first lives shares its backing file: no fetch.
    let served = blobs_served(&node);
    assert!(std::fs::read(m.path("big")).expect("a second open") == big);
    assert_eq!(blobs_served(&node), served);
    drop(open);
    // The kernel sends the release of a closed file on its own time; until
    // the daemon had it, a reopen still shares the live backing file.
    wait_until("a reopen after the last close to hydrate the blob again", Duration::from_secs(10), || {
        assert!(std::fs::read(m.path("big")).expect("reopen") == big);
        blobs_served(&node) > served
    });
    assert_eq!(blobs_served(&node), served + 1, "fetched once more, not per try");
    wait_until("trove mounts to count the evictions", Duration::from_secs(10), || {
        let r = &m.records()[0];
        r["evicted_blobs"].as_u64() > Some(0) && r["local_bytes"].as_u64() <= Some(200 << 10)
    });
}

fn hex(oid: &[u8; 20]) -> String {
    trove_engine::tree::oid_hex(oid)
}

#[test]
fn on_the_kernel_read_path_small_blobs_share_slabs_within_the_capacity_and_an_evicted_one_is_fetched_again() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    let files: Vec<Vec<u8>> = (0..8).map(|i| content(40 + i, 48 << 10)).collect();
    for (i, bytes) in files.iter().enumerate() {
        std::fs::write(up.work.join(format!("s{i}")), bytes).expect("write");
    }
    up.commit_worktree("small files");
    let node = node_for(dir.path(), &up, &[]);
    // 200K: slabs of at most 12.5K, so each 48K blob starts one; eight of
    // them (384K) do not fit.
    let m =
        Mount::start(dir.path(), &node.url, REPO, &["--ref", "main", "--prefetch", "off", "--cache-capacity", "200K"]);
    for (i, bytes) in files.iter().enumerate() {
        assert!(std::fs::read(m.path(&format!("s{i}"))).expect("read") == *bytes);
    }
    let blobs = m.data_dir.join("blobs");
    let on_disk: u64 =
        std::fs::read_dir(blobs.join("slabs")).expect("ls").flatten().map(|e| e.metadata().expect("stat").len()).sum();
    assert!(on_disk <= 200 << 10, "the slabs stay within the capacity: {on_disk} bytes");
    assert!(where_on_disk(&blobs, &files[0]).is_none(), "the first file's slab was evicted");
    assert!(where_on_disk(&blobs, &files[7]).is_some_and(|(p, _)| p.extension().is_some_and(|x| x == "slab")));
    // The kernel keeps s0's pages; let them go, and the next read reaches
    // the daemon, which fetches s0 again.
    let served = blobs_served(&node);
    let f = std::fs::File::open(m.path("s0")).expect("open");
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
    let mut again = Vec::new();
    std::io::Read::read_to_end(&mut &f, &mut again).expect("read again");
    assert!(again == files[0], "the same bytes");
    assert_eq!(blobs_served(&node), served + 1, "fetched again");
}

#[test]
fn a_blob_torn_on_disk_is_fetched_again_after_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    let node = node_for(dir.path(), &up, &[]);
    let f1 = std::fs::read(up.work.join("f1")).expect("f1");
    let mut m = Mount::start(dir.path(), &node.url, REPO, &["--ref", "main", "--prefetch", "off"]);
    assert_eq!(std::fs::read(m.path("f1")).expect("read"), f1);
    assert_eq!(m.terminate(), Some(0), "SIGTERM unmounts cleanly");
    assert!(!is_mounted(&m.dir));
    drop(m);
    // A small blob lives in a slab: found by its bytes, wherever it is.
    let (on_disk, at) = where_on_disk(&dir.path().join("mount-data/blobs"), &f1).expect("f1's bytes are on disk");
    assert!(on_disk.extension().is_some_and(|x| x == "slab"), "{}", on_disk.display());
    flip_byte(&on_disk, at + 100);
    let served = blobs_served(&node);
    let m = Mount::start(dir.path(), &node.url, REPO, &["--ref", "main", "--prefetch", "off"]);
    assert_eq!(std::fs::read(m.path("f1")).expect("read"), f1, "never the torn bytes");
    assert_eq!(blobs_served(&node), served + 1, "fetched again");
}

#[test]
fn metadata_walks_fetch_no_blob_and_a_first_read_prefetches_what_a_walk_reads_next_in_its_subtree() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    // No symlink: a symlink's target is its blob, which readlink (ls -l)
    // still fetches; the index does not carry targets yet.
    for (path, len) in [("a.txt", 100), ("b.txt", 2000), ("c.txt", 30), ("sub/x.txt", 500), ("deep/only/leaf.txt", 5)] {
        let p = up.work.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content(len as u64, len)).expect("write");
    }
    up.commit_worktree("dirs");
    let node = node_for(dir.path(), &up, &[]);
    // The default settings: prefetch on.
    let m = Mount::start(dir.path(), &node.url, REPO, &["--ref", "main"]);
    let (served, requests) = (blobs_served(&node), blob_requests(&node));
    let walk = sh(
        &m.dir,
        "find . >/dev/null && du -a . >/dev/null && ls -lR . >/dev/null && find . -exec stat {} + >/dev/null",
    );
    assert!(walk.status.success(), "{}", String::from_utf8_lossy(&walk.stderr));
    // A read after the walk: its want reaches the mount's queue after any
    // the walk made, and the queue starts a prefetch no later than the
    // read's batch, so the node has seen any such request by the time the
    // read is answered. The file is alone in its directory: its own read
    // prefetches nothing (a first read's prefetch stays in its directory's
    // subtree).
    assert_eq!(std::fs::read(m.path("deep/only/leaf.txt")).expect("read"), content(5, 5));
    assert_eq!(blob_requests(&node) - requests, 1, "find, du, ls -lR and stat fetched nothing; the read one request");
    assert_eq!(blobs_served(&node) - served, 1);

    // A first read queues the next few files a walk reads within its
    // directory's subtree, below reads: on the walk (a.txt, b.txt, c.txt,
    // deep/only/leaf.txt, f1, f2, f3, sub/x.txt) the next four, of which
    // leaf.txt is local already.
    let served = blobs_served(&node);
    std::fs::read(m.path("a.txt")).expect("read");
    wait_until("the first window to be prefetched", Duration::from_secs(20), || blobs_served(&node) >= served + 4);
    let requests = blob_requests(&node);
    for f in ["b.txt", "c.txt"] {
        std::fs::read(m.path(f)).expect("read");
    }
    assert_eq!(blob_requests(&node), requests, "prefetched files open without a fetch");
    assert_eq!(blobs_served(&node), served + 4, "a first window of a few files, no more");
    // Reading on widens the window; every file is fetched once.
    for f in ["f1", "f2", "f3", "sub/x.txt"] {
        std::fs::read(m.path(f)).expect("read");
    }
    assert_eq!(blobs_served(&node), served + 7, "each fetched once, the local one not again");
}

#[test]
fn sixty_four_concurrent_first_opens_reach_the_node_in_a_handful_of_requests() {
    let dir = tempfile::tempdir().expect("tmp");
    // One file per directory: no prefetch joins in, only the reads batch.
    let up = one_file_per_dir(dir.path(), 64, 3000);
    let node = node_for(dir.path(), &up, &[]);
    let m = Mount::start(dir.path(), &node.url, REPO, &["--ref", "main"]);
    let (served, requests) = (blobs_served(&node), blob_requests(&node));
    let start = std::sync::Arc::new(std::sync::Barrier::new(64));
    let readers: Vec<_> = (0..64u64)
        .map(|i| {
            let (path, start) = (m.path(&format!("d{i:02}/f.txt")), start.clone());
            std::thread::spawn(move || {
                start.wait();
                (i, std::fs::read(path).expect("read"))
            })
        })
        .collect();
    for r in readers {
        let (i, bytes) = r.join().expect("reader");
        assert!(bytes == content(i, 3000), "file {i} has its bytes");
    }
    assert_eq!(blobs_served(&node) - served, 64);
    // Opens that arrive while a read batch is out join the next one: 4-5
    // requests here, with other mounts running beside it. One request per
    // open would be 64; with every read starting a batch of its own while
    // a slot was free, up to 21 were seen under load.
    let made = blob_requests(&node) - requests;
    assert!(made <= 12, "64 first opens at once reach the node in a handful of requests, not {made}");
}

/// A node that takes every request and never answers it.
fn silent_node() -> TcpServer {
    TcpServer::start(|mut conn| {
        let mut buf = [0u8; 4096];
        while conn.read(&mut buf).is_ok_and(|n| n > 0) {}
    })
}

#[test]
fn a_signal_ends_a_mount_still_waiting_for_its_tree() {
    let dir = tempfile::tempdir().expect("tmp");
    let silent = silent_node();
    let (child, mnt, _, run_dir, log, _) = Mount::spawn(dir.path(), &silent.url(), REPO, &[]);
    wait_until("the mount to be mounted and preparing", Duration::from_secs(20), || {
        let out = Command::new(trove_bin()).args(["mounts", "--json"]).env("TROVE_RUN_DIR", &run_dir).output();
        out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("\"preparing\""))
    });
    let code = stop_child(child, "trove mount", Duration::from_secs(20));
    assert_eq!(code, Some(130), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    assert!(!is_mounted(&mnt), "nothing left mounted");
    let out =
        Command::new(trove_bin()).args(["mounts", "--json"]).env("TROVE_RUN_DIR", &run_dir).output().expect("mounts");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]", "and no record");
}

#[test]
fn a_blob_too_large_to_read_whole_streams_from_the_pack() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    // 300 MiB: over the 256 MiB a node reads whole. Mostly zeros (quick to
    // pack), with markers, so an offset slip shows.
    let len = 300usize << 20;
    let mut big = vec![0u8; len];
    for (i, at) in (0..len).step_by(16 << 20).enumerate() {
        big[at..at + 8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    }
    big[len - 1] = 0xee;
    std::fs::write(up.work.join("asset.bin"), &big).expect("write");
    up.commit_worktree("a large asset");
    // Packed, as a served upstream has it (a push of one object unpacks it).
    git(&up.bare(), &["repack", "-adq"]);
    let node = node_for(dir.path(), &up, &[]);
    let m = Mount::start(dir.path(), &node.url, REPO, &["--ref", "main", "--prefetch", "off"]);
    assert_eq!(std::fs::metadata(m.path("asset.bin")).expect("stat").len(), len as u64);
    let served = blobs_served(&node);
    let got = std::fs::read(m.path("asset.bin")).expect("a large blob reads");
    assert!(got == big, "byte for byte");
    assert_eq!(blobs_served(&node), served + 1);
}

/// 260 MiB (over the 256 MiB a node reads whole) of zeros with the marker
/// `version` every 16 MiB: quick to pack, and each version a small delta
/// of the others.
fn large_asset(version: u64) -> Vec<u8> {
    let len = 260usize << 20;
    let mut big = vec![0u8; len];
    for (i, at) in (0..len).step_by(16 << 20).enumerate() {
        big[at..at + 16].copy_from_slice(&[(i as u64 + 1).to_le_bytes(), version.to_le_bytes()].concat());
    }
    big
}

/// The objects directory of the node's one mirror.
pub(crate) fn mirror_objects(data: &Path) -> std::path::PathBuf {
    let shards = std::fs::read_dir(data.join("shards")).expect("shards").flatten();
    let mirrors = shards.flat_map(|s| std::fs::read_dir(s.path().join("mirrors")).into_iter().flatten().flatten());
    mirrors.map(|m| m.path().join("objects")).find(|o| o.is_dir()).expect("a mirror")
}

#[test]
fn a_large_blob_stored_as_a_delta_or_loose_is_rebuilt_by_git() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    let bare = up.bare();
    let commit_asset = |version: u64| -> (String, Vec<u8>) {
        let big = large_asset(version);
        std::fs::write(up.work.join("asset.bin"), &big).expect("write");
        git(&up.work, &["add", "-A"]);
        git(&up.work, &["commit", "-qm", &format!("asset v{version}")]);
        git(&up.work, &["push", "-q", bare.to_str().expect("utf8"), "HEAD:main"]);
        (git(&up.work, &["rev-parse", "HEAD"]), big)
    };
    let (c1, v1) = commit_asset(1);
    let (c2, v2) = commit_asset(2);
    // Packed with deltas, as an upstream that raised core.bigFileThreshold
    // has them; a clone keeps them.
    git(&bare, &["-c", "core.bigFileThreshold=1g", "repack", "-adfq", "--window=10"]);
    let node = node_for(dir.path(), &up, &[]);
    let mount_at = |name: &str, commit: &str| {
        let base = dir.path().join(name);
        std::fs::create_dir_all(&base).expect("mkdir");
        Mount::start(&base, &node.url, REPO, &["--commit", commit, "--prefetch", "off"])
    };
    let m1 = mount_at("m1", &c1);
    let objects = mirror_objects(&dir.path().join("data"));
    let pack = std::fs::read_dir(objects.join("pack")).expect("packs").flatten().map(|e| e.path());
    let idx = pack.into_iter().find(|p| p.extension().is_some_and(|e| e == "idx")).expect("an index");
    let listing = git(&objects, &["verify-pack", "-v", idx.to_str().expect("utf8")]);
    let deltas = listing.lines().filter(|l| l.contains(" blob ") && l.split_whitespace().count() == 7).count();
    assert_eq!(deltas, 1, "one version is a delta in the mirror (else this proves nothing):\n{listing}");
    let m2 = mount_at("m2", &c2);
    let served = blobs_served(&node);
    assert!(std::fs::read(m1.path("asset.bin")).expect("v1 reads") == v1, "v1 byte for byte");
    assert!(std::fs::read(m2.path("asset.bin")).expect("v2 reads") == v2, "v2 byte for byte");
    assert_eq!(blobs_served(&node), served + 2);

    // A commit the mirror lacks: the node fetches it, and a fetch of a few
    // objects leaves them loose.
    let (c3, v3) = commit_asset(3);
    let m3 = mount_at("m3", &c3);
    let oid = git(&up.work, &["rev-parse", "HEAD:asset.bin"]);
    assert!(objects.join(&oid[..2]).join(&oid[2..]).is_file(), "v3 is loose in the mirror");
    assert!(std::fs::read(m3.path("asset.bin")).expect("v3 reads") == v3, "v3 byte for byte");
    assert_eq!(blobs_served(&node), served + 3);
}

#[test]
fn a_node_that_trickles_blobs_fails_the_open_within_a_deadline_that_grows_with_size() {
    let dir = tempfile::tempdir().expect("tmp");
    let small = b"twelve bytes".to_vec();
    let large = content(5, 1 << 20);
    let files = vec![("small.txt", small.clone()), ("large.bin", large.clone())];
    let by_oid: Vec<([u8; 20], Vec<u8>)> = files.iter().map(|(_, b)| (git_oid(b), b.clone())).collect();
    // Every frame's bytes, one a second: each gap is within --fetch-timeout,
    // the whole never arrives in time.
    let fake = fake_node_with(files, None, move |body, conn| {
        let mut out = Vec::new();
        for line in String::from_utf8_lossy(body).lines() {
            let oid = trove_engine::tree::parse_oid(line.trim()).expect("an id");
            let bytes = &by_oid.iter().find(|(o, _)| *o == oid).expect("asked for a file of the index").1;
            out.extend(frame(&oid, 0, bytes));
        }
        out.extend_from_slice(&trove_engine::tree::blobs::end_frame());
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", out.len());
        if conn.write_all(head.as_bytes()).is_ok() {
            trickle(conn, out);
        }
    });
    let m = Mount::start(dir.path(), &fake.url(), REPO, &["--prefetch", "off", "--fetch-timeout", "2s"]);
    // 12 bytes: --fetch-timeout (2 s) and nothing for the size.
    let t = Instant::now();
    let e = std::fs::read(m.path("small.txt")).expect_err("a trickle is no answer");
    assert_eq!(e.raw_os_error(), Some(EIO), "{e}");
    assert!(t.elapsed() < Duration::from_secs(6), "the small open took {:?}", t.elapsed());
    // 1 MiB: 2 s more at the documented 256 KiB/s.
    let t = Instant::now();
    let e = std::fs::read(m.path("large.bin")).expect_err("a trickle is no answer");
    assert_eq!(e.raw_os_error(), Some(EIO), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "the 1 MiB open took {:?}", t.elapsed());
    wait_until("trove mounts to say the node was too slow", Duration::from_secs(10), || {
        m.records()[0]["last_error"].as_str().is_some_and(|e| e.contains("slower than"))
    });
}

/// A tree index of `depth` nested directories and `files` files in the
/// deepest: a few MB compressed, `files` x ~2 KB of paths raw.
fn deep_index(depth: usize, files: usize) -> Vec<u8> {
    use std::io::Write as _;
    let mut raw = b"TROVETREE2\n".to_vec();
    raw.extend_from_slice(&[3; 20]);
    raw.extend_from_slice(&0i64.to_le_bytes());
    raw.extend_from_slice(&((depth + files) as u64).to_le_bytes());
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("zstd");
    encoder.write_all(&raw).expect("write");
    let mut entry = |kind: u8, size: u64, path: &[u8]| {
        let mut e = vec![kind, 0];
        e.extend_from_slice(&[7; 20]);
        e.extend_from_slice(&size.to_le_bytes());
        e.extend_from_slice(&(path.len() as u32).to_le_bytes());
        e.extend_from_slice(path);
        encoder.write_all(&e).expect("write");
    };
    let mut dir = b"d".to_vec();
    entry(4, 0, &dir);
    for _ in 1..depth {
        dir.extend_from_slice(b"/d");
        entry(4, 0, &dir);
    }
    for i in 0..files {
        let mut p = dir.clone();
        p.extend_from_slice(format!("/{i:07}").as_bytes());
        entry(1, 1, &p);
    }
    encoder.finish().expect("zstd")
}

#[test]
fn a_tree_index_too_large_to_hold_is_refused_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tmp");
    // 1000 nested directories and 300k files: ~600 MB of paths raw, over
    // the 512 MiB every index's paths must fit.
    let bomb = deep_index(1000, 300_000);
    assert!(bomb.len() < 16 << 20, "a small body: {} bytes", bomb.len());
    let fake = fake_node(vec![], |_| None, Some(bomb));
    let (mut child, mnt, _, _, log, _) = Mount::spawn(dir.path(), &fake.url(), REPO, &[]);
    let _cleanup = UnmountOnDrop(mnt.clone());
    let (code, peak) = watch_memory(&mut child, 1 << 30, Duration::from_secs(120));
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(peak < 1 << 30, "the mount's memory reached {} MB decoding a small index", peak >> 20);
    assert_eq!(code, Some(6), "exit 6, the index refused: {log}");
    assert!(log.contains("paths take more than"), "and why: {log}");
    assert!(!is_mounted(&mnt));
}

#[test]
fn an_index_that_calls_a_blob_empty_is_not_believed() {
    use trove_engine::tree::index::{encode, Entry, Kind};
    let dir = tempfile::tempdir().expect("tmp");
    let entry = |path: &str, bytes: &[u8], size: u64| Entry {
        kind: Kind::File,
        oid: git_oid(bytes),
        size,
        path: path.as_bytes().to_vec(),
        checkout: None,
        target: None,
    };
    // "lie" names the blob of "hello" with size 0; "empty" is the real empty blob.
    let index = encode(&[3; 20], 0, &[entry("lie", b"hello", 0), entry("empty", b"", 0)]);
    let fake = fake_node(vec![], |_| None, Some(index));
    // The kernel would show an empty file without asking the daemon, so
    // the whole index is refused.
    let (code, log) = Mount::fail(dir.path(), &fake.url(), REPO, &["--prefetch", "off"]);
    assert_eq!(code, Some(6), "exit 6, the index refused: {log}");
    assert!(log.contains("not the empty blob"), "{log}");
}

#[test]
fn a_blob_larger_than_the_whole_cache_is_refused_before_it_is_fetched() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().expect("tmp");
    let asked = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = asked.clone();
    let big = content(3, 3 << 20);
    let fake = fake_node(
        vec![("big.bin", big.clone()), ("small.txt", b"small".to_vec())],
        move |body| {
            counted.fetch_add(String::from_utf8_lossy(body).lines().count(), Ordering::SeqCst);
            let mut out = Vec::new();
            for line in String::from_utf8_lossy(body).lines() {
                let oid = trove_engine::tree::parse_oid(line.trim()).expect("an id");
                out.extend(frame(&oid, 0, if oid == git_oid(b"small") { b"small" } else { &big }));
            }
            out.extend_from_slice(&trove_engine::tree::blobs::end_frame());
            Some(out)
        },
        None,
    );
    let m = Mount::start(dir.path(), &fake.url(), REPO, &["--prefetch", "off", "--cache-capacity", "1M"]);
    let read = std::fs::read(m.path("big.bin"));
    assert_eq!(read.as_ref().map(Vec::len).map_err(|e| e.raw_os_error()), Err(Some(EIO)), "it cannot be kept");
    assert_eq!(asked.load(Ordering::SeqCst), 0, "never asked of the node");
    assert_eq!(std::fs::read(m.path("small.txt")).expect("a small file reads"), b"small");
    wait_until("trove mounts to say why", Duration::from_secs(10), || {
        m.records()[0]["last_error"].as_str().is_some_and(|e| e.contains("--cache-capacity"))
    });
}

#[test]
fn a_node_that_stalls_or_trickles_the_tree_index_fails_every_wait_and_the_mount_in_time() {
    let dir = tempfile::tempdir().expect("tmp");
    // One that takes the request and never answers, one that answers a
    // byte a second.
    let silent = silent_node();
    let trickle = TcpServer::start(|mut conn| {
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\nconnection: close\r\n\r\n";
        if conn.write_all(head).is_ok() {
            trickle(&mut conn, std::iter::repeat(b'x'));
        }
    });
    for (what, node) in [("stalled", silent.url()), ("trickled", trickle.url())] {
        let base = dir.path().join(what);
        let (child, mnt, _, run_dir, log, _) = Mount::spawn(&base, &node, REPO, &["--ready-timeout", "3s"]);
        let _cleanup = UnmountOnDrop(mnt.clone());
        let started = Instant::now();
        wait_until("the mount to be mounted and preparing", Duration::from_secs(20), || {
            let out = Command::new(trove_bin()).args(["mounts", "--json"]).env("TROVE_RUN_DIR", &run_dir).output();
            out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("\"preparing\""))
        });
        // Eight stats at once on two FUSE threads: none waits for another.
        let took: Vec<Duration> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let p = mnt.join(format!("f{i}"));
                    s.spawn(move || {
                        let _ = std::fs::metadata(&p);
                        started.elapsed()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        for t in &took {
            assert!(*t < Duration::from_secs(7), "{what}: a stat returned {t:?} after the mount started: {took:?}");
        }
        let code = exit_code(child, "trove mount", Duration::from_secs(15));
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(code, Some(5), "{what}: the mount fails: {log}");
        assert!(log.contains("--ready-timeout"), "{what}: and says why: {log}");
        assert!(!is_mounted(&mnt));
    }
}

#[test]
fn seeks_and_extended_attributes_are_answered_and_never_logged_as_missing() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    let node = node_for(dir.path(), &up, &[]);
    for (i, extra) in crate::mount::READ_PATHS.into_iter().enumerate() {
        let args: Vec<&str> = ["--ref", "main"].into_iter().chain(extra.iter().copied()).collect();
        let m = Mount::start(&dir.path().join(format!("m{i}")), &node.url, REPO, &args);
        let file = std::fs::read_dir(&m.dir)
            .expect("ls")
            .map(|e| e.expect("entry").path())
            .find(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0))
            .expect("a file");
        let f = std::fs::File::open(&file).expect("open");
        let len = f.metadata().expect("stat").len();
        use rustix::fs::{seek, SeekFrom};
        assert_eq!(seek(&f, SeekFrom::Data(0)).expect("SEEK_DATA"), 0, "a blob is data from its start");
        assert_eq!(seek(&f, SeekFrom::Hole(0)).expect("SEEK_HOLE"), len, "and its one hole is its end");
        assert_eq!(seek(&f, SeekFrom::Data(len)), Err(rustix::io::Errno::NXIO), "no data past the end");
        for _ in 0..2 {
            let mut names = [0u8; 256];
            match rustix::fs::listxattr(&file, &mut names) {
                Ok(n) => assert_eq!(n, 0, "no extended attributes"),
                Err(e) => assert_eq!(e, rustix::io::Errno::OPNOTSUPP),
            }
            let mut value = [0u8; 64];
            let got = rustix::fs::getxattr(&file, "user.trove", &mut value);
            assert!(matches!(got, Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NODATA)), "{got:?}");
        }
        drop(f);
        let log = m.log_text();
        assert!(!log.contains("Not Implemented"), "the mount logged an operation it does not answer: {log}");
    }
}

#[test]
fn trove_mounts_shows_absolute_paths_whatever_the_mount_was_given() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    let node = node_for(dir.path(), &up, &[]);
    std::fs::create_dir_all(dir.path().join("mnt")).expect("mkdir");
    let run_dir = dir.path().join("run");
    let child = Command::new(trove_bin())
        .args(["mount", REPO, "mnt", "--node", &node.url, "--foreground", "--data-dir", "rel-data"])
        .current_dir(dir.path())
        .env("TROVE_RUN_DIR", &run_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn trove mount");
    /// Stops the mount and unmounts, also when the test fails.
    struct Stop(std::process::Child, std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
            let _ = self.0.wait();
            let _ = UnmountOnDrop(self.1.clone());
        }
    }
    let mut stop = Stop(child, dir.path().join("mnt"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stop.0.stdout.take().expect("stdout")), &mut line)
        .expect("read");
    assert!(line.starts_with("ready:"), "{line}");
    let out =
        Command::new(trove_bin()).args(["mounts", "--json"]).env("TROVE_RUN_DIR", &run_dir).output().expect("mounts");
    let recs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let abs = std::fs::canonicalize(dir.path()).expect("canonical");
    assert_eq!(recs[0]["mountpoint"], abs.join("mnt").to_str().expect("utf8"), "{recs}");
    assert_eq!(recs[0]["data_dir"], abs.join("rel-data").to_str().expect("utf8"), "{recs}");
}

#[test]
fn a_serial_walk_of_a_large_directory_is_fetched_ahead_in_few_requests() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    // 600 files whose sizes do not follow their names: a prefetch by size
    // would fetch the walker's next file last.
    let d = up.work.join("many");
    std::fs::create_dir_all(&d).expect("mkdir");
    for i in 0..600u64 {
        std::fs::write(d.join(format!("f{i:03}")), content(i, 100 + ((i * 7919) % 600) as usize)).expect("write");
    }
    up.commit_worktree("a large directory");
    let node = node_for(dir.path(), &up, &[]);
    let m = Mount::start(dir.path(), &node.url, REPO, &["--ref", "main"]);
    let before = blob_requests(&node);
    // grep -r's way: one reader, name order, one file after the other.
    let out = sh(&m.dir, "grep -r -c zq9xj7wv4 many > /dev/null; echo $?");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "grep read every file and matched none");
    let requests = blob_requests(&node) - before;
    // A request per file (600) when prefetch ran behind the walker.
    assert!(requests <= 60, "600 files read in order took {requests} requests");
}

#[test]
fn a_serial_walk_across_many_small_directories_is_fetched_ahead_in_few_requests() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    // 80 directories of 4 files, the shape of a real source tree: a
    // prefetch that stays in the directory being read leaves the walker
    // waiting at each new one (a read request per directory).
    for d in 0..80u64 {
        let p = up.work.join(format!("src/d{d:02}"));
        std::fs::create_dir_all(&p).expect("mkdir");
        for f in 0..4u64 {
            std::fs::write(p.join(format!("f{f}.c")), content(d * 10 + f, 300)).expect("write");
        }
    }
    up.commit_worktree("a tree of small directories");
    let node = node_for(dir.path(), &up, &[]);
    let m = Mount::start(dir.path(), &node.url, REPO, &["--ref", "main"]);
    let (before, served) = (blob_requests(&node), blobs_served(&node));
    let out = sh(&m.dir, "grep -r -c zq9xj7wv4 src > /dev/null; echo $?");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "grep read every file and matched none");
    let requests = blob_requests(&node) - before;
    assert!(requests <= 30, "320 files in 80 directories read in order took {requests} requests");
    assert_eq!(blobs_served(&node) - served, 320, "each file fetched once");
}

#[test]
fn a_repo_the_upstream_lacks_exits_3_over_file_and_git_daemon() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    let port = free_port();
    let _daemon = crate::git::daemon(&up.root, port);
    let over_file = node_for(dir.path(), &up, &[]);
    let upstream = format!("example.test=git://127.0.0.1:{port}");
    let over_daemon = Node::start(&dir.path().join("data-daemon"), &["--upstream", upstream.as_str()]);
    for (i, node) in [&over_file, &over_daemon].into_iter().enumerate() {
        let (code, log) = Mount::fail(&dir.path().join(format!("m{i}")), &node.url, "example.test/org/nope", &[]);
        assert_eq!(code, Some(3), "no such repo upstream ({}): {log}", ["file://", "git://"][i]);
    }
}

#[test]
fn umount_of_a_busy_mount_says_it_detached_lazily_and_who_holds_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let (up, _) = crate::tree::rich_upstream(dir.path());
    let node = node_for(dir.path(), &up, &[]);
    let m = Mount::start(dir.path(), &node.url, REPO, &[]);
    let held = std::fs::File::open(m.path("src/main.rs")).expect("open");
    let mut sleeper = Command::new("sleep").arg("600").current_dir(m.path("src")).spawn().expect("sleep");
    let (code, out) = m.umount();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    drop(held);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("lazily: it is busy"), "{out}");
    assert!(out.contains(&format!("pid {} (sleep)", sleeper.id())), "the holder is named: {out}");
    assert!(!is_mounted(&m.dir), "detached");
}

#[test]
fn a_mount_run_by_another_user_than_root_logs_no_io_library_warning() {
    let dir = tempfile::tempdir().expect("tmp");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    std::fs::create_dir_all(dir.path().join("mnt")).expect("mkdir");
    std::fs::set_permissions(dir.path().join("mnt"), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(trove_bin())
        .args(["mount", REPO])
        .arg(dir.path().join("mnt"))
        .args(["--node", &nobody, "--data-dir"])
        .arg(dir.path().join("data"))
        .env("TROVE_RUN_DIR", dir.path().join("run"))
        .env("HOME", dir.path())
        .output()
        .expect("setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    // It fails (no FUSE for this user, or no node); what it says is the point.
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("glommio") && !err.contains("WARN"), "no I/O library noise: {err}");
    assert!(err.contains("trove:"), "the failure itself is said: {err}");
    assert!(!is_mounted(&dir.path().join("mnt")));
}

#[test]
fn a_first_mount_of_a_repo_new_to_the_node_says_its_progress_and_waits_while_it_lasts() {
    let dir = tempfile::tempdir().expect("tmp");
    let up = Upstream::new(dir.path());
    // 12 MB that do not compress, through a 1.5 MB/s link: a clone of
    // about 8 s, well past the mount's 3 s --ready-timeout.
    std::fs::write(up.work.join("big.bin"), content(99, 12 << 20)).expect("write");
    up.commit_worktree("a large file");
    let daemon_port = free_port();
    let _daemon = crate::git::daemon(&up.root, daemon_port);
    let link = crate::upstream_faults::throttled_proxy(daemon_port, 1_500_000);
    let upstream = format!("example.test=git://127.0.0.1:{}", link.port);
    let node = Node::start(&dir.path().join("data"), &["--upstream", upstream.as_str()]);
    let started = Instant::now();
    // An `ls` while the node clones waits for the tree, not EIO at 3 s.
    let listed = {
        let d = dir.path().join("mnt");
        std::thread::spawn(move || {
            wait_until("the mount to be there", Duration::from_secs(30), || is_mounted(&d));
            (Instant::now(), std::fs::read_dir(&d).map(|e| e.count()))
        })
    };
    let args = ["--ref", "main", "--ready-timeout", "3s"];
    let m = Mount::start_within(dir.path(), &node.url, REPO, &args, Duration::from_secs(90));
    assert!(started.elapsed() > Duration::from_secs(4), "the clone took past --ready-timeout");
    let log = m.log_text();
    assert!(log.contains("the node is cloning example.test/org/repo"), "progress is said: {log}");
    assert!(log.contains(" MB received"), "{log}");
    let (asked, listing) = listed.join().expect("ls");
    assert!(listing.as_ref().is_ok_and(|n| *n >= 2), "the listing waited and saw the tree: {listing:?}");
    assert!(asked.elapsed() < started.elapsed(), "and it was asked before the mount was ready");
    assert_eq!(std::fs::read(m.path("big.bin")).expect("read").len(), 12 << 20);
}

/// The file under `dir` holding `bytes`, and where in it.
fn where_on_disk(dir: &std::path::Path, bytes: &[u8]) -> Option<(std::path::PathBuf, u64)> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let path = e.path();
        if path.is_dir() {
            if let Some(found) = where_on_disk(&path, bytes) {
                return Some(found);
            }
            continue;
        }
        let held = std::fs::read(&path).ok()?;
        if let Some(at) = held.windows(bytes.len()).position(|w| w == bytes) {
            return Some((path, at as u64));
        }
    }
    None
}
