//! Every git process the node starts, and the ways they are made to die.
//!
//! A git job must never outlive what it is for. Each one runs in a process
//! group of its own, so a kill reaches its helpers too (`git clone` runs
//! `git-remote-https` and `index-pack`), and carries a marker in its
//! environment, [`NODE_ENV`] = the node's data dir, which every descendant
//! inherits. That marker is what finds them when no handle is left:
//! - at start, [`sweep`] kills what a node killed with `kill -9` on this
//!   data dir left behind (one node per data dir, so every marked process
//!   is an orphan);
//! - at stop, [`kill_upstream_jobs`] ends the jobs that wait on upstreams at
//!   once (their requests get an answer instead of holding the drain), and
//!   after the drain [`sweep`] ends the rest.
//!
//! An upstream job also runs under a watchdog ([`Watchdog`]): when its
//! process group read fewer than `UPSTREAM_LOW_SPEED_BYTES` in the last
//! `--upstream-timeout`, it is killed. That one rule covers a host that
//! never accepts, one that accepts and never answers, and one that
//! trickles, on every transport (http, git://, ssh, file).
//!
//! What this module must never do: signal a process that is not marked as
//! this node's (pids are re-read from /proc and matched by marker or by
//! the process group the node made).

use crate::limits::UPSTREAM_LOW_SPEED_BYTES;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment variable that marks a node's git processes.
pub const NODE_ENV: &str = "TROVE_NODE";
/// Set to the node's pid on its git processes, beside [`NODE_ENV`]: what a
/// watcher of one node run ends, without touching the next run's jobs.
pub const NODE_PID_ENV: &str = "TROVE_NODE_PID";
/// Set (to `upstream`) on jobs that talk to an upstream.
pub const JOB_ENV: &str = "TROVE_NODE_JOB";

static MARKER: OnceLock<String> = OnceLock::new();

/// Sets this process's marker (its data dir); first call wins.
pub fn set_marker(data_dir: &std::path::Path) {
    let _ = MARKER.set(data_dir.to_string_lossy().into_owned());
}

/// The marker, once the node has started.
pub fn marker() -> Option<&'static str> {
    MARKER.get().map(String::as_str)
}

/// The pids whose environment holds `NODE_ENV=marker` (and, with
/// `upstream_only`, `JOB_ENV=upstream`; with `of_node`, `NODE_PID_ENV` of
/// that node's pid).
fn marked_pids(marker: &str, upstream_only: bool, of_node: Option<u32>) -> Vec<i32> {
    let node = format!("{NODE_ENV}={marker}");
    let job = format!("{JOB_ENV}=upstream");
    let run = of_node.map(|p| format!("{NODE_PID_ENV}={p}"));
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(e.path().join("environ")) else { continue };
        let (mut is_node, mut is_upstream, mut is_run) = (false, false, run.is_none());
        for v in env.split(|b| *b == 0) {
            is_node |= v == node.as_bytes();
            is_upstream |= v == job.as_bytes();
            is_run |= run.as_ref().is_some_and(|r| v == r.as_bytes());
        }
        if is_node && is_run && (!upstream_only || is_upstream) {
            pids.push(pid);
        }
    }
    pids
}

fn kill(pid: i32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

/// Kills every process marked as this data dir's node; returns how many.
/// At start they are orphans of a killed node; at stop, leftovers.
pub fn sweep(marker: &str) -> usize {
    let pids = marked_pids(marker, false, None);
    pids.iter().copied().for_each(kill);
    pids.len()
}

/// Kills every process the node run `node_pid` on `marker` left (the
/// orphan watcher's sweep once that node died); returns how many. Jobs of
/// a later run on the same data dir carry another pid and are left alone.
pub fn sweep_of(marker: &str, node_pid: u32) -> usize {
    let pids = marked_pids(marker, false, Some(node_pid));
    pids.iter().copied().for_each(kill);
    pids.len()
}

/// Kills the running upstream jobs of this node (at stop: what waits on an
/// upstream would hold the drain until its deadline).
pub fn kill_upstream_jobs() {
    if let Some(m) = marker() {
        marked_pids(m, true, None).into_iter().for_each(kill);
    }
}

/// Bytes read so far by the processes of group `pgid` (`rchar` in
/// /proc/PID/io: sockets, pipes and files alike).
fn group_bytes_read(pgid: i32) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let path = e.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else { continue };
        // The fields after the command name (which may hold spaces).
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let pgrp = rest.split_whitespace().nth(2).and_then(|s| s.parse::<i32>().ok());
        if pgrp != Some(pgid) {
            continue;
        }
        let io = std::fs::read_to_string(path.join("io")).unwrap_or_default();
        total +=
            io.lines().find_map(|l| l.strip_prefix("rchar: ")).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
    }
    total
}

/// Watches one upstream job's process group: [`Watchdog::stalled`] says
/// when it read fewer than `UPSTREAM_LOW_SPEED_BYTES` within the last
/// `window`.
pub struct Watchdog {
    pgid: i32,
    window: Duration,
    /// (when, bytes read by then), oldest first, spanning about `window`.
    samples: std::collections::VecDeque<(Instant, u64)>,
}

impl Watchdog {
    pub fn new(pgid: i32, window: Duration) -> Self {
        let mut samples = std::collections::VecDeque::new();
        samples.push_back((Instant::now(), group_bytes_read(pgid)));
        Self { pgid, window, samples }
    }

    /// Takes a sample; true when a whole window passed with too little read.
    pub fn stalled(&mut self) -> bool {
        let now = Instant::now();
        let read = group_bytes_read(self.pgid);
        self.samples.push_back((now, read));
        // Keep the newest sample at least a window old as the baseline.
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= self.window {
            self.samples.pop_front();
        }
        let (since, base) = self.samples[0];
        now.duration_since(since) >= self.window && read.saturating_sub(base) < UPSTREAM_LOW_SPEED_BYTES
    }

    /// Bytes the group had read at the last sample.
    pub fn bytes_read(&self) -> u64 {
        self.samples.back().map_or(0, |s| s.1)
    }

    /// Kills the whole group.
    pub fn kill(&self) {
        if let Some(p) = rustix::process::Pid::from_raw(self.pgid) {
            let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn a_silent_group_stalls_and_a_busy_one_does_not() {
        let window = Duration::from_millis(600);
        let mut silent = std::process::Command::new("sleep").arg("30").process_group(0).spawn().expect("sleep");
        let mut busy = std::process::Command::new("sh")
            .args(["-c", "while :; do head -c 65536 /dev/zero >/dev/null; done"])
            .process_group(0)
            .spawn()
            .expect("sh");
        // Before the watchdogs: each one's window starts when it is made
        // (a scan of /proc), and the silent one is made first.
        let started = Instant::now();
        let (mut w_silent, mut w_busy) =
            (Watchdog::new(silent.id() as i32, window), Watchdog::new(busy.id() as i32, window));
        let mut silent_stalled = false;
        while started.elapsed() < Duration::from_secs(10) && !silent_stalled {
            std::thread::sleep(Duration::from_millis(100));
            silent_stalled = w_silent.stalled();
            assert!(!w_busy.stalled(), "a group reading MBs a second is making progress");
        }
        assert!(silent_stalled, "a group that reads nothing stalls after its window");
        assert!(started.elapsed() >= window);
        w_silent.kill();
        w_busy.kill();
        let _ = (silent.wait(), busy.wait());
    }

    #[test]
    fn sweep_kills_marked_processes_only() {
        let marker = format!("/tmp/trove-reaper-test-{}", std::process::id());
        let mut marked = std::process::Command::new("sleep").arg("30").env(NODE_ENV, &marker).spawn().expect("sleep");
        let mut other =
            std::process::Command::new("sleep").arg("30").env(NODE_ENV, "another-node").spawn().expect("sleep");
        // Until the child has exec'd, /proc shows the parent's environment
        // (no marker): wait for the exec, or the sweep races it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let execd = |pid: u32| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep"));
        while !(execd(marked.id()) && execd(other.id())) {
            assert!(std::time::Instant::now() < deadline, "the children did not exec");
            std::thread::yield_now();
        }
        assert_eq!(sweep(&marker), 1);
        assert!(marked.wait().is_ok_and(|s| !s.success()), "the marked one was killed");
        assert!(other.try_wait().expect("try_wait").is_none(), "another node's process is left alone");
        let _ = other.kill();
        let _ = other.wait();
    }
}
