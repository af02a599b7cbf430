//! The upstream of the git and mount benches: a generated repo of
//! source-like text or a copy of a real one, made serve-ready, and the
//! `git daemon` that serves it. Talks to git only through its CLI.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.email=bench@trove", "-c", "user.name=trove bench", "-c", "init.defaultBranch=main"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Files at HEAD and bytes of pack files.
pub(crate) fn repo_size(bare: &Path) -> Result<(usize, u64)> {
    let files = git(bare, &["ls-tree", "-r", "--name-only", "HEAD"])?.lines().count();
    let mut packs = 0;
    for e in std::fs::read_dir(bare.join("objects/pack"))?.flatten() {
        packs += e.metadata()?.len();
    }
    Ok((files, packs))
}

/// A bare, serve-ready copy of the local repo `r` under `root/real/`
/// (made once): its name as the daemon serves it, and its path.
pub(crate) fn real_repo(work: &Path, root: &Path, r: &Path) -> Result<(String, PathBuf)> {
    let name = r.canonicalize()?.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or("repo".into());
    let bare = root.join("real").join(format!("{}.git", name.trim_end_matches(".git")));
    if !bare.exists() {
        std::fs::create_dir_all(bare.parent().expect("has a parent"))?;
        git(work, &["clone", "-q", "--bare", "--no-local", &r.to_string_lossy(), &bare.to_string_lossy()])?;
        serve_ready(&bare)?;
    }
    Ok((format!("real/{}", bare.file_name().expect("named").to_string_lossy()), bare))
}

/// What a well-run upstream has: one pack with a bitmap, a commit-graph.
pub(crate) fn serve_ready(bare: &Path) -> Result<()> {
    git(bare, &["repack", "-adq", "--write-bitmap-index"])?;
    git(bare, &["commit-graph", "write", "--reachable"])?;
    Ok(())
}

/// A repo of `files` files of source-like text, `total` bytes in all, in
/// directories of 100, with three commits of history.
pub(crate) fn generate(work: &Path, bare: &Path, files: usize, total: u64) -> Result<()> {
    eprintln!("generating a repo of {files} files, {:.0} MB (once; kept in the work dir)", total as f64 / 1e6);
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work)?;
    git(work, &["init", "-q"])?;
    let per_file = (total / files.max(1) as u64).max(1) as usize;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..files {
        let dir = work.join(format!("src/m{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        std::fs::write(dir.join(format!("f{i:05}.rs")), source_text(&mut rng, per_file))?;
    }
    git(work, &["add", "-A"])?;
    git(work, &["commit", "-qm", "generated tree"])?;
    for c in 0..2 {
        for i in (c..files).step_by(100) {
            let p = work.join(format!("src/m{:03}/f{i:05}.rs", i / 100));
            std::fs::write(p, source_text(&mut rng, per_file))?;
        }
        git(work, &["commit", "-qam", &format!("change {c}")])?;
    }
    std::fs::create_dir_all(bare.parent().expect("has a parent"))?;
    git(work, &["clone", "-q", "--bare", ".", &bare.to_string_lossy()])?;
    serve_ready(bare)?;
    let _ = std::fs::remove_dir_all(work);
    Ok(())
}

/// Lines of identifiers, keywords and numbers: compresses about as well as
/// source code (3-5x with zstd).
fn source_text(rng: &mut u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "fn", "let", "mut", "impl", "struct", "self", "return", "match", "Some", "None", "Ok", "Err", "if", "else",
        "for", "in", "while", "pub", "use", "mod", "const", "static", "async", "await", "where", "trait", "enum",
        "buffer", "index", "count", "shard", "object", "stream", "reader", "writer", "config", "error", "result",
    ];
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let r = *rng;
        match r % 11 {
            0 => out.extend_from_slice(b";\n    "),
            1 => out.extend_from_slice(format!("{} ", r % 100_000).as_bytes()),
            2 => out.extend_from_slice(format!("v{:x} ", (r >> 8) % 4096).as_bytes()),
            _ => {
                out.extend_from_slice(WORDS[(r >> 16) as usize % WORDS.len()].as_bytes());
                out.push(b' ');
            }
        }
    }
    out.truncate(len);
    out
}

/// `git-daemon` serving `root`, its log counting upload-packs (also the
/// upstream of the integration tests). Killed on drop.
pub struct Daemon {
    child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(root: &Path, port: u16, log: &Path) -> Result<Daemon> {
        // The daemon binary itself: `git daemon` forks it as a child that
        // would outlive a kill of the wrapper.
        let exec_path = git(root, &["--exec-path"])?;
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args(["--export-all", "--verbose", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", root.display()))
            .arg(root)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .context("starting git-daemon")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "git-daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Daemon { child, log: log.to_owned() })
    }

    /// upload-pack requests the upstream has served.
    pub fn upload_packs(&self) -> usize {
        std::fs::read_to_string(&self.log).unwrap_or_default().matches("Request upload-pack").count()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
