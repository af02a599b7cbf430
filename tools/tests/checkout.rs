//! A mount is what `git checkout` writes: line-ending and `ident`
//! conversions from the tree's own `.gitattributes`, applied as stock git
//! with a default config applies them, and never a filter driver, even
//! one the mirror's config names. Times stay put across remounts and
//! `df` reports the data dir's disk.

use crate::git::{git, node_for, repo_url, Upstream};
use crate::harness::*;
use crate::mount::{assert_same_tree, blobs_served, checkout, mirror_objects, sh, REPO};
use std::os::unix::fs::MetadataExt;

/// A commit whose `.gitattributes` ask for each conversion git knows, on
/// files whose bytes make each rule matter.
fn attributes_commit(up: &mut Upstream) -> String {
    let w = up.work.clone();
    let write = |p: &str, b: &[u8]| {
        let path = w.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, b).expect("write");
    };
    write(
        ".gitattributes",
        b"[attr]windows text eol=crlf\n\
          *.crlf eol=crlf\n\
          *.auto text=auto eol=crlf\n\
          *.autolf text=auto\n\
          *.bin -text eol=crlf\n\
          *.id ident\n\
          *.both ident eol=crlf\n\
          *.filtered filter=marker eol=crlf\n\
          *.win windows\n\
          sub/** eol=crlf\n",
    );
    write("sub/.gitattributes", b"keep.txt -text\n");
    write("a.crlf", b"one\ntwo\r\nthree\n");
    write("a.auto", b"x\ny\n");
    write("crlf-in-index.auto", b"has\r\ncrlf\nmixed\n");
    write("binary.auto", b"a\0b\nc\n");
    write("crlf-in-index.autolf", b"x\r\ny\n");
    write("a.bin", b"p\nq\n");
    write("a.id", b"$Id$\nver $Id: old $\nkept $Id: other system $\n");
    write("a.both", b"$Id$\nline\n");
    write("a.filtered", b"would be smudged\n");
    write("a.win", b"macro\nline\n");
    write("sub/deep/x.txt", b"deep\nfile\n");
    write("sub/keep.txt", b"left\nalone\n");
    write("plain.txt", b"no\nattributes\n");
    // Many lines, past any buffer size a conversion might use.
    let big: Vec<u8> = (0..40_000).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
    write("big.crlf", &big);
    std::os::unix::fs::symlink("a.crlf", w.join("link.crlf")).expect("symlink");
    use std::os::unix::fs::PermissionsExt;
    write("run.crlf", b"#!/bin/sh\necho hi\n");
    std::fs::set_permissions(w.join("run.crlf"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    git(&w, &["add", "-A"]);
    git(&w, &["commit", "-qm", "attributes"]);
    up.commit(0)
}

/// `find` of names, sizes, modes and types (and link targets) of every
/// file and link: what metadata says before any byte is read.
fn metadata(dir: &std::path::Path) -> String {
    let out = sh(dir, "find . -path ./.git -prune -o \\( -type f -o -type l \\) -printf '%p %s %m %y %l\\n' | sort");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_mount_equals_git_checkout_under_line_ending_and_ident_attributes_and_runs_no_filter() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut up = Upstream::new(dir.path());
    let node = node_for(dir.path(), &up, &[]);
    // The node mirrors the repo first; then its mirror's config names a
    // smudge filter that would leave a marker if anything ran it.
    git(dir.path(), &["clone", "-q", &repo_url(&node), dir.path().join("first").to_str().expect("utf8")]);
    let marker = dir.path().join("filter-ran");
    let mirror = mirror_objects(&node.data_dir).parent().expect("mirror").to_path_buf();
    git(&mirror, &["config", "filter.marker.smudge", &format!("touch {}; cat", marker.display())]);
    git(&mirror, &["config", "filter.marker.required", "true"]);
    let head = attributes_commit(&mut up);
    let want = checkout(dir.path(), &up, &head);
    let want_meta = metadata(&want);
    assert!(want_meta.contains("./a.crlf 17 644 f"), "git converted a.crlf: {want_meta}");

    for (i, extra) in crate::mount::READ_PATHS.into_iter().enumerate() {
        let base = dir.path().join(format!("m{i}"));
        let args: Vec<&str> =
            ["--commit", head.as_str(), "--prefetch", "off"].into_iter().chain(extra.iter().copied()).collect();
        let m = Mount::start(&base, &node.url, REPO, &args);
        // Sizes of converted files are known before a byte is fetched.
        let before = blobs_served(&node);
        assert_eq!(metadata(&m.dir), want_meta, "names, sizes, modes, types and link targets");
        assert_eq!(blobs_served(&node), before, "metadata fetched no blob");
        assert_same_tree(&m.dir, &want);
        // A second read of a converted file comes from the local copy.
        assert_eq!(std::fs::read(m.path("a.both")).expect("read"), std::fs::read(want.join("a.both")).expect("read"));
        assert!(!marker.exists(), "a filter driver ran");
        assert!(m.records()[0]["errors"] == 0, "{}", m.records());
    }
}

#[test]
fn a_remount_keeps_every_time_and_df_reports_the_data_dir() {
    let dir = tempfile::tempdir().expect("tmp");
    let (up, head) = crate::tree::rich_upstream(dir.path());
    let node = node_for(dir.path(), &up, &[]);
    let committed: i64 = git(&up.work, &["log", "-1", "--format=%ct", &head]).parse().expect("a time");
    let base = dir.path().join("m");
    let args = ["--commit", head.as_str()];
    let times = |m: &Mount| -> Vec<(String, i64)> {
        ["src/main.rs", "run.sh", "src", "."]
            .iter()
            .map(|p| (p.to_string(), std::fs::symlink_metadata(m.path(p)).expect("stat").mtime()))
            .collect()
    };
    let mut m = Mount::start(&base, &node.url, REPO, &args);
    let first = times(&m);
    assert!(first.iter().all(|(_, t)| *t == committed), "every time is the commit's ({committed}): {first:?}");
    let dir_size = std::fs::metadata(m.path("src")).expect("stat").len();
    assert_eq!(dir_size, 4096, "a small directory's size, as ext4 gives it");

    // df: the data dir's disk, not a full filesystem of the tree's bytes.
    let on_mount = rustix::fs::statvfs(&m.dir).expect("statvfs mount");
    let on_data = rustix::fs::statvfs(&m.data_dir).expect("statvfs data dir");
    assert_eq!(on_mount.f_blocks, on_data.f_blocks, "the data dir's disk size");
    assert!(on_mount.f_bavail > 0, "free space is reported, not 100% used");
    assert_eq!(m.terminate(), Some(0));

    let m = Mount::start(&base, &node.url, REPO, &args);
    assert_eq!(times(&m), first, "a remount of the same data dir keeps every time");
}
