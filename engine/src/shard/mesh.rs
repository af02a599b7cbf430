//! Typed calls between shards.
//!
//! The runtime carries one envelope type over glommio's bounded
//! `channel_mesh`; the composition of services defines it (one variant per
//! service). A service never sees the envelope: it gets a [`Port`] for its
//! own message type, which wraps each message on the way out. A request
//! that needs a reply carries a oneshot sender. Calls to one's own shard
//! are plain calls and never come here.

use crate::error::EngineError;
use crate::key::ShardId;
use futures_channel::oneshot;
use glommio::channels::channel_mesh::Senders;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

/// This shard's end of the mesh, carrying envelopes of type `E`.
pub struct Mesh<E: Send> {
    senders: Rc<Senders<E>>,
}

impl<E: Send + 'static> Mesh<E> {
    pub(crate) fn new(senders: Senders<E>) -> Self {
        Self { senders: Rc::new(senders) }
    }

    /// A port for messages of type `M`, each wrapped by `wrap` (an
    /// envelope variant) on the way out.
    pub fn port<M: 'static>(&self, wrap: fn(M) -> E) -> Port<M> {
        Port { post: Rc::new(Wrapped { senders: self.senders.clone(), wrap }) }
    }
}

/// A service's typed sender for its own messages, to any shard.
pub struct Port<M> {
    post: Rc<dyn Post<M>>,
}

impl<M> Clone for Port<M> {
    fn clone(&self) -> Self {
        Self { post: self.post.clone() }
    }
}

impl<M: 'static> Port<M> {
    /// Sends `make(reply)` to `owner` and waits for the reply.
    pub async fn call<T>(&self, owner: ShardId, make: impl FnOnce(oneshot::Sender<T>) -> M) -> Result<T, EngineError> {
        let (tx, rx) = oneshot::channel();
        let gone = || EngineError::ShardGone { shard: owner };
        if !self.post.send(owner, make(tx)).await {
            return Err(gone());
        }
        rx.await.map_err(|_| gone())
    }

    /// Sends `msg` to `owner` if its queue has room; false when it did not
    /// (advisory messages are dropped then, never waited for).
    pub fn try_send(&self, owner: ShardId, msg: M) -> bool {
        self.post.try_send(owner, msg)
    }
}

/// The envelope-erasing half of a port.
trait Post<M> {
    fn send(&self, to: ShardId, msg: M) -> Pin<Box<dyn Future<Output = bool> + '_>>;
    fn try_send(&self, to: ShardId, msg: M) -> bool;
}

struct Wrapped<E: Send, M> {
    senders: Rc<Senders<E>>,
    wrap: fn(M) -> E,
}

impl<E: Send + 'static, M: 'static> Post<M> for Wrapped<E, M> {
    fn send(&self, to: ShardId, msg: M) -> Pin<Box<dyn Future<Output = bool> + '_>> {
        let env = (self.wrap)(msg);
        Box::pin(async move { self.senders.send_to(usize::from(to), env).await.is_ok() })
    }

    fn try_send(&self, to: ShardId, msg: M) -> bool {
        self.senders.try_send_to(usize::from(to), (self.wrap)(msg)).is_ok()
    }
}
