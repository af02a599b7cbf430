//! A commit's tree index from a mirror: gix walks the tree breadth first
//! and reads each blob's size from its object header. The only blobs
//! inflated are symlinks (their targets ride in the index), the
//! `.gitattributes` files and the files whose attributes
//! ask checkout to convert them (`ident`, `eol=crlf`): their converted
//! bytes are what the index describes. Blocking: run it off the shard.

use crate::limits::{
    CHECKOUT_CONVERT_MAX_BYTES, TREE_INDEX_MAX_ENTRIES, TREE_INDEX_MAX_PATH_BYTES, TREE_PATH_MAX_BYTES,
};
use crate::tree::attributes::{Walk, ATTRIBUTES_MAX_BYTES};
use crate::tree::checkout::{self, Conversion};
use crate::tree::index::{Checkout, Entry, Kind};
use crate::tree::TreeError;
use gix::objs::tree::EntryKind;
use std::collections::HashMap;
use std::path::Path;

/// Opens `mirror` for reading objects only: no config from the user or the
/// system, nothing that runs code. Reads keep a cache of delta bases
/// (DELTA_BASE_CACHE_BYTES): without one, every blob stored as a delta
/// inflates its whole chain again, and a tree's blobs share their bases.
pub fn open(mirror: &Path) -> Result<gix::Repository, TreeError> {
    let mut repo = gix::open_opts(mirror, gix::open::Options::isolated())
        .map_err(|e| TreeError::Mirror(format!("opening {}: {e}", mirror.display())))?;
    if repo.object_hash() != gix::hash::Kind::Sha1 {
        return Err(TreeError::Sha256);
    }
    repo.objects.set_pack_cache(|| {
        Box::new(gix::odb::pack::cache::lru::MemoryCappedHashmap::new(crate::limits::DELTA_BASE_CACHE_BYTES))
    });
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
    let commit_object = object.into_commit();
    let time = commit_object.time().map_err(|e| TreeError::Mirror(format!("the time of {hex}: {e}")))?.seconds;
    let tree = commit_object.tree().map_err(|e| TreeError::Mirror(format!("the tree of {hex}: {e}")))?;
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
        // A symlink's target rides in the index, so readlink fetches
        // nothing; one past PATH_MAX is no target any system follows.
        let target = if kind == Kind::Symlink {
            if size > TREE_PATH_MAX_BYTES as u64 {
                return Err(TreeError::Mirror(format!(
                    "symlink {} has a target of {size} bytes, over PATH_MAX",
                    String::from_utf8_lossy(&r.filepath)
                )));
            }
            Some(read_blob(&repo, &oid)?.into_boxed_slice())
        } else {
            None
        };
        entries.push(Entry { kind, oid, size, path: r.filepath.to_vec(), checkout: None, target });
    }
    // Targets count as path bytes too, for the mount.
    let targets: u64 = entries.iter().filter_map(|e| e.target.as_ref()).map(|t| t.len() as u64).sum();
    if path_bytes + targets > TREE_INDEX_MAX_PATH_BYTES {
        return Err(TreeError::PathBytes(TREE_INDEX_MAX_PATH_BYTES));
    }
    convert(&repo, &mut entries)?;
    Ok(crate::tree::index::encode(commit, time, &entries))
}

/// Applies checkout's conversions to the entries whose attributes ask for
/// them: each such file's oid and size become its converted bytes', and
/// its blob is kept in `checkout`.
fn convert(repo: &gix::Repository, entries: &mut [Entry]) -> Result<(), TreeError> {
    let mut lists = HashMap::new();
    for e in entries.iter() {
        let (dir, name) = match e.path.iter().rposition(|&b| b == b'/') {
            Some(cut) => (&e.path[..cut], &e.path[cut + 1..]),
            None => (&e.path[..0], &e.path[..]),
        };
        // git reads in-tree attributes from regular files only, and
        // ignores one past its size limit.
        if name == b".gitattributes"
            && matches!(e.kind, Kind::File | Kind::Executable)
            && e.size <= ATTRIBUTES_MAX_BYTES
        {
            lists.insert(dir.to_vec(), read_blob(repo, &e.oid)?);
        }
    }
    if lists.is_empty() {
        return Ok(());
    }
    let mut walk = Walk::new(lists);
    let mut files: Vec<usize> =
        (0..entries.len()).filter(|&i| matches!(entries[i].kind, Kind::File | Kind::Executable)).collect();
    files.sort_unstable_by(|&a, &b| entries[a].path.cmp(&entries[b].path));
    for i in files {
        let e = &mut entries[i];
        let attrs = walk.of(&e.path);
        if !attrs.converts() {
            continue;
        }
        if e.size > CHECKOUT_CONVERT_MAX_BYTES {
            tracing::warn!(
                path = %String::from_utf8_lossy(&e.path),
                bytes = e.size,
                "a file's attributes ask checkout to convert it, but it is larger than trove converts; the mount shows its blob"
            );
            continue;
        }
        let blob = read_blob(repo, &e.oid)?;
        let conv = Conversion::decide(&blob, attrs.ident, attrs.eol);
        if conv.is_none() {
            continue;
        }
        let Some(bytes) = checkout::to_worktree(&blob, &e.oid, conv) else {
            tracing::warn!(
                path = %String::from_utf8_lossy(&e.path),
                "a file's checkout conversion would grow it past what trove converts; the mount shows its blob"
            );
            continue;
        };
        let id = gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, &bytes)
            .map_err(|err| TreeError::Mirror(format!("hashing a converted file: {err}")))?;
        e.checkout = Some(Box::new(Checkout { conv, blob: e.oid, blob_size: e.size }));
        e.oid = id.as_bytes().try_into().map_err(|_| TreeError::Sha256)?;
        e.size = bytes.len() as u64;
    }
    Ok(())
}

fn read_blob(repo: &gix::Repository, oid: &[u8; 20]) -> Result<Vec<u8>, TreeError> {
    let id = gix::ObjectId::from_bytes_or_panic(oid);
    let object = repo.find_object(id).map_err(|e| TreeError::Mirror(format!("reading blob {id}: {e}")))?;
    Ok(object.detach().data)
}
