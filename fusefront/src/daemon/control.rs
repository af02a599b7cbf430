//! The mount daemon's control socket: how `trove mount` asks it to add a
//! mount and `trove umount` to remove one.
//!
//! A Unix socket in the run dir (`mountd-<data dir id>.sock`, mode 0600),
//! JSON lines: one [`Request`] per connection, then the daemon's
//! [`Reply`]s. Only its own user (or root) is served, by the socket's
//! peer credentials. Every line is bounded (`CONTROL_LINE_MAX`), a request
//! must arrive within `CONTROL_REQUEST_TIMEOUT`, and at most
//! `CONTROL_CONNECTIONS_MAX` connections are served at once. An asker that
//! leaves before its mount is ready stops that mount (as Ctrl-C did when
//! each mount was its own process). This never mounts anything itself.

use super::{Daemon, Outcome};
use crate::limits::*;
use crate::mount::MountEvent;
use crate::options::{MountError, MountOptions};
use crate::status::MountRecord;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a connection asks.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "ask", rename_all = "snake_case")]
pub enum Request {
    /// Add this mount; replies come until it is ready or has failed.
    Mount { options: Box<MountOptions> },
    /// Unmount this mountpoint, waiting up to `wait_ms` for it.
    Unmount { mountpoint: PathBuf, wait_ms: u64 },
}

/// What the daemon answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "say", rename_all = "snake_case")]
pub enum Reply {
    Progress {
        text: String,
    },
    Ready {
        record: Box<MountRecord>,
        took_ms: u64,
    },
    Unmounted,
    Failed {
        code: i32,
        message: String,
    },
    /// The daemon is exiting (its last mount went): wait for process
    /// `pid` to end, then start another.
    Stopping {
        pid: u32,
    },
}

/// The control socket of the daemon on `data_dir` (absolute).
pub fn socket_path(data_dir: &Path) -> PathBuf {
    crate::status::run_dir().join(format!("mountd-{}.sock", trove_engine::overlay::path_id(data_dir)))
}

/// The bound socket; its file is removed when dropped.
pub struct Listener {
    path: PathBuf,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `daemon`'s socket and serves it on a thread of its own.
pub fn listen(daemon: &Arc<Daemon>) -> Result<Listener, MountError> {
    let path = socket_path(daemon.data_dir());
    let failed = |op: &str, e: std::io::Error| MountError::Daemon(format!("{op} {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| failed("creating the run dir of", e))?;
    }
    // The data dir's lock is this daemon's: a socket file left there is
    // a killed daemon's.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| failed("binding", e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|e| failed("securing", e))?;
    let daemon = daemon.clone();
    let serving = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("trove-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if !same_user(&conn) {
                    tracing::warn!("refused a control connection from another user");
                    continue;
                }
                if serving.fetch_add(1, Ordering::AcqRel) >= CONTROL_CONNECTIONS_MAX {
                    serving.fetch_sub(1, Ordering::AcqRel);
                    let _ = send(&conn, &Reply::Failed { code: 1, message: "the mount daemon is busy; retry".into() });
                    continue;
                }
                let (daemon, serving) = (daemon.clone(), serving.clone());
                let spawned = std::thread::Builder::new().name("trove-control-conn".into()).spawn(move || {
                    serve_one(&daemon, conn);
                    serving.fetch_sub(1, Ordering::AcqRel);
                });
                if spawned.is_err() {
                    tracing::warn!("no thread for a control connection");
                }
            }
        })
        .map_err(|e| failed("serving", e))?;
    Ok(Listener { path })
}

/// Whether the peer is this process's user, or root: the daemon serves
/// no other, and `trove mount` sends its mount (with the node's
/// credentials) to no other (a run dir another user could write to, such
/// as `/tmp/trove-UID` made by them first, could hold their socket).
pub(crate) fn same_user(conn: &UnixStream) -> bool {
    let me = rustix::process::geteuid();
    rustix::net::sockopt::socket_peercred(conn).is_ok_and(|c| c.uid == me || c.uid.is_root())
}

/// Writes one reply line.
pub(crate) fn send(mut conn: &UnixStream, reply: &impl Serialize) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    conn.write_all(&line)
}

/// Reads one line of at most `CONTROL_LINE_MAX` bytes; None at its end.
pub(crate) fn read_line<T: for<'de> Deserialize<'de>>(reader: &mut impl BufRead) -> std::io::Result<Option<T>> {
    let mut line = Vec::new();
    let n = std::io::Read::take(reader, CONTROL_LINE_MAX + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "a control line too long or cut short"));
    }
    serde_json::from_slice(&line).map(Some).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn serve_one(daemon: &Arc<Daemon>, conn: UnixStream) {
    let _ = conn.set_read_timeout(Some(CONTROL_REQUEST_TIMEOUT));
    let _ = conn.set_write_timeout(Some(CONTROL_REQUEST_TIMEOUT));
    let request = match conn.try_clone().map(BufReader::new).and_then(|mut r| read_line::<Request>(&mut r)) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            let _ = send(&conn, &Reply::Failed { code: 2, message: format!("a bad control request: {e}") });
            return;
        }
    };
    match request {
        Request::Mount { options } => serve_mount(daemon, &conn, *options),
        Request::Unmount { mountpoint, wait_ms } => {
            let reply = match daemon.remove(&mountpoint) {
                None => Reply::Failed {
                    code: 2,
                    message: format!("{} is not a mount of this daemon", mountpoint.display()),
                },
                Some(done) => match done.recv_timeout(Duration::from_millis(wait_ms)) {
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => Reply::Failed {
                        code: 1,
                        message: format!("{} did not unmount within {wait_ms} ms", mountpoint.display()),
                    },
                    _ => Reply::Unmounted,
                },
            };
            let _ = send(&conn, &reply);
        }
    }
}

/// Adds the mount and tells the asker how it goes until it is ready or
/// failed; an asker gone before that stops it.
fn serve_mount(daemon: &Arc<Daemon>, conn: &UnixStream, options: MountOptions) {
    if options.data_dir != daemon.data_dir() {
        let message = format!(
            "this daemon serves the data dir {}, not {}",
            daemon.data_dir().display(),
            options.data_dir.display()
        );
        let _ = send(conn, &Reply::Failed { code: 2, message });
        return;
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let mountpoint = match daemon.add(options, move |o| {
        let _ = tx.send(o);
    }) {
        Ok(mountpoint) => mountpoint,
        Err(e) => {
            let reply = match e {
                MountError::Stopping => Reply::Stopping { pid: std::process::id() },
                e => Reply::Failed { code: e.exit_code(), message: e.to_string() },
            };
            let _ = send(conn, &reply);
            return;
        }
    };
    let leave = |why: &str| {
        tracing::info!(mountpoint = %mountpoint.display(), "{why}; stopping the mount it asked for");
        daemon.remove(&mountpoint);
    };
    loop {
        let outcome = match rx.recv_timeout(STATUS_INTERVAL / 10) {
            Ok(o) => o,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if hung_up(conn) {
                    return leave("the asker left before the mount was ready");
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        let (reply, last) = match outcome {
            Outcome::Event(MountEvent::Progress(text)) => (Reply::Progress { text }, false),
            Outcome::Event(MountEvent::Ready(record, took)) => {
                (Reply::Ready { record, took_ms: took.as_millis() as u64 }, true)
            }
            Outcome::Ended(Err(e)) => (Reply::Failed { code: e.exit_code(), message: e.to_string() }, true),
            Outcome::Ended(Ok(())) => {
                (Reply::Failed { code: 1, message: "the mount was unmounted before it was ready".into() }, true)
            }
        };
        if send(conn, &reply).is_err() && !last {
            return leave("the asker's connection broke");
        }
        if last {
            return;
        }
    }
}

/// Whether the other end closed the connection.
fn hung_up(conn: &UnixStream) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(conn, PollFlags::RDHUP)];
    poll(&mut fds, Some(&rustix::event::Timespec::default())).is_ok_and(|n| n > 0)
        && fds[0].revents().intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR)
}
