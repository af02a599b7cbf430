//! What every mount of a daemon shares, handed to each mount's thread:
//! the data dir, the blob cache, the engine and the repos' hydration. It
//! knows nothing of mounts' lifecycles or the control socket
//! (`crate::daemon` does), and never touches a FUSE session.

use crate::engine::MountEngine;
use crate::options::{MountError, MountOptions};
use crate::repos::{Lease, Repos};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use trove_engine::hydrate::blobstore::BlobStore;

/// See the module doc.
pub(crate) struct Host {
    /// Absolute.
    pub(crate) data_dir: PathBuf,
    pub(crate) store: Arc<BlobStore>,
    engine: Mutex<Option<MountEngine>>,
    shards: usize,
    repos: Repos,
    /// Mounts served now (the daemon keeps it).
    pub(crate) served: AtomicU32,
}

impl Host {
    pub(crate) fn new(data_dir: PathBuf, store: Arc<BlobStore>, engine: MountEngine) -> Host {
        Host {
            data_dir,
            repos: Repos::new(store.clone()),
            store,
            shards: engine.nr_shards(),
            engine: Mutex::new(Some(engine)),
            served: AtomicU32::new(0),
        }
    }

    pub(crate) fn shards(&self) -> usize {
        self.shards
    }

    pub(crate) fn mounts_served(&self) -> u32 {
        self.served.load(Ordering::Relaxed)
    }

    /// The hydration of `options`'s repo, shared with its other mounts.
    pub(crate) fn lease(&self, options: &MountOptions) -> Result<Lease, MountError> {
        let engine = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        let engine = engine.as_ref().ok_or(MountError::Stopping)?;
        self.repos.lease(options, engine)
    }

    /// Stops the engine (once every repo's hydrator closed, or its shards
    /// wait for them); later leases are refused.
    pub(crate) fn stop_engine(&self) {
        if let Some(engine) = self.engine.lock().unwrap_or_else(|p| p.into_inner()).take() {
            engine.stop();
        }
    }
}
