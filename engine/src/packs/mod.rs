//! Responses to identical clone requests, made once.
//!
//! A clone asks upload-pack for its wants and says it has nothing; CI jobs
//! cloning the same repo at once send the same bytes and would each cost a
//! pack-objects of the whole repo. The repo's owner keys every such request
//! by its protocol and body: the first asker claims the key and runs
//! upload-pack into a file (a [`Build`]); every other asker, on any shard,
//! follows that file as it grows. A finished response is kept for later
//! identical requests until the mirror changes (a clone, or a fetch that
//! moves a ref, clears them) or the repo goes unused (the background fetcher clears them), at
//! most PACKS_KEPT per repo. A failed run is forgotten, so the
//! next request runs again.
//!
//! The shared-packs service owns the per-repo tables (on each repo's
//! owner) and the rule for what may be shared; it hears of mirror changes
//! from the mirrors service ([`MirrorListener`]). It never
//! shares a request that names haves (a fetch: its answer depends on what
//! the client has), and never runs git itself: the HTTP face does.

use crate::mirrors::{MirrorEvent, MirrorListener, Mirrors};
use crate::repo::build::Build;
use crate::repo::key::RepoKey;
use crate::repo::RepoError;
use crate::shard::{Port, Shard};
use crate::stats::bump;
use futures_channel::oneshot;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

/// What one shard may ask of a repo's owner about shared responses.
pub enum PackMsg {
    /// Find (or, with `claim`, start) the shared response to clone request
    /// `id` of a repo.
    Run { key: RepoKey, id: u128, claim: bool, reply: oneshot::Sender<Result<Option<PackClaim>, RepoError>> },
}

/// One shard's shared-packs service: the tables of the repos it owns.
pub struct SharedPacks {
    shard: Rc<Shard>,
    port: Port<PackMsg>,
    tables: RefCell<HashMap<u128, PackTable>>,
}

/// Finished responses kept per repo (the newest).
const PACKS_KEPT: usize = 4;

/// One upload-pack response, being written or whole.
pub struct PackRun {
    pub build: Arc<Build>,
    /// Why upload-pack failed, when it did (its last stderr line). A run
    /// with an error is never shared again.
    pub error: OnceLock<String>,
}

/// The owner's answer.
pub enum PackClaim {
    /// Run upload-pack into this run's file.
    Claimed(Arc<PackRun>),
    /// Another request runs (or ran) it: follow the file.
    Follow(Arc<PackRun>),
}

/// A repo's shared responses, on its owner.
#[derive(Default)]
struct PackTable {
    runs: Vec<(u128, Arc<PackRun>)>,
}

impl PackTable {
    /// Forgets every response (the mirror changed). Readers keep their
    /// descriptors; the files go.
    fn clear(&mut self) {
        for (_, run) in self.runs.drain(..) {
            let _ = std::fs::remove_file(&run.build.path);
        }
    }

    fn find(&mut self, id: u128) -> Option<Arc<PackRun>> {
        self.runs.retain(|(_, r)| {
            let keep = !r.build.failed() && r.error.get().is_none();
            if !keep {
                let _ = std::fs::remove_file(&r.build.path);
            }
            keep
        });
        self.runs.iter().find(|(k, _)| *k == id).map(|(_, r)| r.clone())
    }

    fn insert(&mut self, id: u128, run: Arc<PackRun>) {
        if self.runs.len() >= PACKS_KEPT {
            // The oldest finished one makes room; running ones stay.
            if let Some(i) = self.runs.iter().position(|(_, r)| r.build.len_if_done().is_some()) {
                let (_, old) = self.runs.remove(i);
                let _ = std::fs::remove_file(&old.build.path);
            }
        }
        self.runs.push((id, run));
    }
}

pub use crate::repo::wants::shareable;

/// The key of a request: its protocol (Git-Protocol header) and body.
pub fn request_id(protocol: Option<&str>, body: &[u8]) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(protocol.unwrap_or("").as_bytes());
    h.update(&[0]);
    h.update(body);
    h.digest128()
}

impl SharedPacks {
    pub fn new(shard: Rc<Shard>, mirrors: &Mirrors, port: Port<PackMsg>) -> Rc<Self> {
        let packs = Rc::new(Self { shard, port, tables: Default::default() });
        mirrors.listen(packs.clone());
        packs
    }

    /// The shard this service runs on.
    pub fn shard(&self) -> &Rc<Shard> {
        &self.shard
    }

    /// Serves one request from another shard.
    pub async fn handle(self: Rc<Self>, msg: PackMsg) {
        match msg {
            PackMsg::Run { key, id, claim, reply } => {
                let _ = reply.send(self.owner_pack_run(&key, id, claim));
            }
        }
    }

    /// The shared response to request `id` of `key`, on any shard: asks the
    /// owner. With `claim`, a request nobody runs yet is claimed for the
    /// caller; without, `None` says there is none.
    pub async fn pack_run(
        self: &Rc<Self>,
        key: &RepoKey,
        id: u128,
        claim: bool,
    ) -> Result<Option<PackClaim>, RepoError> {
        let owner = key.owner(self.shard.nr_shards());
        let answer = if owner == self.shard.id {
            self.owner_pack_run(key, id, claim)?
        } else {
            let key = key.clone();
            self.port
                .call(owner, move |reply| PackMsg::Run { key, id, claim, reply })
                .await
                .map_err(|_| RepoError::ShardGone(owner))??
        };
        if let Some(PackClaim::Follow(_)) = &answer {
            bump(&self.shard.stats().pack_cache_follows, 1);
        }
        Ok(answer)
    }

    /// The owner's side of [`SharedPacks::pack_run`].
    fn owner_pack_run(&self, key: &RepoKey, id: u128, claim: bool) -> Result<Option<PackClaim>, RepoError> {
        let path = self.shard.layout().tmp_path(self.shard.id).with_extension("pack-response");
        let mut tables = self.tables.borrow_mut();
        if let Some(run) = tables.get_mut(&key.hash()).and_then(|t| t.find(id)) {
            return Ok(Some(PackClaim::Follow(run)));
        }
        if !claim {
            return Ok(None);
        }
        let build = Build::create(format!("{id:032x}"), path)
            .map_err(|e| RepoError::Io(format!("creating a pack response file: {e}")))?;
        let run = Arc::new(PackRun { build: Arc::new(build), error: OnceLock::new() });
        tables.entry(key.hash()).or_default().insert(id, run.clone());
        Ok(Some(PackClaim::Claimed(run)))
    }
}

impl MirrorListener for SharedPacks {
    /// Every change makes the responses stale or unwanted: a clone or a
    /// fetch that moved a ref, an idle hour, an eviction, a dropped record.
    fn mirror_changed(&self, repo: u128, _event: MirrorEvent) {
        if let Some(mut table) = self.tables.borrow_mut().remove(&repo) {
            table.clear();
        }
    }
}
