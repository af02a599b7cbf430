//! The mirrors service's periodic work on a shard: every
//! `--fetch-interval`, fetch the mirrors used recently, repack those that
//! fetches changed (upkeep.rs), and evict past `--mirror-capacity`
//! (evict.rs).

use super::events::MirrorEvent;
use super::service::Mirrors;
use crate::repo::{Need, RepoKey};
use std::rc::Rc;
use std::time::Duration;

/// A mirror read within this long is fetched in the background.
const RECENT_USE: Duration = Duration::from_secs(3600);

impl Mirrors {
    /// Runs until the shard stops (the runtime cancels it).
    pub async fn background(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(self.config().fetch_interval).await;
            self.fetch_recent_mirrors().await;
            self.upkeep_mirrors().await;
            self.evict_mirrors().await;
        }
    }

    /// Fetches the mirrors used recently (background, every fetch interval),
    /// and drops the shared clone responses of the others: kept until the
    /// mirror changes, an idle repo's would otherwise hold disk for good.
    async fn fetch_recent_mirrors(self: &Rc<Self>) {
        {
            let mut repos = self.repos.borrow_mut();
            self.drop_dead_records(&mut repos);
            self.shard.stats().repo_states.store(repos.len() as u64, std::sync::atomic::Ordering::Relaxed);
            for (hash, st) in repos.iter() {
                if st.waiters.is_none() && st.used_at.elapsed() >= RECENT_USE {
                    self.tell(*hash, MirrorEvent::Idle);
                }
            }
        }
        let recent: Vec<RepoKey> = self
            .repos
            .borrow()
            .values()
            .filter(|s| s.ready && s.waiters.is_none() && s.used_at.elapsed() < RECENT_USE)
            // A private repo is fetched with a client's credentials, when one asks.
            .filter(|s| !super::access::is_private(&self.mirror_path(&s.key)))
            .map(|s| s.key.clone())
            .collect();
        for key in recent {
            if let Err(e) = self.ensure(key.clone(), None, Need::Fetch).await {
                tracing::debug!(repo = %key, error = %e, "background fetch failed");
            }
        }
    }
}
