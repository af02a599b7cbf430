//! Reads: the memory tier, then the sealed local file (any shard opens it
//! itself: a warm hit makes no cross-shard hop), then the owner's one
//! remote fetch for every asker.

use super::messages::{FetchReply, ObjectMsg};
use super::service::Objects;
use crate::error::EngineError;
use crate::key::ObjectKey;
use crate::stats::bump;
use crate::store::read::{DataChunk, SealedObject};
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

impl Objects {
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
        let owner = key.owner(self.shard.nr_shards());
        let hot = self.hot.borrow_mut().get(hash, &self.versions);
        if let Some(hot) = hot {
            if hot.meta.namespace == key.namespace()
                && hot.meta.key == key.key()
                && !hot.meta.is_expired(crate::clock::now_ms())
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
                if !obj.meta.is_expired(crate::clock::now_ms()) {
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
        let reply = if owner == self.shard.id {
            self.owner_fetch(key.clone(), file_len).await
        } else {
            let key = key.clone();
            self.port.call(owner, move |reply| ObjectMsg::Fetch { key, len: file_len, reply }).await?
        };
        match reply {
            FetchReply::Local => match self.open_local(key).await? {
                Some(obj) if !obj.meta.is_expired(crate::clock::now_ms()) => Ok(Some((obj, Tier::Remote))),
                _ => Ok(None),
            },
            FetchReply::Landing(l) if l.meta.is_expired(crate::clock::now_ms()) => Ok(None),
            FetchReply::Landing(l) => Ok(Some((SealedObject::open_landing(l).await?, Tier::Remote))),
            FetchReply::NotFound => Ok(None),
            FetchReply::Failed(e) => Err(e.into()),
        }
    }

    /// Opens the local file of `key`, remembering the change counter read
    /// before the open. A file that fails its trailer checks is counted and
    /// dropped by its owner before this returns.
    async fn open_local(self: &Rc<Self>, key: &ObjectKey) -> Result<Option<SealedObject>, EngineError> {
        let (hash, owner) = (key.hash(), key.owner(self.shard.nr_shards()));
        // Before the open: a change after it moves the counter past this.
        let seen = self.versions.current(hash);
        match SealedObject::open(&self.shard.layout().object_path(owner, hash)).await {
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
        let owner = crate::key::owner(hash, self.shard.nr_shards());
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
}
