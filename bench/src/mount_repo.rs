//! The generated repo of `trove bench mount`: the `trove bench git`
//! generator's tree plus one 256 MiB file, written into the bare repo with
//! plumbing (so the tree is not regenerated).

use crate::upstream::{generate, git, serve_ready};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub(crate) const BIG_BYTES: usize = 256 << 20;
pub(crate) const BIG_PATH: &str = "assets/big.bin";

/// The generated repo with one 256 MiB file added at `BIG_PATH`.
pub(crate) fn generated_with_big(work: &Path, root: &Path, files: usize, total: u64) -> Result<PathBuf> {
    let bare = root.join(format!("gen/mount-files-{files}-bytes-{total}.git"));
    if bare.exists() {
        return Ok(bare);
    }
    let tmp = bare.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    generate(&work.join("gen-work"), &tmp, files, total)?;
    eprintln!("adding a {} MiB file", BIG_BYTES >> 20);
    let big = work.join("big.bin");
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut data = Vec::with_capacity(BIG_BYTES);
    while data.len() < BIG_BYTES {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        data.extend_from_slice(&rng.to_le_bytes());
    }
    std::fs::write(&big, &data)?;
    drop(data);
    let blob = git(&tmp, &["hash-object", "-w", &big.to_string_lossy()])?;
    let _ = std::fs::remove_file(&big);
    let sub = git_stdin(&tmp, &["mktree"], &format!("100644 blob {blob}\tbig.bin\n"))?;
    let mut root_tree = git(&tmp, &["ls-tree", "HEAD"])?;
    root_tree.push_str(&format!("\n040000 tree {sub}\tassets\n"));
    let tree = git_stdin(&tmp, &["mktree"], &root_tree)?;
    let head = git(&tmp, &["rev-parse", "HEAD"])?;
    let commit = git(&tmp, &["commit-tree", &tree, "-p", &head, "-m", "a large asset"])?;
    git(&tmp, &["update-ref", "HEAD", &commit])?;
    serve_ready(&tmp)?;
    std::fs::rename(&tmp, &bare)?;
    Ok(bare)
}

fn git_stdin(dir: &Path, args: &[&str], input: &str) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("piped").write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "git {args:?} failed");
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
