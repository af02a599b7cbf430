//! The readiness gate: FUSE operations that arrive before the inode table
//! is built wait for it (bounded), and get EIO with the reason once
//! preparing failed. After it opens, passing it is one atomic load.

use crate::table::Table;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Gate {
    ready: OnceLock<Arc<Table>>,
    failed: Mutex<Option<String>>,
    changed: Condvar,
}

impl Gate {
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

    /// The table, waiting up to `wait` for it; Err says why there is none.
    pub fn pass(&self, wait: Duration) -> Result<&Arc<Table>, String> {
        if let Some(t) = self.ready.get() {
            return Ok(t);
        }
        let deadline = Instant::now() + wait;
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(t) = self.ready.get() {
                return Ok(t);
            }
            if let Some(reason) = failed.as_ref() {
                return Err(reason.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("the tree index was not ready within {wait:?}"));
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
        let gate = Arc::new(Gate::default());
        assert!(gate.pass(Duration::from_millis(1)).is_err(), "bounded wait");
        let g = gate.clone();
        let waiter = std::thread::spawn(move || g.pass(Duration::from_secs(60)).map(|t| t.len()));
        gate.open(Arc::new(Table::build(TreeIndex { commit: [0; 20], entries: vec![] }).expect("empty tree")));
        assert_eq!(waiter.join().expect("joined"), Ok(1));
        let failed = Gate::default();
        failed.fail("the node is gone".into());
        assert_eq!(failed.pass(Duration::from_secs(60)).err().as_deref(), Some("the node is gone"));
    }
}
