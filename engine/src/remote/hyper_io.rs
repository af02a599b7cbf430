//! hyper's IO traits over glommio sockets, for both faces that speak HTTP:
//! the server (trove-server) and the S3 client (remote/); and the two
//! socket calls the server makes outside hyper (close-on-exec, a peek),
//! here because they need an fd borrowed unsafely, which the server's
//! crate forbids. The runtime and the store never import this module.
//!
//! Writes are vectored: hyper queues the response head and the body's DMA
//! buffers, and `poll_write_vectored` hands them to one non-blocking
//! `sendmsg`, so large bodies go from the read buffer to the socket with no
//! user-space copy. When the socket is full it falls back to glommio's own
//! `poll_write`, which registers for readiness on the ring.
//!
//! This module must never block the shard thread: every syscall here is
//! non-blocking (MSG_DONTWAIT).

use crate::stats::{bump, ShardStats};
use futures_lite::{AsyncRead, AsyncWrite};
use hyper::rt::ReadBufCursor;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Most bytes one read asks for. hyper hands out uninitialised buffers,
/// which are zeroed before a `&mut [u8]` is made of them; bounding a read
/// bounds that cost.
const READ_SLICE_MAX_BYTES: usize = 64 * 1024;

/// Fewest bytes one read asks for. A connection's read window starts here
/// and doubles while reads fill it (a body arriving), halving back when
/// they come in small (request heads): zeroing a full 64 KiB before every
/// read of a ~100-byte GET, including the read that finds nothing yet, was
/// 2% of a shard's CPU at 36k small GETs/s.
const READ_SLICE_MIN_BYTES: usize = 4 * 1024;

/// A stream whose bytes may be written straight to its socket: a plain
/// TCP stream says its fd; a TLS stream says None (its bytes must go
/// through the TLS session).
pub trait RawSocket {
    fn raw_socket(&self) -> Option<RawFd>;
}

impl RawSocket for glommio::net::TcpStream {
    fn raw_socket(&self) -> Option<RawFd> {
        Some(self.as_raw_fd())
    }
}

/// A glommio stream as a hyper connection.
pub struct HyperIo<T> {
    inner: T,
    /// Bytes the next read asks for, READ_SLICE_MIN_BYTES..=READ_SLICE_MAX_BYTES.
    read_window: usize,
    /// A write through glommio went Pending: its readiness poll is armed,
    /// and the next write must go through glommio too.
    glommio_pending: bool,
    /// The shard's counters, for a connection the server accepted.
    stats: Option<Arc<ShardStats>>,
}

impl<T> HyperIo<T> {
    pub fn new(inner: T) -> Self {
        Self { inner, read_window: READ_SLICE_MIN_BYTES, glommio_pending: false, stats: None }
    }

    /// Counts this connection's zero-copy bytes and full-socket waits in
    /// `stats`.
    pub fn counted(mut self, stats: Arc<ShardStats>) -> Self {
        self.stats = Some(stats);
        self
    }

    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncRead + Unpin> hyper::rt::Read for HyperIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        // SAFETY: we only write into the slice (after zeroing it) and then
        // advance by exactly the number of bytes the read initialised.
        let uninit: &mut [MaybeUninit<u8>] = unsafe { buf.as_mut() };
        let n = uninit.len().min(self.read_window);
        let slice = &mut uninit[..n];
        for b in slice.iter_mut() {
            b.write(0);
        }
        // SAFETY: every element of `slice` was initialised just above.
        let bytes = unsafe { &mut *(slice as *mut [MaybeUninit<u8>] as *mut [u8]) };
        match Pin::new(&mut self.inner).poll_read(cx, bytes) {
            Poll::Ready(Ok(read)) => {
                // SAFETY: `read` <= n bytes were filled by the read.
                unsafe { buf.advance(read) };
                self.read_window = if read == n {
                    (self.read_window * 2).min(READ_SLICE_MAX_BYTES)
                } else if read < n / 4 {
                    (self.read_window / 2).max(READ_SLICE_MIN_BYTES)
                } else {
                    self.read_window
                };
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + RawSocket + Unpin> HyperIo<T> {
    /// Writes through glommio. When the socket is full, glommio arms a
    /// readiness poll on the ring and wakes this task when there is room:
    /// that poll is the only wait of a full socket (no timer). A mapped
    /// buffer is offered one byte at a time here, so at most one byte of it
    /// is copied; the rest goes with sendfile once there is room.
    fn poll_glommio(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mapped = crate::store::mapped::sendfile_source(buf).is_some();
        let buf = if mapped { &buf[..buf.len().min(1)] } else { buf };
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.glommio_pending = r.is_pending();
        if let (true, Some(stats)) = (r.is_pending(), &self.stats) {
            bump(&stats.sends_socket_full, 1);
        }
        r
    }

    /// Sends `bytes`, a checked mapping of `file` at `off`, with sendfile:
    /// the kernel takes the page-cache pages, no copy. The socket is
    /// blocking for glommio's sake (it polls on the ring and sends with
    /// MSG_DONTWAIT), so it is made non-blocking for this one call.
    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        sock: RawFd,
        bytes: &[u8],
        file: RawFd,
        off: u64,
    ) -> Poll<io::Result<usize>> {
        // SAFETY: the socket belongs to `self.inner`; the file to the live
        // mapping `bytes` lies in. Both outlive this call.
        let (sock_fd, file_fd) = unsafe { (BorrowedFd::borrow_raw(sock), BorrowedFd::borrow_raw(file)) };
        let sent = (|| {
            let flags = rustix::fs::fcntl_getfl(sock_fd)?;
            rustix::fs::fcntl_setfl(sock_fd, flags | rustix::fs::OFlags::NONBLOCK)?;
            let mut at = off;
            let sent = rustix::fs::sendfile(sock_fd, file_fd, Some(&mut at), bytes.len());
            rustix::fs::fcntl_setfl(sock_fd, flags)?;
            sent
        })();
        match sent {
            Ok(n) if n > 0 => {
                if let Some(stats) = &self.stats {
                    bump(&stats.sendfile_bytes, n as u64);
                }
                Poll::Ready(Ok(n))
            }
            // Full (or, never expected, nothing sent): glommio waits for room.
            Ok(_) | Err(rustix::io::Errno::AGAIN) => self.poll_glommio(cx, bytes),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }
}

impl<T: AsyncWrite + RawSocket + Unpin> hyper::rt::Write for HyperIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let source = crate::store::mapped::sendfile_source(buf);
        match (self.glommio_pending, self.inner.raw_socket(), source) {
            (false, Some(sock), Some((file, off))) if !buf.is_empty() => self.poll_sendfile(cx, sock, buf, file, off),
            _ => self.poll_glommio(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let bufs = &bufs[bufs.iter().take_while(|b| b.is_empty()).count()..];
        let first = bufs.first().map(|b| &**b).unwrap_or(&[]);
        let raw = match self.inner.raw_socket() {
            Some(raw) if !self.glommio_pending && !first.is_empty() => raw,
            _ => return self.poll_glommio(cx, first),
        };
        if let Some((file, off)) = crate::store::mapped::sendfile_source(first) {
            return self.poll_sendfile(cx, raw, first, file, off);
        }
        // The buffers up to the first mapped one, in one sendmsg.
        let plain = bufs.iter().take_while(|b| crate::store::mapped::sendfile_source(b).is_none()).count();
        if bufs[..plain].iter().filter(|b| !b.is_empty()).count() > 1 {
            // SAFETY: the fd belongs to `self.inner`, which outlives this call.
            let fd = unsafe { BorrowedFd::borrow_raw(raw) };
            let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
            match rustix::net::sendmsg(fd, &bufs[..plain], &mut Default::default(), flags) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(rustix::io::Errno::AGAIN) => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
        // One buffer, or the socket is full: glommio waits for readiness.
        self.poll_glommio(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.raw_socket().is_some()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Marks `fd` close-on-exec. glommio 0.9 accepts a connection that is
/// already waiting with a plain `accept()` (its `yolo_accept` fast path),
/// without SOCK_CLOEXEC: such a client socket was inherited by every git
/// the node forked meanwhile, and an orphaned git kept the connection open
/// after the node died. Call it on every accepted socket.
pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: the caller owns `fd` (an accepted socket it holds) for the
    // whole call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let flags = rustix::io::fcntl_getfd(fd)?;
    rustix::io::fcntl_setfd(fd, flags | rustix::io::FdFlags::CLOEXEC)?;
    Ok(())
}

/// Copies what is waiting on socket `fd` into `buf` without reading it
/// (MSG_PEEK) and without waiting: how many bytes, 0 when none are there.
pub fn peek_now(fd: RawFd, buf: &mut [u8]) -> usize {
    // SAFETY: the caller owns `fd` (a socket it holds) for the whole call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
    rustix::net::recv(fd, buf, flags).map_or(0, |(n, _)| n)
}
