//! Start-up recovery of the local tier.
//!
//! The files are the index: every sealed file carries its name, length,
//! expiry and checksums, so recovery needs no journal. It (1) moves files
//! whose owner changed with the shard count, (2) wipes every `tmp/` (partial
//! writes from a crash: never published, never served), and (3) rebuilds
//! each owner's index from the trailers, dropping corrupt, misnamed and
//! expired files. Recency after a restart follows file modification time.

use crate::error::EngineError;
use crate::key::{name_hash, owner, parse_hash_hex, ShardId};
use crate::store::index::Index;
use crate::store::read::SealedObject;
use crate::store::Layout;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Run once before the shards start: creates the directories and moves
/// objects to the shard that owns them under `nr_shards`.
pub fn prepare(layout: &Layout, nr_shards: usize) -> Result<(), EngineError> {
    let io = |op: &'static str, p: &Path| {
        let p = p.to_owned();
        move |e| EngineError::io(op, p, e)
    };
    for shard in 0..nr_shards as ShardId {
        // Its HH directories come with the first object of each (mod.rs).
        let objects = layout.objects_dir(shard);
        std::fs::create_dir_all(&objects).map_err(io("creating", &objects))?;
        let tmp = layout.tmp_dir(shard);
        std::fs::create_dir_all(&tmp).map_err(io("creating", &tmp))?;
    }
    let shards_dir = layout.shards_dir();
    for shard_entry in std::fs::read_dir(&shards_dir).map_err(io("listing", &shards_dir))? {
        let shard_path = shard_entry.map_err(io("listing", &shards_dir))?.path();
        let Some(here) = shard_path.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<ShardId>().ok()) else {
            continue;
        };
        wipe_dir(&shard_path.join("tmp"))?;
        for (hash, path) in object_files(&shard_path.join("objects"))? {
            let to = owner(hash, nr_shards);
            if to != here {
                let dest = layout.object_path(to, hash);
                let dir = dest.parent().expect("object paths have a parent");
                std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
                std::fs::rename(&path, &dest).map_err(io("relocating", &path))?;
            }
        }
    }
    Ok(())
}

/// Rebuilds shard `shard`'s index from its files. Runs on the shard.
pub async fn rebuild_index(layout: &Layout, shard: ShardId, now_ms: u64) -> Result<Index, EngineError> {
    let mut found: Vec<(SystemTime, u128, u64, u64)> = Vec::new();
    for (hash, path) in object_files(&layout.objects_dir(shard))? {
        // Last use: the later of the write (mtime) and the last read the
        // owner wrote down (atime, recency.rs).
        let used = std::fs::metadata(&path)
            .map(|m| {
                let at = |t: std::io::Result<SystemTime>| t.unwrap_or(SystemTime::UNIX_EPOCH);
                at(m.modified()).max(at(m.accessed()))
            })
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let obj = match SealedObject::open(&path).await {
            Ok(Some(o)) => o,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(shard, error = %e, "dropping unreadable object at recovery");
                let _ = std::fs::remove_file(&path);
                continue;
            }
        };
        let meta = &obj.meta;
        if name_hash(&meta.namespace, &meta.key) != hash || meta.is_expired(now_ms) {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        found.push((used, hash, meta.file_len(), meta.expires_ms));
    }
    found.sort_by_key(|f| f.0);
    let mut index = Index::default();
    for (_, hash, bytes, expires) in found {
        index.insert(hash, bytes, expires);
    }
    Ok(index)
}

fn object_files(objects: &Path) -> Result<Vec<(u128, PathBuf)>, EngineError> {
    let mut out = Vec::new();
    let Ok(subdirs) = std::fs::read_dir(objects) else { return Ok(out) };
    for sub in subdirs.flatten() {
        let Ok(files) = std::fs::read_dir(sub.path()) else { continue };
        for f in files.flatten() {
            if let Some(hash) = f.file_name().to_str().and_then(parse_hash_hex) {
                out.push((hash, f.path()));
            }
        }
    }
    Ok(out)
}

fn wipe_dir(dir: &Path) -> Result<(), EngineError> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for e in entries.flatten() {
        // Directories are clones a crash cut short.
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        let removed = if is_dir { std::fs::remove_dir_all(e.path()) } else { std::fs::remove_file(e.path()) };
        removed.map_err(|err| EngineError::io("wiping", e.path(), err))?;
    }
    Ok(())
}
