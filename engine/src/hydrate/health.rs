//! Whether the node answers, as the owner shard's hydration queue last saw
//! it, and the probe that finds out when it answers again.
//!
//! One fetch that times out or cannot reach the node marks it down: from
//! then on the queue fails an open of an unfetched file at once instead of
//! making each wait the whole `--fetch-timeout` in turn (a tree walk over a
//! hung node would hang for files x timeout), keeps prefetches aside, and
//! probes `GET /_liveness` every [`PROBE_INTERVAL`]. The first answer marks
//! the node up again and the prefetches go back in the queue. Hydrated
//! files never depend on this: they are opened without asking anyone.
//! [`NodeHealth`] is shared with the mount, which shows it in `trove mounts`
//! and clears its last error on recovery. This module never blocks the
//! shard thread.

use super::config::HydrateConfig;
use crate::remote::http::{send, ClientOptions};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How often a down node is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What the mount may read of the node's health, from any thread.
#[derive(Debug, Default)]
pub struct NodeHealth {
    down: AtomicBool,
    /// Times the node came back after being down.
    recoveries: AtomicU64,
}

impl NodeHealth {
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    pub fn recoveries(&self) -> u64 {
        self.recoveries.load(Ordering::Acquire)
    }

    pub(crate) fn mark_down(&self) {
        self.down.store(true, Ordering::Release);
    }

    pub(crate) fn mark_up(&self) {
        self.recoveries.fetch_add(1, Ordering::AcqRel);
        self.down.store(false, Ordering::Release);
    }
}

/// Waits until the node answers `GET /_liveness` with 200, asking every
/// [`PROBE_INTERVAL`], each ask bounded by the client's own timeouts.
pub(crate) async fn until_answering(config: &HydrateConfig, client: &ClientOptions) {
    let node = config.node.as_str().trim_end_matches('/').to_owned();
    let Ok(url) = url::Url::parse(&format!("{node}/_liveness")) else { return };
    loop {
        glommio::timer::sleep(PROBE_INTERVAL).await;
        match send("GET _liveness", http::Method::GET, &url, &[], Bytes::new(), client).await {
            Ok(resp) if resp.status() == http::StatusCode::OK => return,
            Ok(resp) => {
                tracing::debug!(status = resp.status().as_u16(), "the node answers its probe, not yet with 200")
            }
            Err(e) => tracing::debug!(error = %e, "the node still does not answer"),
        }
    }
}
