//! The one response body type: empty, a small buffer, or a stream of
//! verified DMA chunks from the engine. Frames carry the engine's buffers
//! as they are (no copy); hyper writes them with vectored sends.

use bytes::{Buf, Bytes};
use futures_lite::Stream;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use trove_engine::{DataChunk, EngineError};

/// A body frame's data: a small owned buffer or an engine chunk.
pub enum Chunk {
    Bytes(Bytes),
    Data(DataChunk),
}

impl Buf for Chunk {
    fn remaining(&self) -> usize {
        match self {
            Chunk::Bytes(b) => b.remaining(),
            Chunk::Data(d) => d.remaining(),
        }
    }

    fn chunk(&self) -> &[u8] {
        match self {
            Chunk::Bytes(b) => b.chunk(),
            Chunk::Data(d) => d.chunk(),
        }
    }

    fn advance(&mut self, cnt: usize) {
        match self {
            Chunk::Bytes(b) => b.advance(cnt),
            Chunk::Data(d) => d.advance(cnt),
        }
    }
}

type DataStream = Pin<Box<dyn Stream<Item = Result<DataChunk, EngineError>>>>;
type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>>>>;

pub enum RespBody {
    Empty,
    Full(Option<Bytes>),
    Stream {
        stream: DataStream,
        remaining: u64,
        on_chunk: Box<dyn Fn(u64)>,
        /// Held until the body is dropped (see `keep_alive`).
        keep: Option<Box<dyn std::any::Any>>,
    },
    /// Bytes of unknown length (a process's output): sent chunked.
    Bytes(ByteStream),
}

impl RespBody {
    pub fn full(b: impl Into<Bytes>) -> Self {
        RespBody::Full(Some(b.into()))
    }

    /// A stream of exactly `len` bytes; `on_chunk` sees each chunk's length.
    pub fn stream(
        stream: impl Stream<Item = Result<DataChunk, EngineError>> + 'static,
        len: u64,
        on_chunk: impl Fn(u64) + 'static,
    ) -> Self {
        RespBody::Stream { stream: Box::pin(stream), remaining: len, on_chunk: Box::new(on_chunk), keep: None }
    }

    /// Holds `guard` until the body is sent or dropped (a stream), or drops
    /// it at once (a body already whole).
    pub fn keep_alive(mut self, guard: Box<dyn std::any::Any>) -> Self {
        if let RespBody::Stream { keep, .. } = &mut self {
            *keep = Some(guard);
        }
        self
    }

    /// A stream of unknown length, sent chunked; an error ends the response
    /// without its last chunk, so the client sees it failed.
    pub fn bytes_stream(stream: impl Stream<Item = std::io::Result<Bytes>> + 'static) -> Self {
        RespBody::Bytes(Box::pin(stream))
    }
}

impl Body for RespBody {
    type Data = Chunk;
    type Error = EngineError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Chunk>, EngineError>>> {
        match self.get_mut() {
            RespBody::Empty => Poll::Ready(None),
            RespBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(Chunk::Bytes(b))))),
            RespBody::Stream { stream, remaining, on_chunk, .. } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                match stream.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(c))) => {
                        let n = c.len() as u64;
                        *remaining = remaining.saturating_sub(n);
                        on_chunk(n);
                        Poll::Ready(Some(Ok(Frame::data(Chunk::Data(c)))))
                    }
                    Poll::Ready(Some(Err(e))) => {
                        // The head is sent: the client only sees the connection close.
                        tracing::warn!(error = %e, left = *remaining, "a response body ended early");
                        Poll::Ready(Some(Err(e)))
                    }
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            }
            RespBody::Bytes(stream) => match stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(Chunk::Bytes(b))))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(EngineError::Io {
                    op: "streaming",
                    path: "a git process's output".into(),
                    source: e,
                }))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Empty => true,
            RespBody::Full(b) => b.is_none(),
            RespBody::Stream { remaining, .. } => *remaining == 0,
            RespBody::Bytes(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RespBody::Empty => SizeHint::with_exact(0),
            RespBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RespBody::Stream { remaining, .. } => SizeHint::with_exact(*remaining),
            RespBody::Bytes(_) => SizeHint::default(),
        }
    }
}
