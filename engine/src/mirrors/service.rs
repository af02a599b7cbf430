//! The mirrors service's state on one shard, its handler, and what other
//! services may ask of a repo's owner (see the `mirrors` module doc).

use super::events::{MirrorEvent, MirrorListener};
use super::messages::MirrorMsg;
use super::misses::MissCache;
use super::state::{ColdServe, RepoState};
use crate::objects::Objects;
use crate::repo::admission::Admission;
use crate::repo::{RepoConfig, RepoError, RepoKey};
use crate::shard::{Port, Shard};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// What the mirrors services of every shard share.
pub struct MirrorsNode {
    /// Node-wide admission of git upload-pack processes.
    pub upload_packs: Arc<Admission>,
    /// Clones and fetches against upstreams, node-wide.
    pub upstream_jobs: Arc<Admission>,
    /// Clones under way, by repo: what `GET .../progress` reports.
    pub cloning: std::sync::Mutex<std::collections::HashMap<u128, Arc<Cloning>>>,
}

/// A clone under way.
pub struct Cloning {
    /// Bytes the clone has read from the upstream so far.
    pub bytes: Arc<std::sync::atomic::AtomicU64>,
    pub started: std::time::Instant,
    /// A hash of the Authorization the clone runs with: only a request
    /// with the same one hears of a clone that needs one.
    pub auth: Option<u64>,
}

impl MirrorsNode {
    /// The clone of `repo` under way, if any, as a request with
    /// `authorization` may see it.
    pub fn cloning(&self, repo: u128, authorization: Option<&crate::secret::Secret>) -> Option<(u64, f64)> {
        let map = self.cloning.lock().unwrap_or_else(|p| p.into_inner());
        let c = map.get(&repo)?;
        if c.auth.is_some() && c.auth != authorization.map(auth_hash) {
            return None;
        }
        Some((c.bytes.load(std::sync::atomic::Ordering::Relaxed), c.started.elapsed().as_secs_f64()))
    }

    pub fn new(config: &RepoConfig) -> Self {
        Self {
            upload_packs: Arc::new(Admission::new(config.max_upload_packs, config.upload_pack_queue)),
            upstream_jobs: Arc::new(Admission::new(config.max_upstream_jobs, config.upstream_job_queue)),
            cloning: Default::default(),
        }
    }
}

/// One shard's mirrors service.
pub struct Mirrors {
    pub(super) shard: Rc<Shard>,
    pub(super) port: Port<MirrorMsg>,
    pub(super) node: Arc<MirrorsNode>,
    pub(super) objects: Rc<Objects>,
    /// The repos this shard owns, by `RepoKey::hash`.
    pub(super) repos: RefCell<HashMap<u128, RepoState>>,
    /// Private repos' access checks that passed: (repo hash, keyed tag of
    /// the Authorization header) to when (see access.rs).
    pub(super) access: RefCell<HashMap<(u128, u128), Instant>>,
    /// Names the mirrors lacked after a fetch (see misses.rs).
    pub(super) misses: MissCache,
    pub(super) listeners: RefCell<Vec<Rc<dyn MirrorListener>>>,
}

impl Mirrors {
    /// What all shards' mirror services share.
    pub fn node_state(&self) -> &Arc<MirrorsNode> {
        &self.node
    }

    /// Opens the service and takes up the mirrors found in this shard's
    /// directory (they are Ready).
    pub async fn open(
        shard: Rc<Shard>,
        node: Arc<MirrorsNode>,
        objects: Rc<Objects>,
        port: Port<MirrorMsg>,
    ) -> Rc<Self> {
        let mirrors = Rc::new(Self {
            shard,
            port,
            node,
            objects,
            repos: RefCell::new(HashMap::new()),
            access: RefCell::new(HashMap::new()),
            misses: Default::default(),
            listeners: RefCell::new(Vec::new()),
        });
        mirrors.discover().await;
        mirrors
    }

    /// Has `listener` hear of every change to this shard's mirrors.
    pub fn listen(&self, listener: Rc<dyn MirrorListener>) {
        self.listeners.borrow_mut().push(listener);
    }

    pub(super) fn tell(&self, repo: u128, event: MirrorEvent) {
        for l in self.listeners.borrow().iter() {
            l.mirror_changed(repo, event);
        }
    }

    /// The shard this service runs on.
    pub fn shard(&self) -> &Rc<Shard> {
        &self.shard
    }

    pub(super) fn config(&self) -> &RepoConfig {
        &self.shard.config().repo
    }

    /// Node-wide admission of upload-pack processes, for the faces that
    /// run them.
    pub fn upload_packs(&self) -> &Arc<Admission> {
        &self.node.upload_packs
    }

    /// Serves one request from another shard.
    pub async fn handle(self: Rc<Self>, msg: MirrorMsg) {
        match msg {
            MirrorMsg::Ensure { key, auth, need, reply } => {
                let _ = reply.send(self.ensure(key, auth, need).await);
            }
        }
    }

    /// Where `key`'s mirror lives once published.
    pub fn mirror_path(&self, key: &RepoKey) -> PathBuf {
        mirror_path_in(&self.shard.layout().shard_dir(key.owner(self.shard.nr_shards())), key.hash())
    }

    /// Runs `f` on `key`'s record (owner only), making it if needed.
    pub(super) fn with_repo<T>(&self, key: &RepoKey, f: impl FnOnce(&mut RepoState) -> T) -> T {
        let path = self.mirror_path(key);
        let mut repos = self.repos.borrow_mut();
        if repos.len() >= crate::limits::REPO_STATES_MAX && !repos.contains_key(&key.hash()) {
            self.drop_dead_records(&mut repos);
        }
        let st = repos.entry(key.hash()).or_insert_with(|| RepoState::new(key.clone(), path.exists()));
        let out = f(st);
        self.shard.stats().repo_states.store(repos.len() as u64, std::sync::atomic::Ordering::Relaxed);
        out
    }

    /// Drops the records of repos that never became Ready, have no job
    /// running and whose retry time (backoff, or a remembered not-found)
    /// has passed: what a client naming made-up repos leaves behind.
    pub(super) fn drop_dead_records(&self, repos: &mut HashMap<u128, RepoState>) {
        let mut dropped = Vec::new();
        repos.retain(|hash, st| {
            let keep = !st.is_dead();
            if !keep {
                dropped.push(*hash);
            }
            keep
        });
        for hash in dropped {
            self.tell(hash, MirrorEvent::Dropped);
        }
    }

    /// Makes sure the owner keeps a record of `key` (owner only).
    pub fn note(&self, key: &RepoKey) {
        self.with_repo(key, |_| ());
    }

    /// Whether `key`'s mirror is Ready, and its HEAD as of the last clone
    /// or fetch (read from disk when not known yet: a mirror found at
    /// startup). Owner only.
    pub async fn ready_head(&self, key: &RepoKey) -> Result<Option<String>, RepoError> {
        let (ready, known) = self.with_repo(key, |st| (st.ready, st.head.clone()));
        match (ready, known) {
            (false, _) => Ok(None),
            (true, Some(h)) => Ok(Some(h)),
            (true, None) => {
                let h = crate::repo::plumbing::head_of(&self.mirror_path(key)).await?;
                self.with_repo(key, |st| st.head.clone_from(&h));
                Ok(h)
            }
        }
    }

    /// Whether `key`'s mirror is Ready (owner only).
    pub fn is_ready(&self, key: &RepoKey) -> bool {
        self.with_repo(key, |st| st.ready)
    }

    /// Counts a serve of `key` that runs with no mirror (a cold node): the
    /// mirror's restore waits for it to end.
    pub fn cold_serve(&self, key: &RepoKey) -> ColdServe {
        self.with_repo(key, |st| ColdServe::new(&st.cold_serves))
    }

    /// The permit that work needing the mirror's files to hold still takes
    /// (a repack, the tar of its mirror snapshot).
    pub fn housekeeping(&self, key: &RepoKey) -> Rc<glommio::sync::Semaphore> {
        self.with_repo(key, |st| st.housekeeping.clone())
    }
}

pub(super) fn mirror_path_in(shard_dir: &Path, hash: u128) -> PathBuf {
    shard_dir.join("mirrors").join(format!("{}.git", crate::key::hash_hex(hash)))
}

/// A hash of an Authorization value, kept in memory only, to compare.
pub fn auth_hash(a: &crate::secret::Secret) -> u64 {
    xxhash_rust::xxh3::xxh3_64(a.expose().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn a_clone_with_credentials_is_told_only_to_the_same_credentials() {
        let node = MirrorsNode::new(&RepoConfig::new(1));
        let bytes = Arc::new(std::sync::atomic::AtomicU64::new(42));
        let token = Secret::new("Basic dG9rZW4=".to_owned());
        let private =
            Cloning { bytes: bytes.clone(), started: std::time::Instant::now(), auth: Some(auth_hash(&token)) };
        let public = Cloning { bytes, started: std::time::Instant::now(), auth: None };
        node.cloning.lock().expect("lock").insert(1, Arc::new(private));
        node.cloning.lock().expect("lock").insert(2, Arc::new(public));
        let other = Secret::new("Basic b3RoZXI=".to_owned());
        assert_eq!(node.cloning(1, Some(&token)).map(|c| c.0), Some(42));
        assert!(node.cloning(1, None).is_none(), "no credentials: nothing said of a private clone");
        assert!(node.cloning(1, Some(&other)).is_none(), "other credentials: nothing either");
        assert_eq!(node.cloning(2, None).map(|c| c.0), Some(42), "a public clone is told to anyone");
        assert!(node.cloning(3, None).is_none());
    }
}
