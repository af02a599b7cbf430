//! What an owner shard's objects service does when asked: publish,
//! remove, drop what a reader found bad, note recency, and run the one
//! remote fetch of a key (singleflight) for every asker on every shard.

use super::messages::{FetchReply, ObjectMsg};
use super::service::{Flight, Objects};
use crate::error::EngineError;
use crate::key::{ObjectKey, ShardId};
use crate::remote::{fetch, RemoteError};
use crate::stats::bump;
use futures_channel::oneshot;
use std::path::Path;
use std::rc::Rc;

impl Objects {
    /// Notes that `hash`, owned by `owner`, was just read.
    pub(super) fn note_touch(&self, owner: ShardId, hash: u128) {
        if owner == self.shard.id {
            self.local.touch(hash);
            return;
        }
        let mut pending = self.pending_touches.borrow_mut();
        let list = &mut pending[usize::from(owner)];
        if list.len() < crate::limits::TOUCH_BUFFER_MAX {
            list.push(hash);
        }
    }

    /// Has the owner drop `hash`, found corrupt or expired in the file
    /// opened when its change counter was `seen`, and waits until it has:
    /// a second look then finds the remote copy, or a newer file.
    pub(super) async fn drop_found(self: &Rc<Self>, owner: ShardId, hash: u128, seen: u64) {
        if owner == self.shard.id {
            self.owner_drop(hash, seen).await;
        } else {
            let _ = self.port.call(owner, move |reply| ObjectMsg::Drop { hash, seen, reply }).await;
        }
    }

    /// Removes an object this shard owns and updates the gauges.
    pub(super) async fn owner_remove(&self, hash: u128) -> Result<bool, EngineError> {
        let removed = self.local.remove(hash).await;
        self.refresh_local_gauges();
        removed
    }

    /// Removes `hash`, found corrupt or expired by a reader, unless its file
    /// changed since the reader opened it: a newer version published over
    /// it meanwhile must not be taken down with it. (A publish bumps the
    /// counter before its rename too, so one in flight counts as a change;
    /// a file left by a false alarm is reported again by its next reader.)
    pub(super) async fn owner_drop(&self, hash: u128, seen: u64) {
        if self.versions.current(hash) == seen {
            let _ = self.owner_remove(hash).await;
        }
    }

    pub(super) async fn owner_commit(
        &self,
        hash: u128,
        tmp: &Path,
        disk_bytes: u64,
        expires_ms: u64,
    ) -> Result<(), EngineError> {
        let evicted = self.local.commit(hash, tmp, disk_bytes, expires_ms).await;
        if let Ok(ev) = &evicted {
            bump(&self.stats().evictions, ev.len() as u64);
        }
        self.refresh_local_gauges();
        evicted.map(|_| ())
    }

    /// Finds `key` in the remote tier. The first asker starts the fetch;
    /// everyone else, on any shard, joins it.
    pub(super) async fn owner_fetch(self: &Rc<Self>, key: ObjectKey, len: Option<u64>) -> FetchReply {
        let hash = key.hash();
        if self.local.index.borrow().get(hash).is_some() {
            return FetchReply::Local;
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut flights = self.flights.borrow_mut();
            match flights.get_mut(&hash) {
                Some(Flight::Starting(waiters)) => {
                    waiters.push(tx);
                    bump(&self.stats().singleflight_followers, 1);
                }
                Some(Flight::Landing(l)) => {
                    bump(&self.stats().singleflight_followers, 1);
                    return FetchReply::Landing(l.clone());
                }
                None => {
                    flights.insert(hash, Flight::Starting(vec![tx]));
                    glommio::spawn_local(self.clone().run_fetch(key, len)).detach();
                }
            }
        }
        rx.await.unwrap_or_else(|_| FetchReply::Failed(RemoteError::LocalIo("the fetch was abandoned".into())))
    }

    async fn run_fetch(self: Rc<Self>, key: ObjectKey, len: Option<u64>) {
        let hash = key.hash();
        let remote = self.remote.clone().expect("fetches run only with a remote tier");
        let tmp = self.shard.layout().tmp_path(self.shard.id);
        let dest = self.shard.layout().object_path(self.shard.id, hash);
        let me = self.clone();
        let landed = fetch::land(&remote, &key, len, tmp.clone(), dest, move |landing| {
            let previous = me.flights.borrow_mut().insert(hash, Flight::Landing(landing.clone()));
            if let Some(Flight::Starting(waiters)) = previous {
                for w in waiters {
                    let _ = w.send(FetchReply::Landing(landing.clone()));
                }
            }
        })
        .await;
        let outcome = match landed {
            Ok(Some(landing)) => match self.owner_commit(hash, &tmp, landing.file_len, landing.meta.expires_ms).await {
                Ok(()) => {
                    landing.mark_sealed();
                    bump(&self.stats().remote_hits, 1);
                    bump(&self.stats().local_bytes_written, landing.meta.data_len);
                    FetchReply::Local
                }
                Err(e) => {
                    landing.mark_failed();
                    let _ = glommio::io::remove(&tmp).await;
                    FetchReply::Failed(RemoteError::LocalIo(e.to_string()))
                }
            },
            Ok(None) => {
                bump(&self.stats().remote_misses, 1);
                FetchReply::NotFound
            }
            Err(e) => FetchReply::Failed(e),
        };
        // Askers still waiting for the trailer get the outcome.
        if let Some(Flight::Starting(waiters)) = self.flights.borrow_mut().remove(&hash) {
            for w in waiters {
                let _ = w.send(outcome.clone());
            }
        }
    }
}
