//! A commit's tree index, made once and kept in the tiers as
//! `git-tree/<repo>@<commit>` (immutable: the commit fixes every byte, so
//! its ETag is strong and it never needs rebuilding).
//!
//! Every read passes the repo's access check first (`Shard::repo`, by the
//! asker, which reads a stored index itself). A missing one is made by the
//! index's owner shard, once for all who ask meanwhile. A commit
//! the mirror lacks is fetched once (`resolve_fetching`, with its miss
//! remembered for the refs TTL). The walk runs off the shard.

use crate::key::ObjectKey;
use crate::repo::snapshot::object_name;
use crate::repo::{off_shard, Need, RepoError, RepoKey};
use crate::secret::Secret;
use crate::shard::messages::ShardRequest;
use crate::shard::Shard;
use crate::tree::TreeError;
use futures_channel::oneshot;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

pub const TREE_NAMESPACE: &str = "git-tree";

pub fn tree_object(key: &RepoKey, commit: &str) -> ObjectKey {
    ObjectKey::new(TREE_NAMESPACE, &format!("{}@{commit}", object_name(key))).expect("repo names make valid keys")
}

/// Tree indexes being made, by object hash, with who waits for each.
pub type TreeFlights = RefCell<HashMap<u128, Vec<oneshot::Sender<Result<(), RepoError>>>>>;

impl Shard {
    /// Makes the tree index of `key` at `commit` (40 hex digits) if it is
    /// not stored yet: by the owner of the index, once for every request
    /// that asks meanwhile. The asker checks access first (`Shard::repo`)
    /// and reads a stored index itself, with no hop; this is the miss path.
    pub async fn make_tree_index(
        self: &Rc<Self>,
        key: &RepoKey,
        auth: Option<Secret>,
        commit: &str,
    ) -> Result<ObjectKey, RepoError> {
        crate::tree::parse_oid(commit).ok_or_else(|| RepoError::BadName(format!("commit {commit:?}")))?;
        let object = tree_object(key, commit);
        let owner = object.owner(self.nr_shards());
        if owner == self.id {
            self.owner_tree_index(key.clone(), auth, commit.to_owned()).await?;
        } else {
            let (key, commit) = (key.clone(), commit.to_owned());
            self.call(owner, move |reply| ShardRequest::TreeIndex { key, auth, commit, reply })
                .await
                .map_err(|_| RepoError::ShardGone(owner))??;
        }
        Ok(object)
    }

    /// The owner's side of [`Shard::make_tree_index`].
    pub(crate) async fn owner_tree_index(
        self: &Rc<Self>,
        key: RepoKey,
        auth: Option<Secret>,
        commit: String,
    ) -> Result<(), RepoError> {
        let object = tree_object(&key, &commit);
        let hash = object.hash();
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut flights = self.tree_flights.borrow_mut();
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
                for w in me.tree_flights.borrow_mut().remove(&hash).unwrap_or_default() {
                    let _ = w.send(made.clone());
                }
            })
            .detach();
        }
        rx.await.map_err(|_| RepoError::ShardGone(self.id))?
    }

    async fn build_tree_index(
        self: &Rc<Self>,
        key: &RepoKey,
        auth: Option<Secret>,
        commit: &str,
        object: &ObjectKey,
    ) -> Result<(), RepoError> {
        if self.open_object(object).await.ok().flatten().is_some() {
            return Ok(()); // stored already (by an earlier flight, or another node)
        }
        let oid = crate::tree::parse_oid(commit).ok_or_else(|| RepoError::BadName(format!("commit {commit:?}")))?;
        let mirror = self.repo(key, auth.clone(), Need::Ready).await?;
        let wanted = [format!("{commit}^{{commit}}")];
        let found = self.resolve_fetching(key, auth, &mirror, &wanted).await?;
        if found.ids.first().is_none_or(Option::is_none) {
            return Err(RepoError::UnknownCommit(commit.to_owned()));
        }
        let made = off_shard("trove-tree", move || crate::tree::walk::index_commit(&mirror, &oid)).await;
        let bytes = made.map_err(|e| RepoError::Io(e.to_string()))?.map_err(tree_error)?;
        self.put_bytes(object, &bytes).await.map_err(|e| RepoError::Io(format!("storing the tree index: {e}")))?;
        crate::stats::bump(&self.stats().tree_indexes, 1);
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
