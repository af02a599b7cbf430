//! The mirrors service: bare mirrors of upstream repos, each owned by one
//! shard (`RepoKey::owner`).
//!
//! It owns the owner's record of every repo (`state.rs`): the state
//! machine Empty -> Cloning | Restoring -> Ready, with every clone and
//! fetch singleflighted and a failed clone sent back to Empty with
//! backoff; the access checks of private repos (`access.rs`); the names a
//! fetch could not bring (`misses.rs`); eviction under
//! `--mirror-capacity` (`evict.rs`); repacks for serving (`upkeep.rs`);
//! and the node-wide admission of upstream jobs and upload-packs.
//!
//! Any shard serves a Ready mirror itself (its directory is published by
//! rename, so it exists only whole) and asks the owner only for what
//! changes state: a clone, a freshness check, a fetch of a missing commit
//! ([`MirrorMsg`]). Services built on mirrors (snapshots, shared packs)
//! hear of a mirror's changes through [`MirrorListener`], never by
//! reaching into a record. This service never speaks HTTP.
//!
//! Split: `jobs.rs` the state machine's steps; `make.rs` a new mirror,
//! cloned; `restore.rs` one restored from its snapshot in the tiers;
//! `background.rs` the periodic fetches.

mod access;
mod background;
mod evict;
mod jobs;
mod make;
mod misses;
mod restore;
mod state;
mod upkeep;

pub use access::is_private;
pub use misses::Resolved;
pub use state::ColdServe;

use crate::objects::Objects;
use crate::repo::admission::Admission;
use crate::repo::git::Git;
use crate::repo::plumbing::{publish, SHORT_GIT_TIMEOUT};
use crate::repo::{Need, RepoConfig, RepoError, RepoKey};
use crate::secret::Secret;
use crate::shard::{Port, Shard};
use crate::ShardId;
use futures_channel::oneshot;
use state::RepoState;
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
}

impl MirrorsNode {
    pub fn new(config: &RepoConfig) -> Self {
        Self {
            upload_packs: Arc::new(Admission::new(config.max_upload_packs, config.upload_pack_queue)),
            upstream_jobs: Arc::new(Admission::new(config.max_upstream_jobs, config.upstream_job_queue)),
        }
    }
}

/// What one shard may ask of a repo's owner.
pub enum MirrorMsg {
    /// Make a repo's mirror meet `need` (clone, check, fetch), once for all
    /// askers. `auth` is the client's Authorization header, for the upstream.
    Ensure { key: RepoKey, auth: Option<Secret>, need: Need, reply: oneshot::Sender<Result<(), RepoError>> },
}

/// What happened to a repo's mirror, as services built on it hear it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorEvent {
    /// A clone, or a fetch that moved a ref: what was made from the old
    /// refs is stale.
    RefsChanged,
    /// Unused for an hour: what is kept for it may go.
    Idle,
    /// Evicted: the next request clones it again.
    Evicted,
    /// Its record was dropped (it never became Ready, and nothing waits).
    Dropped,
}

/// A service that keeps state per repo and must hear when the mirror
/// changes. Called on the owner shard, while the mirrors' records are
/// borrowed: a listener must not call back into the mirrors service.
pub trait MirrorListener {
    fn mirror_changed(&self, repo: u128, event: MirrorEvent);
}

/// One shard's mirrors service.
pub struct Mirrors {
    shard: Rc<Shard>,
    port: Port<MirrorMsg>,
    node: Arc<MirrorsNode>,
    objects: Rc<Objects>,
    /// The repos this shard owns, by `RepoKey::hash`.
    repos: RefCell<HashMap<u128, RepoState>>,
    /// Private repos' access checks that passed: (repo hash, keyed tag of
    /// the Authorization header) to when (see access.rs).
    access: RefCell<HashMap<(u128, u128), Instant>>,
    /// Names the mirrors lacked after a fetch (see misses.rs).
    misses: misses::MissCache,
    listeners: RefCell<Vec<Rc<dyn MirrorListener>>>,
}

impl Mirrors {
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

    fn tell(&self, repo: u128, event: MirrorEvent) {
        for l in self.listeners.borrow().iter() {
            l.mirror_changed(repo, event);
        }
    }

    /// The shard this service runs on.
    pub fn shard(&self) -> &Rc<Shard> {
        &self.shard
    }

    fn config(&self) -> &RepoConfig {
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
    fn with_repo<T>(&self, key: &RepoKey, f: impl FnOnce(&mut RepoState) -> T) -> T {
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
    fn drop_dead_records(&self, repos: &mut HashMap<u128, RepoState>) {
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

    /// Finds the mirrors in this shard's directory (startup): they are
    /// Ready. A mirror whose owner changed with the shard count moves to
    /// its owner's directory.
    async fn discover(&self) {
        let dir = self.shard.layout().shard_dir(self.shard.id).join("mirrors");
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            let out = Git::new(["config", "--get", "trove.key"]).dir(&p).run(Vec::new(), SHORT_GIT_TIMEOUT).await;
            let key = match out.ok().filter(|o| o.ok()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()) {
                Some(k) => RepoKey::parse_canonical(&k),
                None => Err(RepoError::BadName(p.display().to_string())),
            };
            let Ok(key) = key else {
                tracing::warn!(path = %p.display(), "not a trove mirror; leaving it alone");
                continue;
            };
            let owner: ShardId = key.owner(self.shard.nr_shards());
            let want = mirror_path_in(&self.shard.layout().shard_dir(owner), key.hash());
            if want != p {
                if let Err(e) = publish(&p, &want) {
                    tracing::warn!(repo = %key, error = %e, "could not move mirror to its new owner");
                }
            }
            if owner == self.shard.id {
                let mut st = RepoState::new(key, true);
                st.used_at = evict::used_at_from_disk(&want);
                self.repos.borrow_mut().insert(st.key.hash(), st);
            }
        }
        let n = self.repos.borrow().len();
        if n > 0 {
            tracing::info!(shard = self.shard.id, mirrors = n, "found mirrors");
        }
    }
}

fn mirror_path_in(shard_dir: &Path, hash: u128) -> PathBuf {
    shard_dir.join("mirrors").join(format!("{}.git", crate::key::hash_hex(hash)))
}
