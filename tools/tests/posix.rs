//! POSIX conformance of the writable mount: pjdfstest (crates.io, put in
//! `.tools/` by `tools/dev/setup.sh`) runs every group on a real mount,
//! in a directory the test makes there. Its config
//! (`tools/tests/data/pjdfstest.toml`) lists the cases expected to fail,
//! each with its reason (README.md too); pjdfstest fails the run on any
//! other failure and on an expected failure that passes.

use crate::git::node_for;
use crate::harness::*;
use crate::mount::REPO;
use crate::tree::rich_upstream;
use std::path::PathBuf;
use std::process::Command;

/// The pjdfstest binary: `$PJDFSTEST`, else the one setup.sh installed.
fn pjdfstest() -> PathBuf {
    if let Some(p) = std::env::var_os("PJDFSTEST") {
        return PathBuf::from(p);
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = repo.join(".tools/bin/pjdfstest");
    assert!(bin.exists(), "{} is missing: run tools/dev/setup.sh (or set PJDFSTEST)", bin.display());
    bin
}

#[test]
fn pjdfstest_passes_on_the_mount_but_for_its_listed_failures() {
    let dir = tempfile::tempdir().expect("tmp");
    // ...and walk to it (a temporary directory is its owner's alone).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (up, head) = rich_upstream(dir.path());
    let node = node_for(dir.path(), &up, &[]);
    // pjdfstest acts as other users too: they reach the mount.
    let m = Mount::start(&dir.path().join("m"), &node.url, REPO, &["--commit", &head, "--allow-other"]);
    std::fs::set_permissions(dir.path().join("m"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let work = m.path("pjdfstest");
    std::fs::create_dir(&work).expect("a directory in the mount");
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/pjdfstest.toml");
    let out = Command::new(pjdfstest())
        .arg("-c")
        .arg(&config)
        .arg("-p")
        .arg(&work)
        .current_dir(&work)
        .output()
        .expect("run pjdfstest");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text.lines().find(|l| l.starts_with("Summary:")).unwrap_or("no summary");
    let failed: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && !l.trim_start().starts_with("at "))
        .filter(|l| !l.contains("passed") && !l.contains("skipped"))
        .take(60)
        .collect();
    assert!(
        out.status.success(),
        "pjdfstest on the mount: {summary}\n{}\n{}",
        failed.join("\n"),
        String::from_utf8_lossy(&out.stderr).lines().take(20).collect::<Vec<_>>().join("\n")
    );
    assert!(summary.contains(" 0 failed") && summary.contains("passed"), "{summary}");
}
