//! The objects service's periodic work on a shard: recency notes flushed
//! to their owners, recency written to disk, expired objects removed.

use super::messages::ObjectMsg;
use super::service::Objects;
use crate::limits::{EXPIRY_SWEEP_INTERVAL, RECENCY_FLUSH_INTERVAL, TOUCH_FLUSH_INTERVAL};
use crate::stats::bump;
use std::rc::Rc;
use std::time::Duration;

impl Objects {
    /// Runs until the shard stops (the runtime cancels it).
    pub async fn background(self: Rc<Self>) {
        let (mut since_sweep, mut since_recency) = (Duration::ZERO, Duration::ZERO);
        loop {
            glommio::timer::sleep(TOUCH_FLUSH_INTERVAL).await;
            let batches: Vec<Vec<u128>> = self.pending_touches.borrow_mut().iter_mut().map(std::mem::take).collect();
            for (owner, hashes) in batches.into_iter().enumerate() {
                if !hashes.is_empty() {
                    // Advisory: when the owner's queue is full, drop the notes.
                    let _ = self.port.try_send(owner as crate::key::ShardId, ObjectMsg::Touch { hashes });
                }
            }
            since_sweep += TOUCH_FLUSH_INTERVAL;
            since_recency += TOUCH_FLUSH_INTERVAL;
            if since_recency >= RECENCY_FLUSH_INTERVAL {
                since_recency = Duration::ZERO;
                self.local.recency.flush(&self.local.layout, self.shard.id).await;
            }
            if since_sweep >= EXPIRY_SWEEP_INTERVAL {
                since_sweep = Duration::ZERO;
                let expired = self.local.index.borrow().expired(crate::clock::now_ms());
                for hash in expired {
                    if self.local.remove(hash).await.is_ok() {
                        bump(&self.stats().expirations, 1);
                    }
                }
                self.refresh_local_gauges();
            }
        }
    }
}
