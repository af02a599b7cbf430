//! What a slow client may hold, and for how long.
//!
//! hyper's own header timeout needs a `Send` timer, which a glommio shard
//! does not have, so the connection's reads are clocked here instead:
//! [`Clocked`] wraps the socket and tells the connection's [`ConnClock`]
//! about every read, and the connection task asks [`ConnClock::expired`]
//! once a tick. Two rules:
//! - a request head must arrive whole within `--head-timeout`, counted
//!   from the accept or from the first byte of the next request;
//! - while hyper waits for body bytes, each window of `--head-timeout`
//!   must bring at least `BODY_MIN_BYTES_PER_SEC` per second of it.
//!
//! A shard at its connection cap sheds the connection that has waited
//! longest for a request ([`ConnTable::shed_idlest`]) to take the new one,
//! so held idle connections cannot keep clients out; when none is idle, a
//! few overflow connections may still ask `/_liveness` and `/_readiness`.
//!
//! What this module must never do: close a connection in the middle of a
//! response it is sending (only head and body reads are clocked).

use crate::limits::BODY_MIN_BYTES_PER_SEC;
use event_listener::Event;
use futures_lite::{AsyncRead, AsyncWrite};
use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// One connection's clock.
pub struct ConnClock {
    /// Waiting for (the rest of) a request head since then.
    head_since: Cell<Option<Instant>>,
    /// Idle between requests since then (keep-alive).
    idle_since: Cell<Option<Instant>>,
    in_request: Cell<bool>,
    /// hyper's last read found no bytes (it waits for the client).
    read_pending: Cell<bool>,
    window_start: Cell<Instant>,
    window_bytes: Cell<u64>,
    /// Set by the shard to take this connection's place.
    shed: Event,
    /// Already chosen to make room: it still counts until its task ends,
    /// and must not make room twice (a burst of accepts re-shed one idle
    /// connection again and again, and the cap stopped holding).
    shed_chosen: Cell<bool>,
    /// Accepted past the cap: health checks only.
    pub overflow: bool,
}

/// Why a connection is closed.
#[derive(Debug, PartialEq, Eq)]
pub enum Expired {
    Head,
    Body,
}

impl ConnClock {
    pub fn new(overflow: bool) -> Rc<Self> {
        let now = Instant::now();
        Rc::new(Self {
            head_since: Cell::new(Some(now)),
            idle_since: Cell::new(None),
            in_request: Cell::new(false),
            read_pending: Cell::new(false),
            window_start: Cell::new(now),
            window_bytes: Cell::new(0),
            shed: Event::new(),
            shed_chosen: Cell::new(false),
            overflow,
        })
    }

    fn on_read(&self, n: usize) {
        self.read_pending.set(false);
        if n == 0 {
            return;
        }
        self.window_bytes.set(self.window_bytes.get() + n as u64);
        if !self.in_request.get() && self.head_since.get().is_none() {
            self.head_since.set(Some(Instant::now()));
            self.idle_since.set(None);
        }
    }

    /// The head is in: hyper called the service.
    pub fn request_started(&self) {
        self.head_since.set(None);
        self.idle_since.set(None);
        self.in_request.set(true);
        self.window_start.set(Instant::now());
        self.window_bytes.set(0);
    }

    /// The response's body is done (or dropped).
    pub fn request_finished(&self) {
        self.in_request.set(false);
        self.idle_since.set(Some(Instant::now()));
    }

    /// Whether a rule says the connection must close now.
    pub fn expired(&self, head_timeout: Duration) -> Option<Expired> {
        let now = Instant::now();
        if self.head_since.get().is_some_and(|t| now.duration_since(t) > head_timeout) {
            return Some(Expired::Head);
        }
        if self.in_request.get() && now.duration_since(self.window_start.get()) >= head_timeout {
            let floor = BODY_MIN_BYTES_PER_SEC * head_timeout.as_secs().max(1);
            if self.read_pending.get() && self.window_bytes.get() < floor {
                return Some(Expired::Body);
            }
            self.window_start.set(now);
            self.window_bytes.set(0);
        }
        None
    }

    /// Since when it has waited for a request (None: in one).
    fn waiting_since(&self) -> Option<Instant> {
        if self.in_request.get() {
            return None;
        }
        self.head_since.get().or(self.idle_since.get())
    }

    /// Resolves when the shard sheds this connection.
    pub async fn shed(&self) {
        self.shed.listen().await;
    }
}

/// The socket as hyper reads it, with every read told to the clock.
pub struct Clocked<T> {
    inner: T,
    clock: Rc<ConnClock>,
}

impl<T> Clocked<T> {
    pub fn new(inner: T, clock: Rc<ConnClock>) -> Self {
        Self { inner, clock }
    }

    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Clocked<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &r {
            Poll::Ready(Ok(n)) => self.clock.on_read(*n),
            Poll::Ready(Err(_)) => {}
            Poll::Pending => self.clock.read_pending.set(true),
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Clocked<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

impl<T: trove_engine::remote::hyper_io::RawSocket> trove_engine::remote::hyper_io::RawSocket for Clocked<T> {
    fn raw_socket(&self) -> Option<std::os::fd::RawFd> {
        self.inner.raw_socket()
    }
}

/// Marks the request finished when the response body is dropped (sent
/// whole, or abandoned).
pub struct FinishOnDrop(pub Rc<ConnClock>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that marks its request finished when dropped.
pub struct Finishing<B> {
    body: B,
    _finish: FinishOnDrop,
}

impl<B> Finishing<B> {
    pub fn new(body: B, clock: Rc<ConnClock>) -> Self {
        Self { body, _finish: FinishOnDrop(clock) }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Finishing<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A shard's open connections, to shed the idlest when full.
#[derive(Default)]
pub struct ConnTable {
    conns: RefCell<Vec<Weak<ConnClock>>>,
    overflow: Cell<usize>,
    /// Closed connections are swept out once the table reaches this length
    /// (then twice what is live), so an accept costs O(1) amortized.
    sweep_at: Cell<usize>,
}

impl ConnTable {
    pub fn add(&self, c: &Rc<ConnClock>) {
        let mut conns = self.conns.borrow_mut();
        if conns.len() >= self.sweep_at.get() {
            conns.retain(|w| w.strong_count() > 0);
            self.sweep_at.set((2 * conns.len()).max(1024));
        }
        conns.push(Rc::downgrade(c));
    }

    /// Sheds the connection that has waited longest for a request; false
    /// when every connection is in a request.
    pub fn shed_idlest(&self) -> bool {
        let conns = self.conns.borrow();
        let idlest = conns
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|c| !c.overflow && !c.shed_chosen.get())
            .filter_map(|c| c.waiting_since().map(|t| (t, c)))
            .min_by_key(|(t, _)| *t);
        match idlest {
            Some((_, c)) => {
                c.shed_chosen.set(true);
                c.shed.notify(usize::MAX);
                true
            }
            None => false,
        }
    }

    /// Takes an overflow place (health checks only) if one is left.
    pub fn take_overflow(self: &Rc<Self>, max: usize) -> Option<OverflowPlace> {
        (self.overflow.get() < max).then(|| {
            self.overflow.set(self.overflow.get() + 1);
            OverflowPlace(self.clone())
        })
    }
}

/// An overflow connection's place; dropping it frees the place.
pub struct OverflowPlace(Rc<ConnTable>);

impl Drop for OverflowPlace {
    fn drop(&mut self) {
        self.0.overflow.set(self.0.overflow.get() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_must_arrive_in_time_and_a_body_keep_its_rate() {
        let c = ConnClock::new(false);
        assert_eq!(c.expired(Duration::from_secs(60)), None);
        assert_eq!(c.expired(Duration::ZERO), Some(Expired::Head), "no head yet");
        c.request_started();
        assert_eq!(c.expired(Duration::ZERO), None, "a response being sent is never cut");
        c.read_pending.set(true);
        assert_eq!(c.expired(Duration::ZERO), Some(Expired::Body), "waiting on a body that does not come");
        c.on_read(1 << 20);
        c.read_pending.set(true);
        assert_eq!(c.expired(Duration::ZERO), None, "a MiB in the window is progress");
        c.request_finished();
        assert_eq!(c.expired(Duration::ZERO), None, "idle between requests is the idle timeout's");
    }
}
