//! The asking side of the control socket, for `trove mount` and `trove
//! umount`: finds the daemon of a data dir, starting one (`trove mountd`,
//! detached in its own session) if none runs, and asks it. A daemon that
//! is exiting is waited for, then replaced; two askers starting daemons at
//! once end up at the one that took the data dir's lock. Every wait is
//! bounded; what the daemon sends is bounded and parsed as data.

use super::control::{read_line, same_user, send, socket_path, Reply, Request};
use super::DaemonOptions;
use crate::limits::*;
use crate::options::{MountError, MountOptions};
use crate::status::MountRecord;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Asks the data dir's daemon (started if none runs) for the mount;
/// `progress` hears what it says meanwhile. The mount's record once ready.
pub fn mount(trove: &Path, options: &MountOptions, progress: &dyn Fn(&str)) -> Result<MountRecord, MountError> {
    let socket = socket_path(&options.data_dir);
    let deadline = Instant::now() + DAEMON_START_WAIT;
    loop {
        let conn = match UnixStream::connect(&socket) {
            Ok(c) => trusted(c, &socket)?,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("no mount daemon at {} ({e}); starting one", socket.display());
                start_daemon(trove, &DaemonOptions::of(options))?;
                continue;
            }
            Err(e) => {
                return Err(MountError::Daemon(format!(
                    "no mount daemon answers at {} ({e}) within {DAEMON_START_WAIT:?}; its log is {}",
                    socket.display(),
                    log_path(&options.data_dir).display()
                )))
            }
        };
        send(&conn, &Request::Mount { options: Box::new(options.clone()) })
            .map_err(|e| MountError::Daemon(format!("asking it for the mount: {e}")))?;
        // Each reply must come within the mount's own deadline; progress
        // (a node cloning) comes every second while it lasts.
        let _ = conn.set_read_timeout(Some(options.ready_timeout + DAEMON_START_WAIT));
        let mut replies = BufReader::new(conn);
        loop {
            match next(&mut replies)? {
                Reply::Progress { text } => progress(&text),
                Reply::Ready { record, .. } => return Ok(*record),
                Reply::Failed { code, message } => return Err(MountError::Reported { code, message }),
                Reply::Stopping { pid } => {
                    wait_gone(pid)?;
                    break;
                }
                Reply::Unmounted => return Err(MountError::Daemon("it answered a mount with `unmounted`".into())),
            }
        }
    }
}

/// Asks the daemon on `data_dir` to unmount `mountpoint`, waiting up to
/// `wait` for it.
pub fn unmount(data_dir: &Path, mountpoint: &Path, wait: Duration) -> Result<(), MountError> {
    let socket = socket_path(data_dir);
    let conn = UnixStream::connect(&socket)
        .map_err(|e| MountError::Daemon(format!("no mount daemon answers at {} ({e})", socket.display())))?;
    let conn = trusted(conn, &socket)?;
    let wait_ms = wait.as_millis() as u64;
    send(&conn, &Request::Unmount { mountpoint: mountpoint.to_owned(), wait_ms })
        .map_err(|e| MountError::Daemon(format!("asking it to unmount: {e}")))?;
    let _ = conn.set_read_timeout(Some(wait + CONTROL_REQUEST_TIMEOUT));
    match next(&mut BufReader::new(conn))? {
        Reply::Unmounted => Ok(()),
        Reply::Failed { code, message } => Err(MountError::Reported { code, message }),
        other => Err(MountError::Daemon(format!("it answered an unmount with {other:?}"))),
    }
}

/// `conn` if this user's daemon (or root's) is at its other end; else
/// nothing is sent on it.
fn trusted(conn: UnixStream, socket: &Path) -> Result<UnixStream, MountError> {
    if same_user(&conn) {
        return Ok(conn);
    }
    Err(MountError::Daemon(format!(
        "the socket at {} is served by another user, not this user's mount daemon; nothing was sent to it. \
         Remove it, or set TROVE_RUN_DIR to a directory only you can write",
        socket.display()
    )))
}

fn next(replies: &mut impl BufRead) -> Result<Reply, MountError> {
    match read_line::<Reply>(replies) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(MountError::Daemon("it closed the connection without an answer (was it killed?)".into())),
        Err(e) => Err(MountError::Daemon(format!("reading its answer: {e}"))),
    }
}

/// The log a background daemon writes (its stderr).
pub fn log_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("mountd.log")
}

/// Starts `trove mountd` for `options` and waits for its first line:
/// `listening` (or `busy`: another one took the lock first, and listens)
/// is done; `error CODE MESSAGE` is its failure.
fn start_daemon(trove: &Path, options: &DaemonOptions) -> Result<(), MountError> {
    std::fs::create_dir_all(&options.data_dir)
        .map_err(|e| MountError::DataDir(format!("creating {}: {e}", options.data_dir.display())))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(&options.data_dir))
        .map_err(|e| MountError::DataDir(format!("opening {}: {e}", log_path(&options.data_dir).display())))?;
    let mut cmd = Command::new(trove);
    cmd.arg("mountd")
        .arg(&options.data_dir)
        .args(["--shards", &options.shards.to_string()])
        .args(["--cache-capacity", &options.cache_capacity_bytes.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    if options.own_files {
        cmd.arg("--own-files");
    }
    // Its own session: the asker's terminal and its Ctrl-C are not the
    // daemon's.
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| rustix::process::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    let mut child = cmd.spawn().map_err(|e| MountError::Daemon(format!("starting {}: {e}", trove.display())))?;
    let out = child.stdout.take().expect("piped");
    // Its first line, within a bound: read on a thread, waited for here.
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::Read::take(BufReader::new(out), CONTROL_LINE_MAX).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(DAEMON_START_WAIT).unwrap_or_default();
    // It runs on, reparented once this process exits; reaped meanwhile.
    std::thread::spawn(move || child.wait());
    let line = line.trim_end();
    match line.split_once(' ').unwrap_or((line, "")) {
        ("listening", _) | ("busy", _) => Ok(()),
        ("error", rest) => {
            let (code, message) = rest.split_once(' ').unwrap_or(("1", rest));
            Err(MountError::Reported { code: code.parse().unwrap_or(1), message: message.to_owned() })
        }
        _ => Err(MountError::Daemon(format!(
            "it did not start within {DAEMON_START_WAIT:?}; see {}",
            log_path(&options.data_dir).display()
        ))),
    }
}

/// Waits for the exiting daemon `pid` to be gone.
fn wait_gone(pid: u32) -> Result<(), MountError> {
    let deadline = Instant::now() + DAEMON_START_WAIT;
    while crate::status::process_alive(pid) {
        if Instant::now() > deadline {
            return Err(MountError::Daemon(format!("the exiting mount daemon (pid {pid}) did not exit")));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
