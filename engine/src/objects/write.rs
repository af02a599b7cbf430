//! Writes: a new object streams into the writer's own `tmp/`, is sealed,
//! stored in the remote tier when there is one, and published by its
//! owner; a delete goes to the owner and to the remote tier.

use super::messages::ObjectMsg;
use super::service::Objects;
use crate::error::EngineError;
use crate::key::ObjectKey;
use crate::stats::bump;
use crate::store::format::ObjectMeta;
use crate::store::write::ObjectWriter;
use std::rc::Rc;

impl Objects {
    /// Starts writing a new object into this shard's `tmp/`.
    pub async fn begin_put(&self) -> Result<ObjectWriter, EngineError> {
        ObjectWriter::create(self.shard.layout().tmp_path(self.shard.id), self.shard.config().max_object_bytes).await
    }

    /// Seals the written object, stores it in the remote tier (if any), and
    /// has the owner publish it. On error nothing is published.
    pub async fn finish_put(
        self: &Rc<Self>,
        key: &ObjectKey,
        writer: ObjectWriter,
        expires_ms: u64,
    ) -> Result<ObjectMeta, EngineError> {
        let sealed = writer.finish(key.namespace(), key.key(), expires_ms).await?;
        // Until the owner has published it, the sealed file is ours to remove,
        // also if this future is dropped (the client went away mid-upload).
        let mut guard = TmpFileGuard(Some(sealed.path.clone()));
        let hash = key.hash();
        if let Some(remote) = &self.remote {
            remote.upload_file(hash, &sealed.path, sealed.file_len).await?;
        }
        let owner = key.owner(self.shard.nr_shards());
        if owner == self.shard.id {
            self.owner_commit(hash, &sealed.path, sealed.file_len, expires_ms).await?;
        } else {
            let (tmp, disk_bytes) = (sealed.path.clone(), sealed.file_len);
            self.port
                .call(owner, move |reply| ObjectMsg::Commit { hash, tmp, disk_bytes, expires_ms, reply })
                .await??;
        }
        guard.0 = None; // renamed into place by the owner
        bump(&self.stats().local_bytes_written, sealed.meta.data_len);
        Ok(sealed.meta)
    }

    /// Stores the plain file at `path` as `key`: in both tiers, or only in
    /// the remote one when `keep_local` is false (an archive only other
    /// nodes need). Without a remote tier, `keep_local: false` stores nothing.
    pub async fn put_file(
        self: &Rc<Self>,
        key: &ObjectKey,
        path: &std::path::Path,
        keep_local: bool,
    ) -> Result<(), EngineError> {
        if !keep_local && self.remote.is_none() {
            return Ok(());
        }
        let file = glommio::io::BufferedFile::open(path).await.map_err(|e| EngineError::glommio("opening", path, e))?;
        let mut writer = self.begin_put().await?;
        let mut pos = 0u64;
        loop {
            let chunk = file
                .read_at(pos, crate::limits::WRITE_CHUNK_BYTES)
                .await
                .map_err(|e| EngineError::glommio("reading", path, e))?;
            if chunk.is_empty() {
                break;
            }
            writer.write(&chunk).await?;
            pos += chunk.len() as u64;
        }
        let _ = file.close().await;
        if keep_local {
            self.finish_put(key, writer, 0).await?;
        } else {
            let sealed = writer.finish(key.namespace(), key.key(), 0).await?;
            let _guard = TmpFileGuard(Some(sealed.path.clone()));
            let remote = self.remote.as_ref().expect("checked above");
            remote.upload_file(key.hash(), &sealed.path, sealed.file_len).await?;
        }
        Ok(())
    }

    /// Stores a small value in both tiers.
    pub async fn put_bytes(self: &Rc<Self>, key: &ObjectKey, data: &[u8]) -> Result<(), EngineError> {
        let mut writer = self.begin_put().await?;
        writer.write(data).await?;
        self.finish_put(key, writer, 0).await.map(|_| ())
    }

    /// Removes `key` from both tiers. Returns whether the local tier had it
    /// (the remote tier does not say).
    pub async fn delete_object(self: &Rc<Self>, key: &ObjectKey) -> Result<bool, EngineError> {
        let hash = key.hash();
        let owner = key.owner(self.shard.nr_shards());
        let local = if owner == self.shard.id {
            self.owner_remove(hash).await?
        } else {
            self.port.call(owner, move |reply| ObjectMsg::Remove { hash, reply }).await??
        };
        if let Some(remote) = &self.remote {
            remote.delete(hash).await?;
        }
        Ok(local)
    }
}
/// Removes a sealed tmp file on drop unless disarmed (set to None).
struct TmpFileGuard(Option<std::path::PathBuf>);

impl Drop for TmpFileGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}
