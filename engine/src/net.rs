//! hyper's IO traits over glommio sockets, for both faces that speak HTTP:
//! the server (trove-server) and the S3 client (remote/).
//!
//! Writes are vectored: hyper queues the response head and the body's DMA
//! buffers, and `poll_write_vectored` hands them to one non-blocking
//! `sendmsg`, so large bodies go from the read buffer to the socket with no
//! user-space copy. When the socket is full it falls back to glommio's own
//! `poll_write`, which registers for readiness on the ring.
//!
//! This module must never block the shard thread: every syscall here is
//! non-blocking (MSG_DONTWAIT).

use futures_lite::{AsyncRead, AsyncWrite};
use hyper::rt::ReadBufCursor;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
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
}

impl<T> HyperIo<T> {
    pub fn new(inner: T) -> Self {
        Self { inner, read_window: READ_SLICE_MIN_BYTES }
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

impl<T: AsyncWrite + RawSocket + Unpin> hyper::rt::Write for HyperIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let nonempty = bufs.iter().filter(|b| !b.is_empty()).count();
        if let (true, Some(raw)) = (nonempty > 1, self.inner.raw_socket()) {
            // SAFETY: the fd belongs to `self.inner`, which outlives this call.
            let fd = unsafe { BorrowedFd::borrow_raw(raw) };
            let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
            match rustix::net::sendmsg(fd, bufs, &mut Default::default(), flags) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(rustix::io::Errno::AGAIN) => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
        // One buffer, or the socket is full: glommio waits for readiness.
        let first = bufs.iter().find(|b| !b.is_empty()).map(|b| &**b).unwrap_or(&[]);
        Pin::new(&mut self.inner).poll_write(cx, first)
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
