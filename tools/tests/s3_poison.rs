//! Hostile objects in the shared bucket: whoever can write to it (another
//! node, or anyone holding its keys) must not be able to crash a node or
//! run code on it. A poisoned snapshot pointer is a miss and a warning on
//! every node that reads it; a mirror snapshot carrying hooks and a config
//! that runs commands is restored as data only.

use crate::git::{git, repo_url, Upstream};
use crate::harness::*;
use crate::snapshot::{git_stats, s3_node};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use trove_engine::store::format::{align_up, block_sum, encode_trailer, etag_of, ObjectMeta};

/// `data` as a sealed trove object file, as a node puts it in S3.
fn sealed(namespace: &str, key: &str, data: &[u8]) -> Vec<u8> {
    let block = trove_engine::limits::BLOCK_BYTES as usize;
    let sums: Vec<u64> = data.chunks(block).map(block_sum).collect();
    let meta = ObjectMeta {
        namespace: namespace.into(),
        key: key.into(),
        data_len: data.len() as u64,
        created_ms: trove_engine::now_ms(),
        expires_ms: 0,
        etag: etag_of(&sums, data.len() as u64),
        block_sums: sums.into(),
    };
    let mut file = data.to_vec();
    file.resize(align_up(data.len() as u64) as usize, 0);
    file.extend_from_slice(&encode_trailer(&meta));
    file
}

/// Puts `data` into the bucket where a node looks for `namespace/key`.
fn put_in_bucket(s3: &S3, namespace: &str, key: &str, data: &[u8]) {
    let url = bucket_url(s3, namespace, key);
    assert_eq!(put(&url, sealed(namespace, key, data)).status, 200, "writing {url} into SeaweedFS");
}

fn alive(node: &Node) -> bool {
    get(&node.url("/_liveness")).status == 200
}

#[test]
fn a_poisoned_snapshot_pointer_is_a_miss_on_every_node() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut up = Upstream::new(dir.path());
    let head = up.commit(1);
    let a = s3_node(&s3, &dir.path().join("a"), &up, &[]);
    assert_eq!(get(&format!("{}/snapshot.tar.zst", repo_url(&a))).status, 200);
    wait_until("A uploaded the mirror snapshot", Duration::from_secs(30), || {
        a.log_text().contains("mirror snapshot uploaded")
    });
    drop(a);
    for (i, commit) in ["../../../etc/passwd", "abc\u{1}def", &"z".repeat(40)].into_iter().enumerate() {
        let pointer = serde_json::json!({ "commit": commit, "built_ms": 1, "head": head, "private": false });
        put_in_bucket(&s3, "git-snapshot", "example.test:org:repo", pointer.to_string().as_bytes());
        for name in ["b", "c"] {
            let node = s3_node(&s3, &dir.path().join(format!("{name}{i}")), &up, &[]);
            let r = get(&format!("{}/snapshot.tar.zst", repo_url(&node)));
            assert_eq!(r.status, 200, "pointer {commit:?}, node {name}: {}", node.log_text());
            assert_eq!(r.header("x-trove-snapshot-commit"), Some(head.as_str()), "built from the mirror");
            assert!(alive(&node), "node {name} is still up after reading pointer {commit:?}");
            assert!(node.log_text().contains("names no valid commit"), "the bad pointer is reported");
        }
    }
}

#[test]
fn a_mirror_snapshot_with_hooks_and_commands_runs_nothing_on_the_node() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut up = Upstream::new(dir.path());
    let markers = dir.path().join("markers");
    std::fs::create_dir_all(&markers).expect("mkdir");
    // A bare mirror of the upstream, made hostile.
    let evil = dir.path().join("evil.git");
    git(dir.path(), &["clone", "-q", "--mirror", up.bare().to_str().expect("utf8"), evil.to_str().expect("utf8")]);
    git(&evil, &["repack", "-adq"]);
    let script = |name: &str| {
        let p = dir.path().join(format!("script-{name}"));
        std::fs::write(&p, format!("#!/bin/sh\ntouch '{}/{name}'\nexit 0\n", markers.display())).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    };
    for hook in ["reference-transaction", "post-update", "pre-auto-gc", "post-checkout"] {
        let p = script(hook);
        std::fs::copy(&p, evil.join("hooks").join(hook)).expect("hook");
    }
    let config = std::fs::read_to_string(evil.join("config")).expect("config");
    let extra = format!(
        "[core]\n\tfsmonitor = {}\n\tsshCommand = {}\n[credential]\n\thelper = {}\n",
        script("fsmonitor").display(),
        script("ssh").display(),
        script("credential").display()
    );
    std::fs::write(evil.join("config"), config + &extra).expect("config");
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", &evil).expect("tar");
    let archive = zstd::encode_all(&tar.into_inner().expect("tar")[..], 3).expect("zstd");
    put_in_bucket(&s3, "git-mirror", "example.test:org:repo", &archive);

    // The upstream moves on, so the restored mirror must fetch (which runs
    // reference-transaction hooks, if any are there).
    let head = up.commit(1);
    let node = s3_node(&s3, &dir.path().join("b"), &up, &[]);
    let clone = dir.path().join("clone");
    git(dir.path(), &["clone", "-q", &repo_url(&node), clone.to_str().expect("utf8")]);
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]), head);
    assert_eq!(node.stats()["git"]["mirror_restores"], 1, "the mirror came from the hostile snapshot");
    assert!(node.log_text().contains("mirror restored from its snapshot"), "and was kept: {}", node.log_text());
    let ran: Vec<_> = std::fs::read_dir(&markers).expect("ls").flatten().map(|e| e.file_name()).collect();
    assert!(ran.is_empty(), "code from the mirror snapshot ran on the node: {ran:?}");
    let mut stack = vec![node.data_dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            assert_ne!(e.file_name(), "hooks", "hooks were unpacked at {}", p.display());
            if p.file_name().is_some_and(|n| n == "config") && p.parent().is_some_and(|m| m.join("objects").is_dir()) {
                let text = std::fs::read_to_string(&p).expect("config");
                assert!(!text.contains("fsmonitor") && !text.contains("helper"), "{}: {text}", p.display());
            }
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    assert!(alive(&node));
}

/// The data of a sealed object file: its first `data_len` bytes, where
/// `data_len` is read from the trailer.
fn unsealed(file: &[u8]) -> Vec<u8> {
    let tlen = trove_engine::store::format::decode_tail(file, file.len() as u64).expect("a sealed file");
    let trailer = &file[file.len() - tlen as usize..];
    let meta = trove_engine::store::format::decode_trailer(trailer, file.len() as u64).expect("its trailer");
    file[..meta.data_len as usize].to_vec()
}

/// Where a node's object `namespace/key` lives in the bucket.
fn bucket_url(s3: &S3, namespace: &str, key: &str) -> String {
    let hash = trove_engine::ObjectKey::new(namespace, key).expect("a valid key").hash();
    let hex = trove_engine::key::hash_hex(hash);
    format!("{}/{}/trove/objects/{}/{hex}", s3.endpoint(), s3.bucket, &hex[..2])
}

/// A snapshot pointer carries the stored file's length, so a cold node
/// asks S3 for the tail and the first range at once. The length is only a
/// hint: a pointer that lies about it (longer, absurd, tiny) still gets
/// the right bytes, with a warning, and no node falls over.
#[test]
fn a_snapshot_pointer_says_the_file_length_and_a_lying_one_is_only_a_hint() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut up = Upstream::new(dir.path());
    // Incompressible, so the snapshot is past the tail plus the first range.
    std::fs::write(up.work.join("big.bin"), bytes(9, 4 << 20)).expect("write");
    let head = up.commit(1);
    let a = s3_node(&s3, &dir.path().join("a"), &up, &[]);
    let reference = get(&format!("{}/snapshot.tar.zst", repo_url(&a))).body;
    wait_until("A uploaded the mirror snapshot", Duration::from_secs(30), || {
        a.log_text().contains("mirror snapshot uploaded")
    });
    drop(a);

    let name = "example.test:org:repo";
    let pointer: serde_json::Value =
        serde_json::from_slice(&unsealed(&get(&bucket_url(&s3, "git-snapshot", name)).body)).expect("pointer JSON");
    let stored = get(&bucket_url(&s3, "git-snapshot", &format!("{name}@{head}")));
    assert_eq!(stored.status, 200);
    assert_eq!(pointer["file_len"].as_u64(), Some(stored.body.len() as u64), "the pointer says the stored length");

    let truth = stored.body.len() as u64;
    for (i, lie) in [truth + 4096, u64::MAX / 2, 5].into_iter().enumerate() {
        let mut p = pointer.clone();
        p["file_len"] = lie.into();
        put_in_bucket(&s3, "git-snapshot", name, p.to_string().as_bytes());
        let node = s3_node(&s3, &dir.path().join(format!("lie{i}")), &up, &[]);
        let r = get(&format!("{}/snapshot.tar.zst", repo_url(&node)));
        assert_eq!(r.status, 200, "pointer length {lie}: {}", node.log_text());
        assert!(r.body == reference, "pointer length {lie}: the stored snapshot's bytes");
        assert_eq!(git_stats(&node, "snapshot_builds"), 0, "pointer length {lie}: served from S3");
        assert!(node.log_text().contains("differs from the pointer's"), "pointer length {lie}: the lie is reported");
        assert!(alive(&node));
    }
}
