//! FUSE over io_uring: the kernel hands requests to per-CPU queues of
//! ring entries instead of `/dev/fuse` reads, and a queue's thread, pinned
//! to that CPU, answers them in place (Linux 6.14+, with
//! `/sys/module/fuse/parameters/enable_uring` set to 1).
//!
//! - [`prepare`] makes one queue per possible CPU (ring, buffers, eventfd)
//!   before the session starts, so the daemon tells the kernel it speaks
//!   io_uring (`FUSE_OVER_IO_URING` in the INIT reply, `fs`) only once it
//!   can.
//! - [`Prepared::start`] registers every entry on the session's
//!   connection and serves. If the kernel refuses a registration it goes
//!   back to `/dev/fuse` for the whole connection, which fuser's loop
//!   keeps serving: that loop also gets what never travels over the ring
//!   (FORGET, INTERRUPT).
//! - Passthrough is not served here (a backing file is registered through
//!   fuser's `/dev/fuse` replies), so `--read-path passthrough` keeps
//!   `/dev/fuse`.
//!
//! It owns the queues' threads and buffers; it never decides what an
//! operation answers (`crate::fs` does, through `crate::answer`).

mod abi;
mod dispatch;
mod entries;
mod queue;
mod reply;

use crate::fs::Shared;
use queue::Queue;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The kernel's switch for FUSE over io_uring.
pub(crate) const ENABLE_PARAM: &str = "/sys/module/fuse/parameters/enable_uring";

/// Whether the kernel would take a ring now (its module parameter is on).
pub(crate) fn kernel_enabled() -> bool {
    std::fs::read_to_string(ENABLE_PARAM).is_ok_and(|v| matches!(v.trim(), "Y" | "1"))
}

/// The kernel keeps a queue per possible CPU and routes a request to the
/// queue of the CPU it was made on, so every one must be served.
fn possible_cpus() -> usize {
    let list = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    let last = list.trim().rsplit([',', '-']).next().and_then(|n| n.parse::<usize>().ok());
    last.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |n| n + 1)
}

/// Queues made, not yet registered.
pub(crate) struct Prepared {
    queues: Vec<Queue>,
}

/// Makes a queue of `depth` entries per possible CPU, each able to carry
/// a request or reply of `payload_bytes`.
pub(crate) fn prepare(depth: usize, payload_bytes: usize) -> std::io::Result<Prepared> {
    let n = possible_cpus();
    let queues = (0..n).map(|q| Queue::new(q as u16, depth, payload_bytes)).collect::<std::io::Result<_>>()?;
    Ok(Prepared { queues })
}

/// The queues' threads, serving until the kernel ends their entries.
pub(crate) struct Running {
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Disconnected once every queue thread has ended (each holds a
    /// sender until it returns).
    ended: crossbeam_channel::Receiver<()>,
}

impl Prepared {
    /// Registers every queue on the session's connection `fuse` and serves
    /// `fs`. An error: the kernel refused and went back to `/dev/fuse`
    /// (the threads still end with the connection: join them).
    pub(crate) fn start(self, fuse: BorrowedFd<'_>, fs: Arc<Shared>) -> (Running, Result<(), String>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (ended_tx, ended) = crossbeam_channel::bounded::<()>(0);
        let mut threads = Vec::new();
        let mut outcome = Ok(());
        for queue in self.queues {
            let fd = match fuse.try_clone_to_owned() {
                Ok(fd) => fd,
                Err(e) => {
                    outcome = Err(format!("duplicating /dev/fuse: {e}"));
                    break;
                }
            };
            let (fs, tx, ended_tx) = (fs.clone(), tx.clone(), ended_tx.clone());
            let spawned = std::thread::Builder::new().name(format!("trove-ring-{}", threads.len())).spawn(move || {
                queue.serve(fd, fs, tx);
                drop(ended_tx);
            });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    outcome = Err(format!("starting a queue thread: {e}"));
                    break;
                }
            }
        }
        drop((tx, ended_tx));
        for _ in 0..threads.len() {
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => outcome = outcome.and(Err(e)),
                Err(_) => outcome = outcome.and(Err("a queue thread ended while registering".into())),
            }
        }
        (Running { threads, ended }, outcome)
    }
}

impl Running {
    /// Waits up to `within` for the queues to end (they end once the
    /// connection is gone); a thread still busy then is left to exit with
    /// the process.
    pub(crate) fn join(self, within: Duration) {
        match self.ended.recv_deadline(Instant::now() + within) {
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                self.threads.into_iter().for_each(|t| drop(t.join()));
            }
            _ => tracing::warn!("a FUSE queue thread did not end with its connection"),
        }
    }
}
