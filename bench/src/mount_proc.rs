//! A `trove mount` the bench runs: spawned as a user would, timed to its
//! "ready" line, asked what the kernel granted (`trove mounts --json`),
//! and always unmounted when dropped (SIGTERM, then `umount -l`).

use anyhow::{bail, Result};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `trove mount` child; SIGTERM on drop, then `umount -l` if needed.
pub(crate) struct MountProc {
    child: Option<Child>,
    pub(crate) dir: PathBuf,
    pub(crate) ready_after: Duration,
    run_dir: PathBuf,
    trove: PathBuf,
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
        let mut child = Command::new(trove)
            .args(["mount", repo])
            .arg(dir)
            .args(["--node", node, "--data-dir"])
            .arg(data)
            .args(extra)
            .env("TROVE_LOG", "warn")
            .env("TROVE_RUN_DIR", &run_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
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
    /// The read path, transport and shard count in effect, as `trove
    /// mounts` says.
    pub(crate) fn read_path(&self) -> String {
        let out = Command::new(&self.trove).args(["mounts", "--json"]).env("TROVE_RUN_DIR", &self.run_dir).output();
        let recs: serde_json::Value = out.ok().and_then(|o| serde_json::from_slice(&o.stdout).ok()).unwrap_or_default();
        let field = |k: &str| recs[0][k].as_str().unwrap_or("unknown").to_owned();
        let shards = recs[0]["shards"].as_u64().unwrap_or(0);
        format!("read path {}, {}, {shards} shards", field("read_path"), field("transport"))
    }
}

impl Drop for MountProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
        if std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| m.contains(&*self.dir.to_string_lossy())) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}
