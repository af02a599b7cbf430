//! A `trove mount` the bench runs: spawned as a user would, timed to its
//! "ready" line, asked what the kernel granted (`trove mounts --json`),
//! and always unmounted when dropped (SIGTERM, or `trove umount` for one
//! a daemon serves, then `umount -l`).
//!
//! [`MountProc::start`] runs it with `--foreground` (the mount is the
//! process's own, as each was before one daemon served many: the part 1
//! ready time); [`MountProc::join`] asks the data dir's daemon for it.

use anyhow::{bail, Result};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `trove mount` child (or a mount of the data dir's daemon); SIGTERM
/// (or `trove umount`) on drop, then `umount -l` if needed.
pub(crate) struct MountProc {
    /// None for a mount the daemon serves.
    child: Option<Child>,
    pub(crate) dir: PathBuf,
    pub(crate) ready_after: Duration,
    run_dir: PathBuf,
    trove: PathBuf,
}

/// `trove mount REPO DIR --node NODE --data-dir DATA EXTRA...`, quiet,
/// with its records in `run_dir`.
fn mount_command(trove: &Path, node: &str, repo: &str, dir: &Path, data: &Path, run_dir: &Path) -> Command {
    let mut c = Command::new(trove);
    c.args(["mount", repo])
        .arg(dir)
        .args(["--node", node, "--data-dir"])
        .arg(data)
        .env("TROVE_LOG", "warn")
        .env("TROVE_RUN_DIR", run_dir)
        .stderr(Stdio::inherit());
    c
}

impl MountProc {
    pub(crate) fn start(
        trove: &Path,
        node: &str,
        repo: &str,
        dir: &Path,
        data: &Path,
        extra: &[&str],
    ) -> Result<MountProc> {
        std::fs::create_dir_all(dir)?;
        let run_dir = dir.with_extension("run");
        let started = Instant::now();
        let mut child = mount_command(trove, node, repo, dir, data, &run_dir)
            .arg("--foreground")
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()?;
        let out = child.stdout.take().expect("piped");
        let mut line = String::new();
        std::io::BufReader::new(out).read_line(&mut line)?;
        let ready_after = started.elapsed();
        let m = MountProc { child: Some(child), dir: dir.to_owned(), ready_after, run_dir, trove: trove.to_owned() };
        if !line.starts_with("ready:") {
            bail!("trove mount did not get ready: {line:?}");
        }
        Ok(m)
    }
}

impl MountProc {
    /// Asks the daemon of `data` (started if none runs) for a mount, as
    /// `trove mount` does by default; timed to its "ready" line. All the
    /// mounts of one data dir share `run_dir`.
    pub(crate) fn join(
        trove: &Path,
        node: &str,
        repo: &str,
        dir: &Path,
        data: &Path,
        run_dir: &Path,
        extra: &[&str],
    ) -> Result<MountProc> {
        std::fs::create_dir_all(dir)?;
        let started = Instant::now();
        let out = mount_command(trove, node, repo, dir, data, run_dir).args(extra).output()?;
        let ready_after = started.elapsed();
        let m = MountProc {
            child: None,
            dir: dir.to_owned(),
            ready_after,
            run_dir: run_dir.to_owned(),
            trove: trove.to_owned(),
        };
        let line = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !line.starts_with("ready:") {
            bail!("trove mount did not get ready ({}): {line:?}", out.status);
        }
        Ok(m)
    }

    /// The read path, transport and shard count in effect, as `trove
    /// mounts` says.
    pub(crate) fn read_path(&self) -> String {
        let out = Command::new(&self.trove).args(["mounts", "--json"]).env("TROVE_RUN_DIR", &self.run_dir).output();
        let recs: serde_json::Value = out.ok().and_then(|o| serde_json::from_slice(&o.stdout).ok()).unwrap_or_default();
        let mine = recs.as_array().and_then(|all| {
            let dir = std::fs::canonicalize(&self.dir).ok()?;
            all.iter().find(|r| r["mountpoint"].as_str().is_some_and(|p| Path::new(p) == dir))
        });
        let rec = mine.unwrap_or(&recs[0]);
        let field = |k: &str| rec[k].as_str().unwrap_or("unknown").to_owned();
        let shards = rec["shards"].as_u64().unwrap_or(0);
        format!("read path {}, {}, {shards} shards", field("read_path"), field("transport"))
    }
}

impl Drop for MountProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let _ = c.wait();
        } else {
            let _ = Command::new(&self.trove)
                .arg("umount")
                .arg(&self.dir)
                .env("TROVE_RUN_DIR", &self.run_dir)
                .stdout(Stdio::null())
                .status();
        }
        if std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| m.contains(&*self.dir.to_string_lossy())) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}
