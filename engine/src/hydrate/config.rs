//! Where and how a mount fetches blobs: the node, the repo, and the bounds
//! on each fetch. Defaults come from `crate::limits`.

use std::time::Duration;

/// Where and how to fetch.
#[derive(Debug, Clone)]
pub struct HydrateConfig {
    /// The node's base URL (`http://host:port`).
    pub node: url::Url,
    /// The repo as the node names it: `host/org/repo`.
    pub repo: String,
    /// `Authorization` for a private repo, sent as is.
    pub auth: Option<crate::secret::Secret>,
    /// Bound on each wait on the node: connect, answer, next frame.
    pub fetch_timeout: Duration,
    /// Blobs per `POST .../blobs`.
    pub batch_blobs: usize,
    /// Batches at once.
    pub batches_in_flight: usize,
    /// Blob bytes asked for and not yet landed.
    pub in_flight_bytes: u64,
    /// Wants waiting at the owner.
    pub queue_depth: usize,
}

impl HydrateConfig {
    pub fn new(node: url::Url, repo: String) -> Self {
        use crate::limits::*;
        Self {
            node,
            repo,
            auth: None,
            fetch_timeout: HYDRATE_FETCH_TIMEOUT,
            batch_blobs: HYDRATE_BATCH_BLOBS,
            batches_in_flight: HYDRATE_BATCHES_IN_FLIGHT,
            in_flight_bytes: HYDRATE_IN_FLIGHT_BYTES,
            queue_depth: HYDRATE_QUEUE_DEPTH,
        }
    }
}
