//! The names the git face's objects are stored under in the tiers, and the
//! namespaces reserved for them.
//!
//! A snapshot, bundle or tree index is named after its content (the commit
//! fixes every byte), so its name never needs invalidating; the pointer,
//! the mirror snapshot and the fleet's build leases name the newest of a
//! repo. Only the git face may read or write these namespaces. This module
//! never touches the disk or the network.

use crate::key::ObjectKey;
use crate::repo::key::RepoKey;

pub const SNAPSHOT_NAMESPACE: &str = "git-snapshot";
pub const BUNDLE_NAMESPACE: &str = "git-bundle";
pub const MIRROR_NAMESPACE: &str = "git-mirror";
pub const LEASE_NAMESPACE: &str = "git-snapshot-lease";
pub const TREE_NAMESPACE: &str = "git-tree";

/// Whether `ns` holds the git face's objects, which only the git face may
/// read or write: through the object API a client could replace a snapshot
/// others restore, or read a private repo's without its access check.
pub fn is_reserved_namespace(ns: &str) -> bool {
    [SNAPSHOT_NAMESPACE, BUNDLE_NAMESPACE, MIRROR_NAMESPACE, LEASE_NAMESPACE, TREE_NAMESPACE].contains(&ns)
}

/// The object-key form of a repo name (keys hold no `/`).
pub fn object_name(key: &RepoKey) -> String {
    key.canonical().replace('/', ":")
}

fn named(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey::new(namespace, name).expect("repo names make valid keys")
}

/// The working-tree snapshot of `key` at `commit`.
pub fn snapshot_object(key: &RepoKey, commit: &str) -> ObjectKey {
    named(SNAPSHOT_NAMESPACE, &format!("{}@{commit}", object_name(key)))
}

/// The pointer naming `key`'s newest snapshot and HEAD.
pub fn pointer_object(key: &RepoKey) -> ObjectKey {
    named(SNAPSHOT_NAMESPACE, &object_name(key))
}

/// The bare mirror of `key`, as tar.zst, for a new node's cold start.
pub fn mirror_object(key: &RepoKey) -> ObjectKey {
    named(MIRROR_NAMESPACE, &object_name(key))
}

/// A bundle of `key` from `base` to `head`.
pub fn bundle_object(key: &RepoKey, base: &str, head: &str) -> ObjectKey {
    named(BUNDLE_NAMESPACE, &format!("{}@{base}..{head}", object_name(key)))
}

/// The tree index of `key` at `commit`, in the index format's version 2
/// (`tree::index`): a node never serves an index of another version under
/// this name, so one left in the tiers by an older release is not read.
pub fn tree_object(key: &RepoKey, commit: &str) -> ObjectKey {
    named(TREE_NAMESPACE, &format!("{}@{commit}.v2", object_name(key)))
}

/// The key whose hash names generation `generation` of the lease on
/// `key`'s snapshot of `commit` (`{prefix}leases/HASH` in S3).
pub fn lease_key(key: &RepoKey, commit: &str, generation: u32) -> ObjectKey {
    named(LEASE_NAMESPACE, &format!("{}@{commit}.{generation}", object_name(key)))
}

/// A full object id: 40 (SHA-1) or 64 (SHA-256) hex digits, lowercased.
pub fn parse_sha(s: &str) -> Option<String> {
    ((s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}
