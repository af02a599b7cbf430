//! The local tier: sealed object files on NVMe under `--data-dir`.
//!
//! On-disk layout (all paths below the data dir):
//!
//! ```text
//! trove.lock                   held (flock) by the one node using the dir (lock.rs)
//! shards/NNN/objects/HH/HASH   sealed objects owned by shard NNN
//! shards/NNN/tmp/*             files being written by shard NNN; wiped on start
//! ```
//!
//! `HASH` is the 32-hex-digit xxh3-128 of the object's name; `HH` its first
//! two digits, to keep directories small. An `HH` directory is made (and
//! its parent synced) by the first object published into it, not up front:
//! a process that never writes an object (a mount) makes none. One file
//! per object (format.rs): the data is read with O_DIRECT in 256 KiB
//! blocks, so there is no small-object packing yet; a 4 KiB object takes
//! 8 KiB on disk.
//!
//! Division of labour: any shard writes a new object into its own `tmp/`
//! and reads any sealed file directly; only the owner shard publishes
//! (rename + directory fsync), removes, evicts and keeps the index, and
//! counts each such change in versions.rs for every shard's memory tier.
//! This module must never let a reader see a file that is not whole and
//! synced. Access recency reaches the disk as each file's atime
//! (recency.rs), so eviction order survives a restart.

pub mod format;
pub mod hot;
pub mod index;
pub mod landing;
pub mod lock;
pub mod lru;
pub mod mapped;
pub mod mapper;
pub mod open;
pub mod read;
pub mod recency;
pub mod recover;
pub mod versions;
pub mod write;

use crate::error::EngineError;
use crate::key::{hash_hex, ShardId};
use index::Index;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use versions::FileVersions;

/// Paths of the data directory. Cheap to clone; shared by all shards.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn shards_dir(&self) -> PathBuf {
        self.root.join("shards")
    }

    pub fn shard_dir(&self, shard: ShardId) -> PathBuf {
        self.shards_dir().join(format!("{shard:03}"))
    }

    pub fn objects_dir(&self, shard: ShardId) -> PathBuf {
        self.shard_dir(shard).join("objects")
    }

    pub fn tmp_dir(&self, shard: ShardId) -> PathBuf {
        self.shard_dir(shard).join("tmp")
    }

    /// Where the sealed object with `hash`, owned by `owner`, lives.
    pub fn object_path(&self, owner: ShardId, hash: u128) -> PathBuf {
        let hex = hash_hex(hash);
        self.objects_dir(owner).join(&hex[..2]).join(hex)
    }

    /// A fresh, unique path in `shard`'s tmp dir.
    pub fn tmp_path(&self, shard: ShardId) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.tmp_dir(shard).join(format!("{}-{n}-{:016x}", std::process::id(), rand::random::<u64>()))
    }
}

/// The owner shard's side of the local tier: its index and capacity. Every
/// change it makes to a file is counted in `versions` once done.
pub struct LocalTier {
    pub shard: ShardId,
    pub layout: Layout,
    pub capacity_bytes: u64,
    pub index: RefCell<Index>,
    versions: Arc<FileVersions>,
    /// Touches to write to disk now and then (recency.rs).
    pub recency: recency::RecencyLog,
}

impl LocalTier {
    pub fn new(shard: ShardId, layout: Layout, capacity_bytes: u64, index: Index, versions: Arc<FileVersions>) -> Self {
        Self { shard, layout, capacity_bytes, index: RefCell::new(index), versions, recency: Default::default() }
    }

    /// Publishes a synced tmp file as the object `hash`: rename over any old
    /// version, fsync the directory, index it, then evict down to capacity.
    /// Returns the hashes evicted.
    pub async fn commit(
        &self,
        hash: u128,
        tmp: &Path,
        disk_bytes: u64,
        expires_ms: u64,
    ) -> Result<Vec<u128>, EngineError> {
        let dest = self.layout.object_path(self.shard, hash);
        // Before the rename too: a reader's report that the old file is
        // corrupt, handled while the rename is in flight, must see a change.
        self.versions.bump(hash);
        if let Err(e) = glommio::io::rename(tmp, &dest).await {
            let e = std::io::Error::from(e);
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(EngineError::io("publishing", &dest, e));
            }
            // The first object of its HH directory makes it.
            make_fanout_dir(&dest).await?;
            glommio::io::rename(tmp, &dest).await.map_err(|e| EngineError::glommio("publishing", &dest, e))?;
        }
        self.versions.bump(hash);
        let dir = dest.parent().expect("object paths have a parent").to_owned();
        sync_dir(&dir).await?;
        self.index.borrow_mut().insert(hash, disk_bytes, expires_ms);
        Ok(self.evict_to_capacity().await)
    }

    /// Removes the object `hash`; true if there was one.
    pub async fn remove(&self, hash: u128) -> Result<bool, EngineError> {
        let had = self.index.borrow_mut().remove(hash).is_some();
        let path = self.layout.object_path(self.shard, hash);
        let removed = glommio::io::remove(&path).await;
        self.versions.bump(hash);
        match removed {
            Ok(()) => Ok(true),
            Err(e) => {
                let e = std::io::Error::from(e);
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(had)
                } else {
                    Err(EngineError::io("removing", path, e))
                }
            }
        }
    }

    /// Evicts least recently used objects until the shard is within its
    /// capacity. A reader that has the file open keeps reading it (unlink).
    pub async fn evict_to_capacity(&self) -> Vec<u128> {
        let mut evicted = Vec::new();
        loop {
            let victim = {
                let mut ix = self.index.borrow_mut();
                if ix.used_bytes() <= self.capacity_bytes {
                    break;
                }
                ix.pop_lru()
            };
            let Some((hash, _)) = victim else { break };
            let path = self.layout.object_path(self.shard, hash);
            if let Err(e) = glommio::io::remove(&path).await {
                tracing::warn!(path = %path.display(), error = %std::io::Error::from(e), "evicting");
            }
            self.versions.bump(hash);
            evicted.push(hash);
        }
        evicted
    }

    pub fn touch(&self, hash: u128) {
        self.index.borrow_mut().touch(hash);
        self.recency.note(hash);
    }
}

/// Settles glommio's per-thread, per-device iopoll probe on a file with
/// real data on the device.
///
/// glommio decides whether a device supports polled I/O by reading the
/// first 4 KiB of the first file a thread opens on it. If that region is a
/// hole (a file landing from S3 writes its tail first) the read never
/// reaches the device, "succeeds", and every later read on the thread fails
/// with EOPNOTSUPP on devices without iopoll. Run once per shard, first.
pub async fn settle_device_probe(layout: &Layout, shard: ShardId) -> Result<(), EngineError> {
    let path = layout.tmp_path(shard);
    let file =
        glommio::io::DmaFile::create(&path).await.map_err(|e| EngineError::glommio("creating probe", &path, e))?;
    let mut buf = file.alloc_dma_buffer(crate::limits::ALIGN_BYTES as usize);
    buf.as_bytes_mut().fill(0x5a);
    file.write_at(buf, 0).await.map_err(|e| EngineError::glommio("writing probe", &path, e))?;
    file.fdatasync().await.map_err(|e| EngineError::glommio("syncing probe", &path, e))?;
    let _ = file.close().await;
    let reopened =
        glommio::io::DmaFile::open(&path).await.map_err(|e| EngineError::glommio("opening probe", &path, e))?;
    let read = reopened.read_at_aligned(0, crate::limits::ALIGN_BYTES as usize).await;
    let _ = reopened.close().await;
    let _ = glommio::io::remove(&path).await;
    read.map(|_| ()).map_err(|e| EngineError::glommio("reading probe", &path, e))
}

/// Makes the `HH` directory `dest` goes in (an object's first publish
/// into it), and syncs its parent before anything is renamed into it, so
/// a crash cannot lose the directory under a published object.
async fn make_fanout_dir(dest: &Path) -> Result<(), EngineError> {
    let dir = dest.parent().expect("object paths have a parent").to_owned();
    let d = dir.clone();
    let made = glommio::executor()
        .spawn_blocking(move || match std::fs::create_dir(&d) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| EngineError::io("creating", &dir, e))?;
    if made {
        sync_dir(dir.parent().expect("HH directories have a parent")).await?;
    }
    Ok(())
}

/// fsyncs a directory so a rename in it survives power loss. Runs on the
/// blocking pool: a directory fsync can take milliseconds on ext4.
pub async fn sync_dir(dir: &Path) -> Result<(), EngineError> {
    let d = dir.to_owned();
    let res = glommio::executor().spawn_blocking(move || std::fs::File::open(&d).and_then(|f| f.sync_all())).await;
    res.map_err(|e| EngineError::io("syncing directory", dir, e))
}
