//! Snapshots, bundles, ensure-refs, `trove restore` and a cold node's start
//! from S3, with stock git as upstream and client and curl/ureq over HTTP.

use crate::git::{git, node_for, node_for_relative, repo_url, Upstream};
use crate::harness::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn restore(node: &Node, dir: &Path, extra: &[&str]) -> std::process::Output {
    restore_from(&node.url, dir, extra)
}

pub(crate) fn restore_from(url: &str, dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(trove_bin())
        .args(["restore", "example.test/org/repo"])
        .arg(dir)
        .args(["--url", url])
        .args(extra)
        .output()
        .expect("run trove restore")
}

/// A server posing as a node: every request gets `archive` as the
/// snapshot of `commit`, whole (200, so no ranges).
fn evil_node(archive: Vec<u8>, commit: String) -> TcpServer {
    use std::io::{Read, Write};
    TcpServer::start(move |mut conn| {
        let mut head = [0u8; 4096];
        let _ = conn.read(&mut head);
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/zstd\r\nContent-Length: {}\r\nX-Trove-Snapshot-Commit: {commit}\r\nConnection: close\r\n\r\n",
            archive.len()
        );
        let _ = conn.write_all(reply.as_bytes());
        let _ = conn.write_all(&archive);
    })
}

fn restore_ok(node: &Node, dir: &Path, extra: &[&str]) {
    let out = restore(node, dir, extra);
    assert!(out.status.success(), "trove restore failed: {}", String::from_utf8_lossy(&out.stderr));
}

pub(crate) fn git_stats(node: &Node, name: &str) -> u64 {
    node.stats()["git"][name].as_u64().expect("git stats are numbers")
}

/// Unpacks a snapshot body with the system's zstd and tar.
fn untar(body: &[u8], dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let archive = dir.with_extension("tar.zst");
    std::fs::write(&archive, body).expect("write archive");
    run("tar", &["--zstd", "-xf", archive.to_str().expect("utf8"), "-C", dir.to_str().expect("utf8")]);
}

#[test]
fn one_build_serves_concurrent_requests_and_restore_makes_a_clean_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut up = Upstream::new(dir.path());
    // A symlink and an executable, which a checkout keeps.
    std::os::unix::fs::symlink("f1", up.work.join("link")).expect("symlink");
    std::fs::write(up.work.join("run.sh"), "#!/bin/sh\n").expect("write");
    run("chmod", &["+x", up.work.join("run.sh").to_str().expect("utf8")]);
    let head = up.commit(1);
    let node = node_for_relative(dir.path(), &up);
    let url = format!("{}/snapshot.tar.zst", repo_url(&node));

    // 8 concurrent cold requests: one build, identical bytes.
    let bodies: Vec<Resp> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8).map(|_| s.spawn(|| get(&url))).collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for r in &bodies {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-trove-snapshot-commit"), Some(head.as_str()));
        assert_eq!(r.body, bodies[0].body, "every request gets the same archive");
    }
    assert_eq!(git_stats(&node, "snapshot_builds"), 1);

    // Stored (once the build is in the tiers): ETag, length, ranges,
    // conditionals.
    wait_until("the snapshot is stored", Duration::from_secs(10), || get(&url).header("etag").is_some());
    let whole = get(&url);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, bodies[0].body);
    let etag = whole.header("etag").expect("a stored snapshot has an ETag").to_owned();
    assert_eq!(whole.header("content-length"), Some(whole.body.len().to_string().as_str()));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    let part = http("GET", &url, &[("Range", "bytes=10-99"), ("If-Match", &etag)], Vec::new());
    assert_eq!(part.status, 206);
    assert_eq!(part.body, whole.body[10..100]);
    assert_eq!(http("GET", &url, &[("If-Match", "\"nope\"")], Vec::new()).status, 412);
    assert_eq!(http("GET", &url, &[("If-None-Match", &etag)], Vec::new()).status, 304);
    assert_eq!(http("HEAD", &url, &[], Vec::new()).header("x-trove-snapshot-commit"), Some(head.as_str()));
    assert_eq!(git_stats(&node, "snapshot_builds"), 1, "HEAD did not move: no rebuild");

    // The archive is a clone: files, modes, a clean status, origin upstream.
    let plain = dir.path().join("plain");
    untar(&whole.body, &plain);
    assert_eq!(std::fs::read_link(plain.join("link")).expect("a symlink"), PathBuf::from("f1"));
    assert_eq!(git(&plain, &["status", "--porcelain"]), "");
    assert!(!plain.join(".git/hooks").exists(), "snapshots are built without hooks");
    assert_eq!(git(&plain, &["remote", "get-url", "origin"]), format!("file://{}", up.root.join("org/repo").display()));

    // trove restore: same tree, the index holds the files' stat data (git
    // diff-files compares stat data only and refreshes nothing), and `git
    // pull` works.
    let tree = dir.path().join("tree");
    restore_ok(&node, &tree, &[]);
    assert_eq!(git(&tree, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(&tree, &["diff-files", "--name-only"]), "", "every file's stat data is in the index");
    let bare = dir.path().join("no-refresh");
    restore_ok(&node, &bare, &["--no-refresh"]);
    assert_ne!(git(&bare, &["diff-files", "--name-only"]), "", "--no-refresh leaves stat data out");
    assert_eq!(git(&tree, &["status", "--porcelain"]), "");
    assert!(std::fs::metadata(tree.join("run.sh")).expect("stat").permissions().mode() & 0o111 != 0);
    git(&tree, &["fsck", "--no-progress"]);
    let next = up.commit(1);
    git(&tree, &["pull", "-q", "--ff-only"]);
    assert_eq!(git(&tree, &["rev-parse", "HEAD"]), next);

    // A target that is not empty is refused, and left alone.
    let out = restore(&node, &tree, &[]);
    assert_eq!(out.status.code(), Some(8), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(git(&tree, &["rev-parse", "HEAD"]), next);
}

use std::os::unix::fs::PermissionsExt;

#[test]
fn bundles_cover_a_moved_head_and_snapshots_rebuild_only_when_it_moved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut up = Upstream::new(dir.path());
    let c1 = git(&up.work, &["rev-parse", "HEAD"]);
    let node = node_for(dir.path(), &up, &["--refs-ttl", "0s"]);
    let base = repo_url(&node);
    let snap = format!("{base}/snapshot.tar.zst");
    assert_eq!(get(&snap).header("x-trove-snapshot-commit"), Some(c1.as_str()));
    let c2 = up.commit(2);

    // HEAD moved, the snapshot is younger than --snapshot-interval (1h):
    // served as it is, with a bundle on offer.
    let r = get(&snap);
    assert_eq!(r.header("x-trove-snapshot-commit"), Some(c1.as_str()));
    let bundle_url = r.header("x-trove-bundle-url").expect("a bundle is advertised").to_owned();
    assert_eq!(bundle_url, format!("/git/example.test/org/repo/snapshot.bundle?base={c1}"));
    let b = get(&node.url(&bundle_url));
    assert_eq!(b.status, 200);
    assert_eq!(b.header("content-type"), Some("application/x-git-bundle"));
    let tree = dir.path().join("t1");
    untar(&r.body, &tree);
    let bundle_file = dir.path().join("b.bundle");
    std::fs::write(&bundle_file, &b.body).expect("write");
    git(&tree, &["bundle", "verify", "-q", bundle_file.to_str().expect("utf8")]);
    git(&tree, &["fetch", "-q", bundle_file.to_str().expect("utf8"), "HEAD"]);
    assert_eq!(git(&tree, &["rev-parse", "FETCH_HEAD"]), c2);
    // Cached: the second ask builds nothing.
    assert_eq!(get(&node.url(&bundle_url)).body, b.body);
    assert_eq!(git_stats(&node, "bundle_builds"), 1);

    let bundle = |q: &str| get(&format!("{base}/snapshot.bundle?{q}")).status;
    assert_eq!(bundle(&format!("base={c2}")), 204, "base == HEAD");
    assert_eq!(bundle(&format!("base={}", "1".repeat(40))), 404, "unknown base");
    for bad in ["base=xyz", "base=", "", &format!("base={}", &c1[..39]), "base=../../etc"] {
        assert_eq!(bundle(bad), 400, "{bad}");
    }

    // trove restore applies the bundle: the tree is at c2.
    let restored = dir.path().join("t2");
    restore_ok(&node, &restored, &[]);
    assert_eq!(git(&restored, &["rev-parse", "HEAD", "origin/main"]), format!("{c2}\n{c2}"));
    assert_eq!(git(&restored, &["status", "--porcelain"]), "");
    assert_eq!(git_stats(&node, "snapshot_builds"), 1);

    // With --snapshot-interval 0s a moved HEAD is rebuilt in the background;
    // an unmoved one never is.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let eager = node_for(dir2.path(), &up, &["--refs-ttl", "0s", "--snapshot-interval", "0s"]);
    let snap2 = format!("{}/snapshot.tar.zst", repo_url(&eager));
    assert_eq!(get(&snap2).header("x-trove-snapshot-commit"), Some(c2.as_str()));
    for _ in 0..3 {
        assert_eq!(get(&snap2).header("x-trove-snapshot-commit"), Some(c2.as_str()));
    }
    assert_eq!(git_stats(&eager, "snapshot_builds"), 1, "HEAD did not move: no rebuild");
    let c3 = up.commit(1);
    wait_until("the snapshot is rebuilt at the new HEAD", Duration::from_secs(30), || {
        get(&snap2).header("x-trove-snapshot-commit") == Some(c3.as_str())
    });
    assert_eq!(git_stats(&eager, "snapshot_builds"), 2);
}

#[test]
fn ensure_refs_fetches_what_is_missing_and_restore_checks_out_refs_and_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut up = Upstream::new(dir.path());
    let c1 = git(&up.work, &["rev-parse", "HEAD"]);
    let node = node_for(dir.path(), &up, &[]);
    let ensure = |body: &str| http("POST", &format!("{}/ensure-refs", repo_url(&node)), &[], body.as_bytes().to_vec());

    let r = ensure(&format!(r#"{{"refs": ["main", "refs/heads/nope"], "commits": ["{c1}"]}}"#));
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["refs"]["main"], c1.as_str());
    assert!(j["refs"]["refs/heads/nope"].is_null());
    assert_eq!(j["commits"][&c1], true);
    assert_eq!(j["missing"], 1);

    // A commit and a branch pushed after the mirror was made: one fetch.
    let c2 = up.commit(1);
    git(&up.work, &["push", "-q", up.bare().to_str().expect("utf8"), "HEAD:refs/heads/topic"]);
    let j = ensure(&format!(r#"{{"refs": ["topic"], "commits": ["{c2}"]}}"#)).json();
    assert_eq!(j["fetched"], true);
    assert_eq!(j["refs"]["topic"], c2.as_str());
    assert_eq!(j["commits"][&c2], true);
    assert_eq!(j["missing"], 0);

    for bad in [
        "",
        "{",
        r#"{"refs": "main"}"#,
        r#"{"refs": ["a b"]}"#,
        r#"{"refs": ["x..y"]}"#,
        r#"{"commits": ["zz"]}"#,
        r#"{"other": 1}"#,
    ] {
        assert_eq!(ensure(bad).status, 400, "{bad}");
    }

    let t = dir.path().join("at-commit");
    restore_ok(&node, &t, &["--commit", &c1]);
    assert_eq!(git(&t, &["rev-parse", "HEAD"]), c1);
    let c3 = up.commit(1);
    let t = dir.path().join("at-new-commit");
    restore_ok(&node, &t, &["--commit", &c3]);
    assert_eq!(git(&t, &["rev-parse", "HEAD"]), c3);
    assert_eq!(git(&t, &["status", "--porcelain"]), "");
    let t = dir.path().join("at-ref");
    restore_ok(&node, &t, &["--ref", "topic", "--writers", "2"]);
    assert_eq!(git(&t, &["rev-parse", "HEAD"]), c2);
    let out = restore(&node, &dir.path().join("no-such"), &["--commit", &"2".repeat(40)]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.path().join("no-such").exists(), "a failed restore leaves no target");
}

/// One malicious archive entry, built with raw header bytes (the tar crate
/// refuses to write such names).
struct Evil {
    name: &'static str,
    kind: tar::EntryType,
    link: Option<&'static str>,
}

fn evil_archive(entries: &[Evil]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut ok = tar::Header::new_gnu();
    ok.set_size(3);
    ok.set_mode(0o644);
    ok.set_cksum();
    b.append_data(&mut ok, "fine.txt", &b"ok\n"[..]).expect("append");
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().expect("gnu").name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        h.set_entry_type(e.kind);
        h.set_mode(0o644);
        let data: &[u8] = if e.kind == tar::EntryType::Regular { b"pwned\n" } else { b"" };
        h.set_size(data.len() as u64);
        if let Some(l) = e.link {
            h.as_gnu_mut().expect("gnu").linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, data).expect("append");
    }
    zstd::encode_all(&b.into_inner().expect("tar")[..], 3).expect("zstd")
}

#[test]
fn restore_refuses_archives_that_escape_the_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The threat is a compromised or impersonated node: `trove restore`
    // is pointed at a server that answers with a malicious archive.
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let cases: Vec<(&str, Vec<Evil>)> = vec![
        ("dotdot", vec![Evil { name: "../../outside/pwned", kind: tar::EntryType::Regular, link: None }]),
        ("absolute", vec![Evil { name: "/tmp/trove-pwned-abs", kind: tar::EntryType::Regular, link: None }]),
        ("symlink out", vec![Evil { name: "esc", kind: tar::EntryType::Symlink, link: Some("../../outside") }]),
        ("absolute symlink", vec![Evil { name: "esc", kind: tar::EntryType::Symlink, link: Some("/etc") }]),
        (
            "write through a symlink",
            vec![
                Evil { name: "d/esc", kind: tar::EntryType::Symlink, link: Some("../..") },
                Evil { name: "d/esc/outside/pwned", kind: tar::EntryType::Regular, link: None },
            ],
        ),
        (
            "a chain of links that each stay inside",
            vec![
                Evil { name: "a/b", kind: tar::EntryType::Symlink, link: Some("..") },
                Evil { name: "c", kind: tar::EntryType::Symlink, link: Some("a/b/..") },
            ],
        ),
        (
            // Each link stays inside lexically, but `c` resolves to the
            // target's parent: a write through it must not follow it.
            "a write through a chain of links",
            vec![
                Evil { name: "a/b", kind: tar::EntryType::Symlink, link: Some("..") },
                Evil { name: "c", kind: tar::EntryType::Symlink, link: Some("a/b/..") },
                Evil { name: "c/pwned", kind: tar::EntryType::Regular, link: None },
            ],
        ),
        ("hard link out", vec![Evil { name: "h", kind: tar::EntryType::Link, link: Some("../../outside/x") }]),
        (
            // `d/e/s -> ../x` stays inside; a hard link to it at the top is
            // the same symlink one directory up, pointing out.
            "a hard link to an in-tree symlink",
            vec![
                Evil { name: "d/e/s", kind: tar::EntryType::Symlink, link: Some("../../x") },
                Evil { name: "h", kind: tar::EntryType::Link, link: Some("d/e/s") },
            ],
        ),
        ("device", vec![Evil { name: "dev", kind: tar::EntryType::Char, link: None }]),
        (
            // Writing the tree's `h` would rewrite git's HEAD.
            "a hard link into .git",
            vec![
                Evil { name: ".git/HEAD", kind: tar::EntryType::Regular, link: None },
                Evil { name: "h", kind: tar::EntryType::Link, link: Some(".git/HEAD") },
            ],
        ),
    ];
    for (i, (what, entries)) in cases.into_iter().enumerate() {
        let case_dir = dir.path().join(format!("case{i}"));
        std::fs::create_dir_all(&case_dir).expect("mkdir");
        let evil = evil_node(evil_archive(&entries), format!("{:040x}", i + 1));
        let target = case_dir.join("target");
        let out = restore_from(&evil.url(), &target, &[]);
        assert_eq!(out.status.code(), Some(6), "{what}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("refused"), "{what}");
        assert!(!target.exists(), "{what}: a refused archive leaves no target");
        assert_eq!(std::fs::read_dir(&outside).expect("ls").count(), 0, "{what}: nothing written outside");
        assert!(!Path::new("/tmp/trove-pwned-abs").exists(), "{what}");
        assert!(!case_dir.join("pwned").exists(), "{what}: nothing written next to the target");
    }
}

pub(crate) fn s3_node(s3: &S3, dir: &Path, up: &Upstream, extra: &[&str]) -> Node {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut args = s3.flags();
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    node_for(dir, up, &refs)
}

fn remote_gets(node: &Node) -> u64 {
    node.stats()["tiers"]["remote"]["get_requests"].as_u64().expect("a number")
}

#[test]
fn a_cold_node_serves_the_s3_snapshot_at_once_and_restores_its_mirror_from_s3() {
    let mut s3 = S3::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut up = Upstream::new(dir.path());
    // 24 MB that do not compress: a reader that stops reading holds the
    // snapshot's stream open (socket buffers take a few MB).
    std::fs::write(up.work.join("big.bin"), bytes(7, 24 << 20)).expect("write");
    let head = up.commit(1);

    // Node A builds the snapshot and puts it, and the mirror snapshot, in S3.
    let a = s3_node(&s3, &dir.path().join("a"), &up, &[]);
    let url_a = format!("{}/snapshot.tar.zst", repo_url(&a));
    assert_eq!(get(&url_a).status, 200);
    wait_until("A uploaded the mirror snapshot", Duration::from_secs(30), || {
        a.log_text().contains("mirror snapshot uploaded")
    });
    let reference = get(&url_a).body;

    // Node B, empty disk: 8 concurrent cold requests stream from S3 with
    // no mirror and no build.
    let b = s3_node(&s3, &dir.path().join("b"), &up, &[]);
    let url_b = format!("{}/snapshot.tar.zst", repo_url(&b));
    let answers: Vec<Resp> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8).map(|_| s.spawn(|| get(&url_b))).collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for r in &answers {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-trove-snapshot-commit"), Some(head.as_str()));
        assert!(r.body == reference, "every cold request gets the stored snapshot");
    }
    assert_eq!(git_stats(&b, "snapshot_builds"), 0, "served from S3, not built");
    // Then the mirror comes from the mirror snapshot, not a clone.
    wait_until("B restored its mirror from S3", Duration::from_secs(30), || git_stats(&b, "mirror_restores") == 1);
    let clone = dir.path().join("clone-b");
    git(dir.path(), &["clone", "-q", &repo_url(&b), clone.to_str().expect("utf8")]);
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]), head);

    // Node C, empty disk, one request: B's eight cost it no more S3 GETs
    // (pointer, snapshot, mirror snapshot: each fetched once).
    let c = s3_node(&s3, &dir.path().join("c"), &up, &[]);
    assert!(get(&format!("{}/snapshot.tar.zst", repo_url(&c))).body == reference);
    wait_until("C restored its mirror from S3", Duration::from_secs(30), || git_stats(&c, "mirror_restores") == 1);
    assert_eq!(remote_gets(&b), remote_gets(&c), "8 concurrent cold requests cost the S3 GETs of one");

    // Node E: a reader that stops after the first bytes keeps its cold
    // serve open, and the mirror's restore waits for it to end.
    let e = s3_node(&s3, &dir.path().join("e"), &up, &[]);
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", e.port)).expect("connect");
    let path = "/git/example.test/org/repo/snapshot.tar.zst";
    write!(slow, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").expect("send");
    let mut first = [0u8; 64 << 10];
    slow.read_exact(&mut first).expect("the first bytes of the snapshot");
    assert!(first.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first[..64]));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(git_stats(&e, "mirror_restores"), 0, "the restore waits while a cold serve is in flight");
    let mut rest = Vec::new();
    slow.read_to_end(&mut rest).expect("the rest of the snapshot");
    assert!(first.len() + rest.len() > reference.len(), "the whole snapshot arrived");
    wait_until("E restored its mirror after the serve", Duration::from_secs(30), || {
        git_stats(&e, "mirror_restores") == 1
    });

    // S3 down on the cold path: node D clones and builds instead.
    let d = s3_node(&s3, &dir.path().join("d"), &up, &["--s3-timeout", "2s"]);
    s3.stop();
    let r = get(&format!("{}/snapshot.tar.zst", repo_url(&d)));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-trove-snapshot-commit"), Some(head.as_str()));
    assert_eq!(git_stats(&d, "snapshot_builds"), 1);
    let tree = dir.path().join("tree-d");
    untar(&r.body, &tree);
    assert_eq!(git(&tree, &["status", "--porcelain"]), "");
}

/// Snapshot files being built, anywhere under the data dir.
fn builds_in_progress(data: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![data.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "zst") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn kill_9_during_a_snapshot_build_serves_no_partial_snapshot_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::new(dir.path());
    // Big enough that the build takes a while: 40 MB of incompressible files.
    for i in 0..800 {
        std::fs::write(up.work.join(format!("big{i}")), bytes(1000 + i, 50_000)).expect("write");
    }
    git(&up.work, &["add", "-A"]);
    git(&up.work, &["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "big"]);
    git(&up.work, &["push", "-q", up.bare().to_str().expect("utf8"), "HEAD:main"]);
    let head = git(&up.work, &["rev-parse", "HEAD"]);
    let mut node = node_for(dir.path(), &up, &[]);
    let url = format!("{}/snapshot.tar.zst", repo_url(&node));
    let data = node.data_dir.clone();
    let u = url.clone();
    let client = std::thread::spawn(move || get(&u));
    wait_until("the build has started writing", Duration::from_secs(60), || {
        builds_in_progress(&data).iter().any(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
    });
    node.kill9();
    // Its response was cut mid-stream; what matters is what comes next.
    let _ = client.join();
    node.restart();
    assert!(builds_in_progress(&node.data_dir).is_empty(), "startup wiped the partial build");
    let r = get(&url);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-trove-snapshot-commit"), Some(head.as_str()));
    let tree = dir.path().join("tree");
    restore_ok(&node, &tree, &[]);
    assert_eq!(git(&tree, &["status", "--porcelain"]), "");
    git(&tree, &["fsck", "--no-progress"]);
}

/// A server posing as a node whose every body past the part restore
/// asked for is endless: with `ranges`, `snapshot` answers the first range
/// (206, so the rest is fetched in ranges) and the other ranges never end;
/// without, it answers whole (200). ensure-refs answers with a JSON string
/// that never ends.
fn endless_node(snapshot: Vec<u8>, commit: String, ranges: bool) -> TcpServer {
    use std::io::{BufRead, BufReader, Write};
    TcpServer::start(move |conn| {
        let mut reader = BufReader::new(conn.try_clone().expect("clone"));
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                break;
            }
            head.push(line.to_ascii_lowercase());
        }
        let first = head.first().cloned().unwrap_or_default();
        let range =
            head.iter().find_map(|h| h.strip_prefix("range: bytes=")).map(|r| r.trim().to_owned()).filter(|_| ranges);
        let mut conn = conn;
        let endless = |conn: &mut std::net::TcpStream, head: String, unit: &[u8]| {
            if conn.write_all(head.as_bytes()).is_err() {
                return;
            }
            let chunk = unit.repeat((1 << 16) / unit.len());
            while conn.write_all(&chunk).is_ok() {}
        };
        if first.contains("ensure-refs") {
            let h =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"missing\":0,\"x\":\"";
            endless(&mut conn, h.to_owned(), b"a");
        } else if range.as_deref().is_some_and(|r| r.starts_with("0-")) {
            let first = snapshot.len().min(8 << 20);
            let h = format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-{}/{}\r\nContent-Length: {first}\r\nETag: \"e\"\r\nX-Trove-Snapshot-Commit: {commit}\r\nConnection: close\r\n\r\n",
                first - 1,
                snapshot.len()
            );
            let _ = conn.write_all(h.as_bytes());
            let _ = conn.write_all(&snapshot[..first]);
        } else if range.is_some() {
            // Any later range: a 206 whose body never ends.
            let h = format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 8388608-16777215/{}\r\nETag: \"e\"\r\nConnection: close\r\n\r\n", snapshot.len());
            endless(&mut conn, h, &[0u8]);
        } else {
            let h = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Trove-Snapshot-Commit: {commit}\r\nConnection: close\r\n\r\n",
                snapshot.len()
            );
            let _ = conn.write_all(h.as_bytes());
            let _ = conn.write_all(&snapshot);
        }
    })
}

/// `trove restore` from `url` into `target`, killed past 1 GB: its exit
/// code, peak memory and stderr.
fn restore_watched(url: &str, target: &Path, extra: &[&str]) -> (Option<i32>, u64, String) {
    let mut child = Command::new(trove_bin())
        .args(["restore", "example.test/org/repo"])
        .arg(target)
        .args(["--url", url, "--quiet"])
        .args(extra)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("trove restore");
    let (code, peak) = watch_memory(&mut child, 1 << 30, Duration::from_secs(120));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("stderr");
    (code, peak, err)
}

#[test]
fn restore_reads_no_node_body_past_what_it_asked_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut up = Upstream::new(dir.path());
    // Over one range, and not compressible: the rest comes in ranges.
    std::fs::write(up.work.join("big.bin"), bytes(9, 12 << 20)).expect("write");
    let head = up.commit(1);
    let node = node_for(dir.path(), &up, &[]);
    let snapshot = get(&format!("{}/snapshot.tar.zst", repo_url(&node))).body;
    assert!(snapshot.len() > 8 << 20);
    let evil = endless_node(snapshot.clone(), head.clone(), true);

    // A range answered with an endless body.
    let (code, peak, err) = restore_watched(&evil.url(), &dir.path().join("ranges"), &[]);
    assert!(peak < 256 << 20, "restore held {} MB of an endless range", peak >> 20);
    assert!(code.is_some_and(|c| c != 0), "it fails: {code:?}");
    assert!(err.contains("came long"), "and says why: {err}");
    assert!(!dir.path().join("ranges").exists());

    // An endless ensure-refs reply (the snapshot itself whole, 200).
    let whole = endless_node(snapshot, head, false);
    let (code, peak, err) = restore_watched(&whole.url(), &dir.path().join("ensure"), &["--ref", "main"]);
    assert!(peak < 256 << 20, "restore held {} MB of an endless reply", peak >> 20);
    assert!(code.is_some_and(|c| c != 0), "it fails: {code:?}");
    assert!(err.contains("more than"), "and says why: {err}");
}
