//! Running the git CLI from a shard without blocking it.
//!
//! A whole command (`clone`, `fetch`, `cat-file`) is waited for by a
//! thread; the shard awaits its output on a oneshot. A streaming command
//! (`upload-pack`) gets socketpairs for stdin and stdout that the shard
//! drives as glommio sockets, so its bytes flow through the reactor with no
//! thread per connection; only its exit status and stderr are collected by a
//! thread.
//!
//! Every command runs in a process group of its own with the node's marker
//! (reaper.rs); an upstream job also under a no-progress watchdog.
//!
//! Secrets: a client's Authorization header reaches git through
//! `GIT_CONFIG_*` environment variables (`http.extraHeader`), never argv,
//! and is never logged. An upstream job never follows a redirect, so the
//! header never leaves the upstream's origin. This module must never block
//! the shard thread.

use crate::repo::error::RepoError;
use crate::repo::reaper;
use crate::secret::Secret;
use futures_channel::oneshot;
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Most stderr kept from a git command, for error messages.
const STDERR_MAX_BYTES: usize = 64 * 1024;
/// How often an upstream job's watchdog samples its progress.
const WATCHDOG_TICK: Duration = Duration::from_millis(250);

/// A git invocation: arguments, working directory, extra environment.
#[derive(Clone)]
pub struct Git {
    args: Vec<OsString>,
    dir: Option<PathBuf>,
    env: Vec<(String, String)>,
    /// An upstream job: killed when it makes no progress for this long
    /// (reaper.rs).
    upstream: Option<Duration>,
    /// Where an upstream job's watchdog leaves the bytes its process group
    /// has read so far (what `GET .../progress` reports of a clone).
    progress: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// What a finished command left.
pub struct GitOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl GitOutput {
    pub fn ok(&self) -> bool {
        self.status.success()
    }
}

impl Git {
    pub fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self {
            args: args.into_iter().map(Into::into).collect(),
            dir: None,
            env: Vec::new(),
            upstream: None,
            progress: None,
        }
    }

    /// Runs in `dir` (`git -C dir`).
    pub fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_owned());
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    /// Marks this as a job that talks to an upstream: it is killed when it
    /// makes no progress for `no_progress` (connecting included), and at
    /// node stop.
    pub fn upstream(mut self, no_progress: Duration) -> Self {
        self.upstream = Some(no_progress);
        self
    }

    /// Leaves the bytes an upstream job has read in `bytes`, each watchdog
    /// tick.
    pub fn progress(mut self, bytes: Arc<std::sync::atomic::AtomicU64>) -> Self {
        self.progress = Some(bytes);
        self
    }

    /// Passes `authorization` to the upstream as an HTTP header, through the
    /// environment (never argv).
    pub fn auth(self, authorization: Option<&Secret>) -> Self {
        match authorization {
            Some(a) => self
                .env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env("GIT_CONFIG_VALUE_0", &format!("Authorization: {}", a.expose())),
            None => self,
        }
    }

    /// The command with its environment, for blocking callers that run it
    /// on a thread of their own (archiving).
    pub(crate) fn command(&self) -> Command {
        let mut c = Command::new("git");
        if let Some(d) = &self.dir {
            c.arg("-C").arg(d);
        }
        // A mirror may have come from S3, which is hostile input: whatever
        // its files say, no hook or fsmonitor runs.
        for (k, v) in crate::repo::untrusted::NO_CODE_CONFIG {
            c.arg("-c").arg(format!("{k}={v}"));
        }
        if let Some(window) = self.upstream {
            // curl's own low-speed abort for http(s), beside the watchdog.
            c.arg("-c").arg(format!("http.lowSpeedLimit={}", crate::limits::UPSTREAM_LOW_SPEED_BYTES));
            c.arg("-c").arg(format!("http.lowSpeedTime={}", window.as_secs().max(1)));
            // An upstream's redirect is never followed: git would send the
            // client's Authorization (http.extraHeader) to wherever it
            // points, and mirror that host's repo under the allowed name.
            // A 3xx then fails the job ([`redirect_status`] tells it).
            c.arg("-c").arg("http.followRedirects=false");
            c.env(reaper::JOB_ENV, "upstream");
        }
        c.args(&self.args);
        // Its own process group, so a kill reaches git's helpers too; and
        // the node's marker, which every descendant inherits (reaper.rs).
        c.process_group(0);
        if let Some(m) = reaper::marker() {
            c.env(reaper::NODE_ENV, m).env(reaper::NODE_PID_ENV, std::process::id().to_string());
        }
        // Never prompt for credentials on a server; never read the
        // operator's global config into a cache's behaviour.
        c.env("GIT_TERMINAL_PROMPT", "0").env("GIT_ASKPASS", "true").env("GIT_CONFIG_NOSYSTEM", "1");
        c.env("GIT_CONFIG_GLOBAL", "/dev/null").env("LC_ALL", "C");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// What the command is, for logs: its first two arguments (never the
    /// environment).
    pub fn describe(&self) -> String {
        let words: Vec<String> = self.args.iter().take(2).map(|a| a.to_string_lossy().into_owned()).collect();
        format!("git {}", words.join(" "))
    }

    /// Runs to completion, feeding `stdin`; a thread waits for it, and the
    /// shard kills it (through a pidfd, immune to pid reuse) after `timeout`.
    pub async fn run(&self, stdin: Vec<u8>, timeout: Duration) -> Result<GitOutput, RepoError> {
        let what = self.describe();
        let spawn_err = |e: std::io::Error| RepoError::Spawn(what.clone(), e.to_string());
        let mut child = self
            .command()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        let pid = rustix::process::Pid::from_child(&child);
        let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(spawn_err(e.into()));
            }
        };
        let input = child.stdin.take();
        let pgid = child.id() as i32;
        let done = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicBool::new(false));
        if let Some(window) = self.upstream {
            let (done, stalled, progress) = (done.clone(), stalled.clone(), self.progress.clone());
            let watch = move || {
                let mut dog = reaper::Watchdog::new(pgid, window);
                while !done.load(Ordering::Acquire) {
                    std::thread::sleep(WATCHDOG_TICK);
                    let stalled_now = dog.stalled();
                    if let Some(p) = &progress {
                        p.store(dog.bytes_read(), Ordering::Relaxed);
                    }
                    if !done.load(Ordering::Acquire) && stalled_now {
                        stalled.store(true, Ordering::Release);
                        dog.kill();
                        return;
                    }
                }
            };
            std::thread::Builder::new().name("trove-git-watch".into()).spawn(watch).map_err(spawn_err)?;
        }
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("trove-git".into())
            .spawn(move || {
                // Feed stdin beside the wait, so neither side's pipe fills up.
                let feeder = std::thread::spawn(move || {
                    if let Some(mut i) = input {
                        let _ = std::io::Write::write_all(&mut i, &stdin);
                    }
                });
                let out = child.wait_with_output();
                done.store(true, Ordering::Release);
                let _ = feeder.join();
                let _ = tx.send(out);
            })
            .map_err(spawn_err)?;
        let mut rx = rx;
        let finished = futures_lite::future::or(async { Some((&mut rx).await) }, async {
            glommio::timer::sleep(timeout).await;
            None
        })
        .await;
        let Some(finished) = finished else {
            let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
            if let Some(p) = rustix::process::Pid::from_raw(pgid) {
                let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
            }
            let _ = rx.await;
            return Err(RepoError::Timeout(what, timeout));
        };
        let died = || RepoError::Git { what: what.clone(), stderr: "the git thread died".into() };
        let out = finished.map_err(|_| died())?.map_err(spawn_err)?;
        if stalled.load(Ordering::Acquire) {
            return Err(RepoError::Stalled(what, self.upstream.unwrap_or_default()));
        }
        Ok(GitOutput {
            status: out.status,
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(STDERR_MAX_BYTES)]).into_owned(),
        })
    }

    /// Starts the command with socketpairs on stdin and stdout, driven by the
    /// calling shard's reactor.
    pub fn spawn_streaming(&self) -> Result<Streaming, RepoError> {
        let what = self.describe();
        let spawn_err = |e: std::io::Error| RepoError::Spawn(what.clone(), e.to_string());
        let (in_ours, in_theirs) = std::os::unix::net::UnixStream::pair().map_err(spawn_err)?;
        let (out_ours, out_theirs) = std::os::unix::net::UnixStream::pair().map_err(spawn_err)?;
        let mut cmd = self.command();
        cmd.stdin(Stdio::from(OwnedFd::from(in_theirs)))
            .stdout(Stdio::from(OwnedFd::from(out_theirs)))
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(spawn_err)?;
        in_ours.set_nonblocking(true).map_err(spawn_err)?;
        out_ours.set_nonblocking(true).map_err(spawn_err)?;
        // SAFETY: each fd was just taken out of a std socket, so it is open
        // and owned by nothing else.
        let stdin = unsafe { glommio::net::UnixStream::from_raw_fd(in_ours.into_raw_fd()) };
        let stdout = unsafe { glommio::net::UnixStream::from_raw_fd(out_ours.into_raw_fd()) };
        let (tx, rx) = oneshot::channel();
        let stderr = child.stderr.take();
        std::thread::Builder::new()
            .name("trove-git-wait".into())
            .spawn(move || {
                let err = read_stderr(stderr);
                let status = child.wait();
                let _ = tx.send(status.map(|s| (s, err)));
            })
            .map_err(spawn_err)?;
        Ok(Streaming { stdin: Some(stdin), stdout, exit: rx, what })
    }
}

/// A running streaming command.
pub struct Streaming {
    pub stdin: Option<glommio::net::UnixStream>,
    pub stdout: glommio::net::UnixStream,
    exit: oneshot::Receiver<std::io::Result<(ExitStatus, String)>>,
    pub what: String,
}

impl Streaming {
    /// Waits for the exit: its status and stderr.
    pub async fn exit(self) -> Result<(ExitStatus, String), RepoError> {
        let what = self.what;
        match self.exit.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(RepoError::Spawn(what, e.to_string())),
            Err(_) => Err(RepoError::Git { what, stderr: "the wait thread died".into() }),
        }
    }
}

/// The HTTP status of an upstream's redirect, when git's stderr says a job
/// failed on one (with `http.followRedirects=false`, git reports a 3xx as
/// "The requested URL returned error: 302").
pub fn redirect_status(stderr: &str) -> Option<u16> {
    let (_, after) = stderr.split_once("returned error: 3")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    (digits.len() == 2).then(|| 300 + digits.parse::<u16>().unwrap_or(0))
}

fn read_stderr(stderr: Option<std::process::ChildStderr>) -> String {
    let mut v = Vec::new();
    if let Some(mut e) = stderr {
        let _ = (&mut e).take(STDERR_MAX_BYTES as u64).read_to_end(&mut v);
        // Drain the rest so the child never blocks on a full pipe.
        let _ = std::io::copy(&mut e, &mut std::io::sink());
    }
    String::from_utf8_lossy(&v).into_owned()
}
