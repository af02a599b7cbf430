//! The tree-indexes service: a commit's tree index, made once and kept in
//! the tiers as `git-tree/<repo>@<commit>` (immutable: the commit fixes
//! every byte, so its ETag is strong and it never needs rebuilding).
//!
//! It owns the indexes being made on this shard and who waits for each;
//! the mirror comes from the mirrors service, storage from the objects
//! service, the walk from `tree::walk`. Every read passes the repo's
//! access check first (`Mirrors::repo`, by the asker, which reads a stored
//! index itself). A missing one is made by the
//! index's owner shard, once for all who ask meanwhile. A commit
//! the mirror lacks is fetched once (`resolve_fetching`, with its miss
//! remembered for the refs TTL). The walk runs off the shard.

use crate::key::ObjectKey;
use crate::mirrors::Mirrors;
use crate::objects::Objects;
use crate::repo::names::tree_object;
use crate::repo::{off_shard, Need, RepoError, RepoKey};
use crate::secret::Secret;
use crate::shard::{Port, Shard};
use crate::tree::TreeError;
use futures_channel::oneshot;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// What one shard may ask of an index's owner.
pub enum IndexMsg {
    /// Make the tree index of a repo's commit, once for all askers.
    Make { key: RepoKey, auth: Option<Secret>, commit: String, reply: oneshot::Sender<Result<(), RepoError>> },
}

/// A request waiting for an index being made.
type Waiter = oneshot::Sender<Result<(), RepoError>>;

/// One shard's tree-indexes service.
pub struct TreeIndexes {
    shard: Rc<Shard>,
    port: Port<IndexMsg>,
    objects: Rc<Objects>,
    mirrors: Rc<Mirrors>,
    /// Tree indexes being made, by object hash, with who waits for each.
    flights: RefCell<HashMap<u128, Vec<Waiter>>>,
}

impl TreeIndexes {
    pub fn new(shard: Rc<Shard>, objects: Rc<Objects>, mirrors: Rc<Mirrors>, port: Port<IndexMsg>) -> Rc<Self> {
        Rc::new(Self { shard, port, objects, mirrors, flights: Default::default() })
    }

    /// Serves one request from another shard.
    pub async fn handle(self: Rc<Self>, msg: IndexMsg) {
        match msg {
            IndexMsg::Make { key, auth, commit, reply } => {
                let _ = reply.send(self.owner_tree_index(key, auth, commit).await);
            }
        }
    }

    /// Makes the tree index of `key` at `commit` (40 hex digits) if it is
    /// not stored yet: by the owner of the index, once for every request
    /// that asks meanwhile. The asker checks access first (`Mirrors::repo`)
    /// and reads a stored index itself, with no hop; this is the miss path.
    pub async fn make_tree_index(
        self: &Rc<Self>,
        key: &RepoKey,
        auth: Option<Secret>,
        commit: &str,
    ) -> Result<ObjectKey, RepoError> {
        crate::tree::parse_oid(commit).ok_or_else(|| RepoError::BadName(format!("commit {commit:?}")))?;
        let object = tree_object(key, commit);
        let owner = object.owner(self.shard.nr_shards());
        if owner == self.shard.id {
            self.owner_tree_index(key.clone(), auth, commit.to_owned()).await?;
        } else {
            let (key, commit) = (key.clone(), commit.to_owned());
            self.port
                .call(owner, move |reply| IndexMsg::Make { key, auth, commit, reply })
                .await
                .map_err(|_| RepoError::ShardGone(owner))??;
        }
        Ok(object)
    }

    /// The owner's side of [`TreeIndexes::make_tree_index`].
    async fn owner_tree_index(
        self: &Rc<Self>,
        key: RepoKey,
        auth: Option<Secret>,
        commit: String,
    ) -> Result<(), RepoError> {
        let object = tree_object(&key, &commit);
        let hash = object.hash();
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut flights = self.flights.borrow_mut();
            match flights.get_mut(&hash) {
                Some(waiters) => {
                    waiters.push(tx);
                    false
                }
                None => {
                    flights.insert(hash, vec![tx]);
                    true
                }
            }
        };
        if first {
            let me = self.clone();
            glommio::spawn_local(async move {
                let made = me.build_tree_index(&key, auth, &commit, &object).await;
                for w in me.flights.borrow_mut().remove(&hash).unwrap_or_default() {
                    let _ = w.send(made.clone());
                }
            })
            .detach();
        }
        rx.await.map_err(|_| RepoError::ShardGone(self.shard.id))?
    }

    async fn build_tree_index(
        self: &Rc<Self>,
        key: &RepoKey,
        auth: Option<Secret>,
        commit: &str,
        object: &ObjectKey,
    ) -> Result<(), RepoError> {
        if self.objects.open_object(object).await.ok().flatten().is_some() {
            return Ok(()); // stored already (by an earlier flight, or another node)
        }
        let oid = crate::tree::parse_oid(commit).ok_or_else(|| RepoError::BadName(format!("commit {commit:?}")))?;
        let mirror = self.mirrors.repo(key, auth.clone(), Need::Ready).await?;
        let wanted = [format!("{commit}^{{commit}}")];
        let found = self.mirrors.resolve_fetching(key, auth, &mirror, &wanted).await?;
        if found.ids.first().is_none_or(Option::is_none) {
            // A tree or a blob has no commit to peel to: say which it is.
            let probes = [format!("{commit}^{{object}}"), format!("{commit}^{{tree}}")];
            let kinds = crate::repo::plumbing::resolve(&mirror, &probes).await.unwrap_or_default();
            return Err(match (kinds.first().cloned().flatten(), kinds.get(1).cloned().flatten()) {
                (Some(_), Some(_)) => RepoError::NotACommit { id: commit.to_owned(), kind: "tree" },
                (Some(_), None) => RepoError::NotACommit { id: commit.to_owned(), kind: "blob" },
                _ => RepoError::UnknownCommit(commit.to_owned()),
            });
        }
        let made = off_shard("trove-tree", move || crate::tree::walk::index_commit(&mirror, &oid)).await;
        let bytes = made.map_err(|e| RepoError::Io(e.to_string()))?.map_err(tree_error)?;
        self.objects
            .put_bytes(object, &bytes)
            .await
            .map_err(|e| RepoError::Io(format!("storing the tree index: {e}")))?;
        crate::stats::bump(&self.shard.stats().tree_indexes, 1);
        tracing::info!(repo = %key, %commit, bytes = bytes.len(), "tree index made");
        Ok(())
    }
}

pub fn tree_error(e: TreeError) -> RepoError {
    match e {
        TreeError::UnknownCommit(c) => RepoError::UnknownCommit(c),
        TreeError::BadCommit(c) => RepoError::BadName(format!("commit {c:?}")),
        TreeError::Sha256 | TreeError::TooManyEntries(_) | TreeError::PathBytes(_) => {
            RepoError::Unsupported(e.to_string())
        }
        TreeError::Mirror(_) | TreeError::BadIndex(_) => RepoError::Io(e.to_string()),
    }
}
