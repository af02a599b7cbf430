//! A commit's tree index from a mirror: gix walks the tree breadth first
//! and reads each blob's size from its object header (no blob is
//! inflated). Blocking: run it off the shard.

use crate::limits::{TREE_INDEX_MAX_ENTRIES, TREE_INDEX_MAX_PATH_BYTES};
use crate::tree::index::{Entry, Kind};
use crate::tree::TreeError;
use gix::objs::tree::EntryKind;
use std::path::Path;

/// Opens `mirror` for reading objects only: no config from the user or the
/// system, nothing that runs code.
pub fn open(mirror: &Path) -> Result<gix::Repository, TreeError> {
    let repo = gix::open_opts(mirror, gix::open::Options::isolated())
        .map_err(|e| TreeError::Mirror(format!("opening {}: {e}", mirror.display())))?;
    if repo.object_hash() != gix::hash::Kind::Sha1 {
        return Err(TreeError::Sha256);
    }
    Ok(repo)
}

/// The encoded index of `commit`'s tree in `mirror`.
pub fn index_commit(mirror: &Path, commit: &[u8; 20]) -> Result<Vec<u8>, TreeError> {
    let repo = open(mirror)?;
    let hex = crate::tree::oid_hex(commit);
    let id = gix::ObjectId::from_bytes_or_panic(commit);
    let object = repo.try_find_object(id).map_err(|e| TreeError::Mirror(e.to_string()))?;
    let object = object.ok_or_else(|| TreeError::UnknownCommit(hex.clone()))?;
    if object.kind != gix::objs::Kind::Commit {
        return Err(TreeError::UnknownCommit(hex));
    }
    let tree = object.peel_to_tree().map_err(|e| TreeError::Mirror(format!("the tree of {hex}: {e}")))?;
    let mut recorder = gix::traverse::tree::Recorder::default();
    tree.traverse().breadthfirst(&mut recorder).map_err(|e| TreeError::Mirror(format!("walking {hex}: {e}")))?;
    if recorder.records.len() > TREE_INDEX_MAX_ENTRIES {
        return Err(TreeError::TooManyEntries(TREE_INDEX_MAX_ENTRIES));
    }
    // What a mount accepts (index.rs): a node never makes an index past it.
    let path_bytes: u64 = recorder.records.iter().map(|r| r.filepath.len() as u64).sum();
    if path_bytes > TREE_INDEX_MAX_PATH_BYTES {
        return Err(TreeError::PathBytes(TREE_INDEX_MAX_PATH_BYTES));
    }
    let mut entries = Vec::with_capacity(recorder.records.len());
    for r in recorder.records {
        let kind = match r.mode.kind() {
            EntryKind::Tree => Kind::Dir,
            EntryKind::Blob => Kind::File,
            EntryKind::BlobExecutable => Kind::Executable,
            EntryKind::Link => Kind::Symlink,
            EntryKind::Commit => Kind::Submodule,
        };
        let size = if kind.is_blob() {
            repo.find_header(r.oid).map_err(|e| TreeError::Mirror(format!("the size of {}: {e}", r.oid)))?.size()
        } else {
            0
        };
        let oid: [u8; 20] = r.oid.as_bytes().try_into().map_err(|_| TreeError::Sha256)?;
        entries.push(Entry { kind, oid, size, path: r.filepath.to_vec() });
    }
    Ok(crate::tree::index::encode(commit, &entries))
}
