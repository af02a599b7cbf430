//! The node's orphan watcher: a small process `trove serve` starts beside
//! itself, which outlives a `kill -9` of the node and ends the git jobs it
//! left running (an upstream clone otherwise ran on until its watchdog or
//! the next start on the data dir).
//!
//! It holds the read end of a pipe whose write end only the node holds
//! (close-on-exec, so no git inherits it). When the node dies, however it
//! dies, the pipe reads EOF and the watcher kills every process marked
//! with the node's data dir and that node run's pid (`reaper::sweep_of`),
//! then exits. It never signals anything else: not a later node's jobs on
//! the same data dir (another pid), and it exits with the pipe.

use anyhow::{Context, Result};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The hidden subcommand the watcher runs as.
pub const SUBCOMMAND: &str = "watch-orphans";

/// Starts the watcher for the node whose marker is `data_dir` (canonical).
/// The returned child's stdin is the pipe: keep it for the node's life.
pub fn start(data_dir: &Path) -> Result<Child> {
    let exe = std::env::current_exe().context("finding the trove binary for the orphan watcher")?;
    Command::new(exe)
        .arg(SUBCOMMAND)
        .arg(data_dir)
        .arg(std::process::id().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        // Its own process group: a signal to the node's group (a terminal's
        // Ctrl-C) reaches the node, and the watcher then sees the pipe close.
        .process_group(0)
        .spawn()
        .context("starting the orphan watcher")
}

/// The watcher's body: wait for node `node_pid` to die, then sweep.
pub fn watch(data_dir: &Path, node_pid: u32) -> Result<()> {
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    while stdin.read(&mut sink).is_ok_and(|n| n > 0) {}
    let killed = trove_engine::repo::reaper::sweep_of(&data_dir.to_string_lossy(), node_pid);
    if killed > 0 {
        eprintln!("trove: the node on {} ended; killed {killed} git processes it left running", data_dir.display());
    }
    Ok(())
}
