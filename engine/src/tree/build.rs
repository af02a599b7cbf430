//! A commit's tree index, made once and kept in the tiers as
//! `git-tree/<repo>@<commit>` (immutable: the commit fixes every byte, so
//! its ETag is strong and it never needs rebuilding).
//!
//! Every read passes the repo's access check first (`Shard::repo`). A
//! commit the mirror lacks is fetched once (`resolve_fetching`, with its
//! miss remembered for the refs TTL). The walk runs off the shard.

use crate::key::ObjectKey;
use crate::repo::snapshot::object_name;
use crate::repo::{off_shard, Need, RepoError, RepoKey};
use crate::secret::Secret;
use crate::shard::Shard;
use crate::tree::TreeError;
use std::rc::Rc;

pub const TREE_NAMESPACE: &str = "git-tree";

pub fn tree_object(key: &RepoKey, commit: &str) -> ObjectKey {
    ObjectKey::new(TREE_NAMESPACE, &format!("{}@{commit}", object_name(key))).expect("repo names make valid keys")
}

impl Shard {
    /// The stored tree index of `key` at `commit` (40 hex digits), made
    /// now if there is none.
    pub async fn tree_index(
        self: &Rc<Self>,
        key: &RepoKey,
        auth: Option<Secret>,
        commit: &str,
    ) -> Result<ObjectKey, RepoError> {
        let oid = crate::tree::parse_oid(commit).ok_or_else(|| RepoError::BadName(format!("commit {commit:?}")))?;
        let mirror = self.repo(key, auth.clone(), Need::Ready).await?;
        let object = tree_object(key, commit);
        if self.open_object(&object).await.ok().flatten().is_some() {
            return Ok(object);
        }
        let wanted = [format!("{commit}^{{commit}}")];
        let found = self.resolve_fetching(key, auth, &mirror, &wanted).await?;
        if found.ids.first().is_none_or(Option::is_none) {
            return Err(RepoError::UnknownCommit(commit.to_owned()));
        }
        let made = off_shard("trove-tree", move || crate::tree::walk::index_commit(&mirror, &oid)).await;
        let bytes = made.map_err(|e| RepoError::Io(e.to_string()))?.map_err(tree_error)?;
        self.put_bytes(&object, &bytes).await.map_err(|e| RepoError::Io(format!("storing the tree index: {e}")))?;
        crate::stats::bump(&self.stats().tree_indexes, 1);
        tracing::info!(repo = %key, %commit, bytes = bytes.len(), "tree index made");
        Ok(object)
    }
}

pub fn tree_error(e: TreeError) -> RepoError {
    match e {
        TreeError::UnknownCommit(c) => RepoError::UnknownCommit(c),
        TreeError::BadCommit(c) => RepoError::BadName(format!("commit {c:?}")),
        TreeError::Sha256 | TreeError::TooManyEntries(_) => RepoError::Unsupported(e.to_string()),
        TreeError::Mirror(_) | TreeError::BadIndex(_) => RepoError::Io(e.to_string()),
    }
}
