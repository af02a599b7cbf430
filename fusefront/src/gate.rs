//! The readiness gate: FUSE operations that arrive before the inode table
//! is built wait for it, until one deadline for the whole mount
//! (`--ready-timeout` from the start, or from the last progress the node
//! reported of a clone: [`Gate::extend`]), and get EIO with the reason
//! once preparing failed or the deadline passed. Waiters do not queue behind
//! each other: eight operations on two FUSE threads used to wait the
//! timeout each, in turn (10, 10, 20, 20... s). After it opens, passing it
//! is one atomic load.

use crate::table::Table;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct Gate {
    ready: OnceLock<Arc<Table>>,
    failed: Mutex<Option<String>>,
    changed: Condvar,
    /// When waiting ends for every operation, ready or not (moved by
    /// `extend` while the node makes progress).
    deadline: Mutex<Instant>,
    /// What `deadline` was set from, for the reason.
    wait: Duration,
}

impl Gate {
    /// A closed gate that holds operations for at most `wait` from now.
    pub fn new(wait: Duration) -> Gate {
        Gate {
            ready: OnceLock::new(),
            failed: Mutex::new(None),
            changed: Condvar::new(),
            deadline: Mutex::new(Instant::now() + wait),
            wait,
        }
    }

    /// When waiting ends for every operation, ready or not.
    pub fn deadline(&self) -> Instant {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node made progress: waiting ends `--ready-timeout` from now.
    pub fn extend(&self) {
        let _g = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now() + self.wait;
        self.changed.notify_all();
    }

    /// Opens the gate on `table`.
    pub fn open(&self, table: Arc<Table>) {
        let _ = self.ready.set(table);
        let _g = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        self.changed.notify_all();
    }

    /// Preparing failed: every waiter, and every later operation, gets EIO.
    pub fn fail(&self, reason: String) {
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
        self.changed.notify_all();
    }

    /// The table, waiting for it until the gate's deadline; Err says why
    /// there is none (at once once it failed or the deadline passed).
    pub fn pass(&self) -> Result<&Arc<Table>, String> {
        if let Some(t) = self.ready.get() {
            return Ok(t);
        }
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(t) = self.ready.get() {
                return Ok(t);
            }
            if let Some(reason) = failed.as_ref() {
                return Err(reason.clone());
            }
            let left = self.deadline().saturating_duration_since(Instant::now());
            if left.is_zero() {
                let reason = format!(
                    "the tree index was not ready within {:?} (--ready-timeout) of the last progress",
                    self.wait
                );
                *failed = Some(reason.clone());
                self.changed.notify_all();
                return Err(reason);
            }
            failed = self.changed.wait_timeout(failed, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_engine::tree::index::TreeIndex;

    #[test]
    fn waiters_are_let_through_or_told_why_not() {
        let gate = Arc::new(Gate::new(Duration::from_secs(60)));
        let g = gate.clone();
        let waiter = std::thread::spawn(move || g.pass().map(|t| t.len()));
        gate.open(Arc::new(Table::build(TreeIndex::empty([0; 20])).expect("empty tree")));
        assert_eq!(waiter.join().expect("joined"), Ok(1));
        let failed = Gate::new(Duration::from_secs(60));
        failed.fail("the node is gone".into());
        assert_eq!(failed.pass().err().as_deref(), Some("the node is gone"));
    }

    #[test]
    fn the_deadline_is_one_for_the_mount_not_one_per_waiter() {
        let gate = Arc::new(Gate::new(Duration::from_millis(300)));
        let started = Instant::now();
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let g = gate.clone();
                std::thread::spawn(move || g.pass().err())
            })
            .collect();
        for w in waiters {
            assert!(w.join().expect("joined").is_some_and(|e| e.contains("--ready-timeout")));
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let t = Instant::now();
        assert!(gate.pass().is_err(), "later operations fail at once");
        assert!(t.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn progress_moves_the_deadline_for_every_waiter() {
        let gate = Arc::new(Gate::new(Duration::from_millis(400)));
        let g = gate.clone();
        let (tx, answered) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(g.pass().map(|t| t.len())));
        // Progress comes every 100 ms until the deadline set at the start
        // is well past; the waiter's answer is what is waited for.
        let first = gate.deadline();
        while Instant::now() < first + Duration::from_millis(400) {
            match answered.recv_timeout(Duration::from_millis(100)) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => gate.extend(),
                other => panic!("the waiter was let go while progress came: {other:?}"),
            }
            assert!(gate.deadline() > first, "progress moved the deadline");
        }
        gate.open(Arc::new(Table::build(TreeIndex::empty([0; 20])).expect("empty tree")));
        let got = answered.recv_timeout(Duration::from_secs(5)).expect("the waiter answers once the gate opens");
        assert_eq!(got, Ok(1), "held while progress came, then let through");
    }
}
