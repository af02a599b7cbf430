//! The repos a daemon's mounts show, each with one hydration shared by
//! every mount of it (whatever its commit): one queue on the shard that
//! owns the repo, so a blob two mounts want is fetched once. Blobs of
//! different repos are shared too, through the one blob cache, by id.
//!
//! A mount takes a [`Lease`]; the repo's hydrator closes (its queue ends
//! on its shard) when the last lease on it goes. This never touches a
//! FUSE session or a mount's overlay.

use crate::engine::MountEngine;
use crate::options::{MountError, MountOptions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use trove_engine::hydrate::blobstore::BlobStore;
use trove_engine::hydrate::{HydrateConfig, Hydrator};
use trove_engine::key::ShardId;

/// What tells one repo's hydration from another's: the node, the repo,
/// and who it is asked as (two tokens may see different private repos).
#[derive(Clone, PartialEq, Eq, Hash)]
struct RepoId {
    node: String,
    repo: String,
    auth: Option<String>,
}

/// Every repo the daemon's mounts show now.
pub(crate) struct Repos {
    store: Arc<BlobStore>,
    live: Mutex<HashMap<RepoId, Weak<Shared>>>,
}

/// One repo's hydration, alive while a lease holds it.
struct Shared {
    hydrator: Arc<Hydrator>,
    owner: ShardId,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.hydrator.close();
    }
}

/// A mount's hold on its repo's hydration.
pub(crate) struct Lease {
    pub(crate) hydrator: Arc<Hydrator>,
    /// The shard whose queue fetches and lands the repo's blobs.
    pub(crate) owner: ShardId,
    _shared: Arc<Shared>,
}

impl Repos {
    pub(crate) fn new(store: Arc<BlobStore>) -> Repos {
        Repos { store, live: Mutex::new(HashMap::new()) }
    }

    /// The repo's hydration for a mount of `options`: the running one, or
    /// a new one whose queue `engine` starts on the repo's owner shard.
    pub(crate) fn lease(&self, options: &MountOptions, engine: &MountEngine) -> Result<Lease, MountError> {
        let id = RepoId {
            node: options.node.clone(),
            repo: options.repo.clone(),
            auth: options.auth.as_ref().map(|a| a.expose().to_owned()),
        };
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, w| w.strong_count() > 0);
        if let Some(shared) = live.get(&id).and_then(Weak::upgrade) {
            return Ok(Lease { hydrator: shared.hydrator.clone(), owner: shared.owner, _shared: shared });
        }
        let node_url = url::Url::parse(&options.node)
            .map_err(|e| MountError::Unreachable { node: options.node.clone(), reason: format!("not a URL: {e}") })?;
        let mut config = HydrateConfig::new(node_url, options.repo.clone());
        config.fetch_timeout = options.fetch_timeout;
        config.auth = options.auth.clone();
        let (hydrator, end) =
            Hydrator::new(self.store.clone(), config).map_err(|e| MountError::DataDir(e.to_string()))?;
        let owner = crate::engine::owner_of(&options.repo, engine.nr_shards());
        if !engine.serve(owner, end) {
            return Err(MountError::Stopping);
        }
        let shared = Arc::new(Shared { hydrator: Arc::new(hydrator), owner });
        live.insert(id, Arc::downgrade(&shared));
        Ok(Lease { hydrator: shared.hydrator.clone(), owner, _shared: shared })
    }
}
