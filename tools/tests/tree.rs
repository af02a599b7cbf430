//! The node's side of the lazy mount: a commit's tree index and blobs by
//! id, checked against stock git's view of the same commit.

use crate::git::{git, git_out, node_for, repo_url, Upstream};
use crate::harness::*;
use std::collections::BTreeMap;
use trove_engine::tree::index::{decode, Kind};

/// A tree with what real ones hold: nesting, an executable, a symlink, an
/// empty file, a name that is not UTF-8, a deep path and a submodule.
pub(crate) fn rich_upstream(dir: &std::path::Path) -> (Upstream, String) {
    let mut up = Upstream::new(dir);
    let w = up.work.clone();
    std::fs::create_dir_all(w.join("src/deep/a/b/c/d")).expect("mkdir");
    std::fs::write(w.join("src/main.rs"), "fn main() {}\n").expect("write");
    std::fs::write(w.join("src/deep/a/b/c/d/leaf.txt"), "leaf\n").expect("write");
    std::fs::write(w.join("empty"), "").expect("write");
    std::fs::write(w.join("run.sh"), "#!/bin/sh\necho hi\n").expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(w.join("run.sh"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::symlink("src/main.rs", w.join("link")).expect("symlink");
    use std::os::unix::ffi::OsStrExt;
    std::fs::write(w.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt")), "latin-1 name\n").expect("write");
    git(&w, &["add", "-A"]);
    let sub = "1".repeat(40);
    git(&w, &["update-index", "--add", "--cacheinfo", &format!("160000,{sub},vendor/sub")]);
    git(&w, &["commit", "-qm", "rich"]);
    let head = up.commit(0);
    (up, head)
}

/// `git ls-tree -r -t -l -z` of `commit`: path to (mode, oid, size).
fn ls_tree(repo: &std::path::Path, commit: &str) -> BTreeMap<Vec<u8>, (String, String, u64)> {
    let out = git_out(repo, &["ls-tree", "-r", "-t", "-l", "-z", commit]);
    assert!(out.status.success());
    out.stdout
        .split(|&b| b == 0)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let tab = l.iter().position(|&b| b == b'\t').expect("tab");
            let meta = String::from_utf8_lossy(&l[..tab]).into_owned();
            let f: Vec<&str> = meta.split_whitespace().collect();
            (l[tab + 1..].to_vec(), (f[0].to_owned(), f[2].to_owned(), f[3].parse().unwrap_or(0)))
        })
        .collect()
}

fn hex(oid: &[u8; 20]) -> String {
    trove_engine::tree::oid_hex(oid)
}

#[test]
fn a_tree_index_lists_the_commit_as_git_does_and_blobs_come_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut up, head) = rich_upstream(dir.path());
    let node = node_for(dir.path(), &up, &[]);
    let base = repo_url(&node);

    let r = get(&format!("{base}/tree/{head}"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/x-trove-tree"));
    assert_eq!(r.header("x-trove-tree-commit"), Some(head.as_str()));
    let etag = r.header("etag").expect("an ETag").to_owned();
    assert!(etag.starts_with('"'), "strong: {etag}");
    let index = decode(&r.body).expect("a valid index");
    assert_eq!(hex(&index.commit), head);

    let want = ls_tree(&up.bare(), &head);
    assert_eq!(index.entries.len(), want.len());
    for e in &index.entries {
        let (mode, oid, size) = want.get(&e.path).unwrap_or_else(|| panic!("{:?} is not in git's tree", e.path));
        let kind = match mode.as_str() {
            "100644" => Kind::File,
            "100755" => Kind::Executable,
            "120000" => Kind::Symlink,
            "040000" => Kind::Dir,
            "160000" => Kind::Submodule,
            m => panic!("mode {m}"),
        };
        assert_eq!((e.kind, hex(&e.oid)), (kind, oid.clone()), "{:?}", e.path);
        assert_eq!(e.size, if kind.is_blob() { *size } else { 0 }, "{:?}", e.path);
    }
    assert!(index.entries.iter().any(|e| e.path == b"caf\xe9.txt"), "a name that is not UTF-8");
    assert_eq!(node.stats()["git"]["blob_requests"], 0, "an index reads no blob");

    // Immutable: revalidation is 304; by ref it names the same commit.
    let again = http("GET", &format!("{base}/tree/{head}"), &[("If-None-Match", &etag)], Vec::new());
    assert_eq!(again.status, 304);
    assert_eq!(node.stats()["git"]["tree_indexes"], 1, "made once");
    let by_ref = get(&format!("{base}/tree?ref=main"));
    assert_eq!((by_ref.status, by_ref.header("x-trove-tree-commit")), (200, Some(head.as_str())));
    assert_eq!(get(&format!("{base}/tree?ref=nope")).status, 404);
    assert_eq!(get(&format!("{base}/tree?ref=-x")).status, 400);
    assert_eq!(get(&format!("{base}/tree/{}", "2".repeat(40))).status, 404, "a commit nobody has");

    // A new commit asked for by eight clients at once: made once.
    let next = up.commit(1);
    let url = format!("{base}/tree/{next}");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8).map(|_| s.spawn(|| get(&url).status)).collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(node.stats()["git"]["tree_indexes"], 2, "eight concurrent asks, one index made");

    // Blobs: two real ones, a tree's id and an id nobody has.
    let main_rs = &want[b"src/main.rs".as_slice()].1;
    let link = &want[b"link".as_slice()].1;
    let tree_id = &want[b"src".as_slice()].1;
    let missing = "3".repeat(40);
    let body = format!("{main_rs}\n{link}\n{tree_id}\n{missing}\n");
    let r = http("POST", &format!("{base}/blobs"), &[], body.into_bytes());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/x-trove-blobs"));
    let frames = frames(&r.body);
    assert_eq!(frames.len(), 4, "a frame per id, then the end");
    assert_eq!((hex(&frames[0].0), frames[0].1), (main_rs.clone(), 0));
    assert_eq!(frames[0].2, b"fn main() {}\n");
    assert_eq!((frames[1].1, frames[1].2.as_slice()), (0, b"src/main.rs".as_slice()), "a symlink's target");
    assert_eq!(frames[2].1, 2, "not a blob");
    assert_eq!(frames[3].1, 1, "missing");
    assert_eq!(node.stats()["git"]["blob_requests"], 1);

    // An id asked three times is read and answered once.
    let thrice = format!("{main_rs}\n{main_rs}\n{main_rs}\n");
    let r = http("POST", &format!("{base}/blobs"), &[], thrice.into_bytes());
    assert_eq!(crate::tree::frames(&r.body).len(), 1, "duplicates are answered once");

    // Bad requests.
    assert_eq!(http("POST", &format!("{base}/blobs"), &[], b"not an id\n".to_vec()).status, 400);
    let many = format!("{main_rs}\n").repeat(1025);
    assert_eq!(http("POST", &format!("{base}/blobs"), &[], many.into_bytes()).status, 400);
    assert_eq!(http("POST", &format!("{base}/blobs"), &[], vec![b'a'; 1 << 20]).status, 413);
}

/// (oid, status, bytes) of each frame before the end frame, which must be
/// there.
fn frames(mut body: &[u8]) -> Vec<([u8; 20], u8, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        assert!(body.len() >= 29, "the stream was cut before its end frame");
        let oid: [u8; 20] = body[..20].try_into().expect("20");
        let status = body[20];
        let len = u64::from_le_bytes(body[21..29].try_into().expect("8")) as usize;
        body = &body[29..];
        if status == 255 {
            assert!(body.is_empty(), "nothing after the end frame");
            return out;
        }
        out.push((oid, status, body[..len].to_vec()));
        body = &body[len..];
    }
}

#[test]
fn blobs_served_again_come_from_memory_and_never_to_another_repo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::new(dir.path());
    // A second repo under the same host, with a blob the first lacks.
    let other_work = dir.path().join("other-work");
    std::fs::create_dir_all(&other_work).expect("mkdir");
    git(&other_work, &["init", "-q"]);
    std::fs::write(other_work.join("secret"), b"only in org/other\n").expect("write");
    git(&other_work, &["add", "-A"]);
    git(&other_work, &["commit", "-qm", "other"]);
    let other_bare = up.root.join("org/other");
    git(dir.path(), &["clone", "-q", "--bare", other_work.to_str().expect("utf8"), other_bare.to_str().expect("utf8")]);
    let secret = git(&other_work, &["rev-parse", "HEAD:secret"]);
    let f1 = git(&up.work, &["rev-parse", "HEAD:f1"]);

    let node = node_for(dir.path(), &up, &[]);
    let (repo, other) = (repo_url(&node), node.url("/git/example.test/org/other"));
    let ask = |base: &str, oid: &str| {
        let r = http("POST", &format!("{base}/blobs"), &[], format!("{oid}\n").into_bytes());
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        frames(&r.body).remove(0)
    };
    let hits = || node.stats()["git"]["blob_cache_hits"].as_u64().expect("blob_cache_hits");
    let first = ask(&repo, &f1);
    assert_eq!((first.1, hits()), (0, 0), "read from the mirror");
    let again = ask(&repo, &f1);
    assert_eq!(again, first, "the same bytes");
    assert_eq!(hits(), 1, "served from memory the second time");

    // The other repo's blob, served (and kept) for it, is still missing
    // for a request that names the first repo.
    let kept = ask(&other, &secret);
    assert_eq!((kept.1, kept.2.as_slice()), (0, b"only in org/other\n".as_slice()));
    let leaked = ask(&repo, &secret);
    assert_eq!((leaked.1, leaked.2.len()), (1, 0), "missing in org/repo, whatever the cache holds");
    assert_eq!(hits(), 1);

    // --blob-cache 0: every ask reads the mirror.
    let off = Node::start(
        &dir.path().join("data-off"),
        &["--upstream", &format!("example.test=file://{}", up.root.display()), "--blob-cache", "0"],
    );
    let off_repo = off.url("/git/example.test/org/repo");
    for _ in 0..2 {
        let r = http("POST", &format!("{off_repo}/blobs"), &[], format!("{f1}\n").into_bytes());
        assert_eq!(frames(&r.body)[0], first);
    }
    assert_eq!(off.stats()["git"]["blob_cache_hits"], 0);
}
