//! `trove restore` against a hostile stand-in node: a snapshot whose `.git`
//! carries hooks, an fsmonitor, an ssh command, a URL rewrite and a filter
//! driver (named by the tree's `.gitattributes`) must run none of them, on
//! the `--commit` checkout path, the bundle fast-forward path and the
//! ensure-refs fetch path. Every one of them writes a marker file if it
//! runs; the test asserts that none exists.

use crate::git::git;
use crate::harness::*;
use crate::snapshot::restore_from;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Reads one request: its path and body.
fn read_request(conn: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).ok()? == 0 || buf.len() > 64 << 10 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let path = head.split_whitespace().nth(1)?.to_owned();
    let len = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).ok()?;
    Some((path, body))
}

/// A stand-in node: the snapshot (advertising `/bundle` when there is
/// one), the bundle, and an ensure-refs that claims success.
fn hostile_node(archive: Vec<u8>, commit: String, bundle: Option<Vec<u8>>) -> TcpServer {
    TcpServer::start(move |mut conn| {
        let Some((path, _)) = read_request(&mut conn) else { return };
        let (extra, body): (String, Vec<u8>) = if path.ends_with("/snapshot.tar.zst") {
            let bundle_header = if bundle.is_some() { "X-Trove-Bundle-Url: /bundle\r\n" } else { "" };
            (format!("X-Trove-Snapshot-Commit: {commit}\r\n{bundle_header}"), archive.clone())
        } else if path == "/bundle" {
            (String::new(), bundle.clone().unwrap_or_default())
        } else if path.ends_with("/ensure-refs") {
            ("Content-Type: application/json\r\n".into(), br#"{"missing":0}"#.to_vec())
        } else {
            let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        };
        let head = format!("HTTP/1.1 200 OK\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        let _ = conn.write_all(head.as_bytes());
        let _ = conn.write_all(&body);
    })
}

/// An executable script that records that it ran, as `markers/NAME`.
fn marker_script(dir: &Path, markers: &Path, name: &str, then: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\ntouch '{}/{name}'\n{then}\n", markers.display())).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// The tree at `commit` of `work` with a `.git` that tries everything, as
/// tar.zst.
fn hostile_archive(dir: &Path, work: &Path, commit: &str, markers: &Path) -> Vec<u8> {
    let snap = dir.join(format!("snap-{commit}"));
    git(dir, &["clone", "-q", work.to_str().expect("utf8"), snap.to_str().expect("utf8")]);
    git(&snap, &["checkout", "-q", "-B", "main", commit]);
    let hooks = snap.join(".git/hooks");
    for hook in ["post-checkout", "post-merge", "reference-transaction", "pre-auto-gc", "post-rewrite"] {
        marker_script(&hooks, markers, hook, "exit 0");
    }
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts).expect("mkdir");
    let fsmonitor = marker_script(&scripts, markers, "fsmonitor", "exit 1");
    let ssh = marker_script(&scripts, markers, "ssh-command", "exit 1");
    let smudge = marker_script(&scripts, markers, "smudge", "cat");
    let clean = marker_script(&scripts, markers, "clean", "cat");
    let helper = marker_script(&scripts, markers, "credential-helper", "exit 0");
    let mut config = std::fs::OpenOptions::new().append(true).open(snap.join(".git/config")).expect("config");
    write!(
        config,
        "[core]\n\tfsmonitor = {}\n\tsshCommand = {}\n[url \"ssh://evil.invalid/\"]\n\tinsteadOf = http://\n\
         [filter \"evil\"]\n\tsmudge = {}\n\tclean = {}\n[credential]\n\thelper = {}\n",
        fsmonitor.display(),
        ssh.display(),
        smudge.display(),
        clean.display(),
        helper.display()
    )
    .expect("append config");
    git(&snap, &["remote", "set-url", "origin", "https://example.test/org/repo"]);
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", &snap).expect("tar the snapshot");
    zstd::encode_all(&tar.into_inner().expect("tar")[..], 3).expect("zstd")
}

fn markers_left(markers: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(markers)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn restore_runs_no_code_that_came_in_the_archive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let markers = dir.path().join("markers");
    std::fs::create_dir_all(&markers).expect("mkdir");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    git(&work, &["init", "-q"]);
    std::fs::write(work.join(".gitattributes"), "*.txt filter=evil\n").expect("write");
    std::fs::write(work.join("a.txt"), "one\n").expect("write");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "c1"]);
    let c1 = git(&work, &["rev-parse", "HEAD"]);
    std::fs::write(work.join("a.txt"), "two\n").expect("write");
    std::fs::write(work.join("b.txt"), "new\n").expect("write");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "c2"]);
    let c2 = git(&work, &["rev-parse", "HEAD"]);
    let bundle_path = dir.path().join("c1..c2.bundle");
    git(&work, &["bundle", "create", "-q", bundle_path.to_str().expect("utf8"), "HEAD", &format!("^{c1}")]);

    let at_c2 = hostile_node(hostile_archive(dir.path(), &work, &c2, &markers), c2.clone(), None);
    let at_c1 = hostile_node(
        hostile_archive(dir.path(), &work, &c1, &markers),
        c1.clone(),
        Some(std::fs::read(&bundle_path).expect("bundle")),
    );

    // --commit of an older commit the snapshot has: a checkout.
    let checkout = dir.path().join("checkout");
    let out = restore_from(&at_c2.url(), &checkout, &["--commit", &c1]);
    assert!(out.status.success(), "restore --commit: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(git(&checkout, &["rev-parse", "HEAD"]), c1);
    assert_eq!(std::fs::read_to_string(checkout.join("a.txt")).expect("read"), "one\n");

    // The bundle path: a fetch and a fast-forward merge.
    let bundled = dir.path().join("bundled");
    let out = restore_from(&at_c1.url(), &bundled, &[]);
    assert!(out.status.success(), "restore with a bundle: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(git(&bundled, &["rev-parse", "HEAD"]), c2);
    assert_eq!(std::fs::read_to_string(bundled.join("b.txt")).expect("read"), "new\n");

    // An unknown commit: ensure-refs, then a fetch from the "node" that the
    // archive's insteadOf would turn into ssh. It fails; nothing runs.
    let unknown = dir.path().join("unknown");
    let out = restore_from(&at_c2.url(), &unknown, &["--commit", &"5".repeat(40)]);
    assert_eq!(out.status.code(), Some(7), "a failed fetch is a git failure: {}", String::from_utf8_lossy(&out.stderr));

    assert_eq!(markers_left(&markers), Vec::<String>::new(), "code from the archive ran");
    for tree in [&checkout, &bundled] {
        assert!(!tree.join(".git/hooks").exists(), "the archive's hooks were unpacked into {}", tree.display());
        let config = std::fs::read_to_string(tree.join(".git/config")).expect("config");
        for word in ["evil", "fsmonitor", "sshCommand", "helper"] {
            assert!(!config.contains(word), "the archive's config reached {}: {config}", tree.display());
        }
        assert_eq!(git(tree, &["remote", "get-url", "origin"]), "https://example.test/org/repo");
        assert_eq!(git(tree, &["config", "branch.main.merge"]), "refs/heads/main");
        assert!(!tree.join(".git/info/attributes").exists(), "restore's own attributes are removed");
    }
    assert_eq!(git(&bundled, &["status", "--porcelain"]), "", "the restored tree is clean");
}

#[test]
fn restore_never_prints_the_token_in_its_node_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = free_port();
    let url = format!("http://ci:s3cr3t-t0ken@127.0.0.1:{closed}");
    let out = restore_from(&url, &dir.path().join("t"), &[]);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{closed}")), "the error names the node: {stderr}");
    assert!(!stderr.contains("s3cr3t-t0ken"), "the token was printed: {stderr}");
}
