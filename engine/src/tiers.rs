//! The object API the faces call: read local then remote, write to both.
//!
//! A read first opens the sealed file directly (any shard may): a warm hit
//! costs no cross-shard hop, only a recency note batched to the owner. A
//! miss goes to the owner, which runs one remote fetch for all askers. A
//! write streams into the caller's own `tmp/`, is uploaded to the remote
//! tier when there is one, and is then published by the owner.

use crate::key::ObjectKey;
use crate::shard::messages::{FetchReply, ShardRequest};
use crate::shard::Shard;
use crate::stats::bump;
use crate::store::format::ObjectMeta;
use crate::store::read::{DataChunk, SealedObject};
use crate::store::write::ObjectWriter;
use crate::EngineError;
use std::rc::Rc;

/// Which tier answered a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Local,
    Remote,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Local => "local",
            Tier::Remote => "remote",
        }
    }
}

impl Shard {
    /// Opens `key` for reading; `Ok(None)` when no tier has it.
    pub async fn open_object(self: &Rc<Self>, key: &ObjectKey) -> Result<Option<(SealedObject, Tier)>, EngineError> {
        self.open_object_sized(key, None).await
    }

    /// [`Self::open_object`], told the stored file's length (`file_len`,
    /// from a snapshot pointer: a hint, checked against S3's answer): a
    /// miss then asks S3 for the tail and the first range at once.
    pub async fn open_object_sized(
        self: &Rc<Self>,
        key: &ObjectKey,
        file_len: Option<u64>,
    ) -> Result<Option<(SealedObject, Tier)>, EngineError> {
        let hash = key.hash();
        let owner = key.owner(self.nr_shards());
        let hot = self.hot.borrow_mut().get(hash, &self.node.versions);
        if let Some(hot) = hot {
            if hot.meta.namespace == key.namespace()
                && hot.meta.key == key.key()
                && !hot.meta.is_expired(crate::now_ms())
            {
                self.note_touch(owner, hash);
                bump(&self.stats().local_hits, 1);
                bump(&self.stats().memory_hits, 1);
                return Ok(Some((SealedObject::from_hot(hot), Tier::Local)));
            }
            self.hot.borrow_mut().remove(hash);
        }
        match self.open_local(key).await {
            Ok(Some(obj)) if obj.meta.namespace == key.namespace() && obj.meta.key == key.key() => {
                let seen = obj.seen.expect("set for local files");
                if !obj.meta.is_expired(crate::now_ms()) {
                    self.note_touch(owner, hash);
                    bump(&self.stats().local_hits, 1);
                    if let Some(whole) = obj.verified_whole_file() {
                        self.hot.borrow_mut().insert(hash, obj.meta.clone(), whole, seen);
                    }
                    return Ok(Some((obj, Tier::Local)));
                }
                bump(&self.stats().expirations, 1);
                self.drop_found(owner, hash, seen).await;
            }
            Ok(_) | Err(EngineError::Corrupt { .. }) => {}
            Err(e) => return Err(e),
        }
        bump(&self.stats().local_misses, 1);
        if self.remote.is_none() {
            return Ok(None);
        }
        let reply = if owner == self.id {
            self.owner_fetch(key.clone(), file_len).await
        } else {
            let key = key.clone();
            self.call(owner, move |reply| ShardRequest::Fetch { key, len: file_len, reply }).await?
        };
        match reply {
            FetchReply::Local => match self.open_local(key).await? {
                Some(obj) if !obj.meta.is_expired(crate::now_ms()) => Ok(Some((obj, Tier::Remote))),
                _ => Ok(None),
            },
            FetchReply::Landing(l) if l.meta.is_expired(crate::now_ms()) => Ok(None),
            FetchReply::Landing(l) => Ok(Some((SealedObject::open_landing(l).await?, Tier::Remote))),
            FetchReply::NotFound => Ok(None),
            FetchReply::Failed(e) => Err(e.into()),
        }
    }

    /// Opens the local file of `key`, remembering the change counter read
    /// before the open. A file that fails its trailer checks is counted and
    /// dropped by its owner before this returns.
    async fn open_local(self: &Rc<Self>, key: &ObjectKey) -> Result<Option<SealedObject>, EngineError> {
        let (hash, owner) = (key.hash(), key.owner(self.nr_shards()));
        // Before the open: a change after it moves the counter past this.
        let seen = self.node.versions.current(hash);
        match SealedObject::open(&self.layout().object_path(owner, hash)).await {
            Ok(obj) => Ok(obj.map(|mut o| {
                o.seen = Some(seen);
                o
            })),
            Err(e @ EngineError::Corrupt { .. }) => {
                bump(&self.stats().checksum_failures, 1);
                self.drop_found(owner, hash, seen).await;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// The verified data of an open object, `[start, end)`. A block that
    /// fails its checksum ends the stream; the object is counted, and its
    /// owner drops the file before the error is yielded, so whoever looks
    /// again finds the remote copy or a newer file, not the same bad one.
    pub fn stream_object(
        self: &Rc<Self>,
        obj: SealedObject,
        start: u64,
        end: u64,
    ) -> impl futures_lite::Stream<Item = Result<DataChunk, EngineError>> {
        let hash = crate::key::name_hash(&obj.meta.namespace, &obj.meta.key);
        let owner = crate::key::owner(hash, self.nr_shards());
        let seen = obj.seen;
        let me = self.clone();
        futures_lite::StreamExt::then(obj.stream(start, end), move |item| {
            let me = me.clone();
            async move {
                if let Err(EngineError::Corrupt { .. }) = &item {
                    bump(&me.stats().checksum_failures, 1);
                    if let Some(seen) = seen {
                        me.drop_found(owner, hash, seen).await;
                    }
                }
                item
            }
        })
    }

    /// Starts writing a new object into this shard's `tmp/`.
    pub async fn begin_put(&self) -> Result<ObjectWriter, EngineError> {
        ObjectWriter::create(self.layout().tmp_path(self.id), self.config().max_object_bytes).await
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
        let owner = key.owner(self.nr_shards());
        if owner == self.id {
            self.owner_commit(hash, &sealed.path, sealed.file_len, expires_ms).await?;
        } else {
            let (tmp, disk_bytes) = (sealed.path.clone(), sealed.file_len);
            self.call(owner, move |reply| ShardRequest::Commit { hash, tmp, disk_bytes, expires_ms, reply }).await??;
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

    /// Reads a small value whole; `Ok(None)` when no tier has it.
    pub async fn read_bytes(self: &Rc<Self>, key: &ObjectKey, max: u64) -> Result<Option<Vec<u8>>, EngineError> {
        let Some((obj, _)) = self.open_object(key).await? else { return Ok(None) };
        let len = obj.meta.data_len;
        if len > max {
            return Err(EngineError::TooLarge { len, max });
        }
        let mut out = Vec::with_capacity(len as usize);
        let mut stream = std::pin::pin!(self.stream_object(obj, 0, len));
        while let Some(chunk) = futures_lite::StreamExt::next(&mut stream).await {
            out.extend_from_slice(bytes::Buf::chunk(&chunk?));
        }
        Ok(Some(out))
    }

    /// Removes `key` from both tiers. Returns whether the local tier had it
    /// (the remote tier does not say).
    pub async fn delete_object(self: &Rc<Self>, key: &ObjectKey) -> Result<bool, EngineError> {
        let hash = key.hash();
        let owner = key.owner(self.nr_shards());
        let local = if owner == self.id {
            self.owner_remove(hash).await?
        } else {
            self.call(owner, move |reply| ShardRequest::Remove { hash, reply }).await??
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
