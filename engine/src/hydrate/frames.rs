//! Reading the node's blob stream (`POST .../blobs`, framed as
//! `tree/blobs.rs` documents) as hostile input.
//!
//! [`FrameReader`] is pull-style: give it the bytes that arrived and take
//! events until it needs more, so the caller can await a disk write per
//! chunk. It holds at most one frame header; blob bytes pass through as
//! slices of the arrived buffer.
//!
//! What it refuses: a frame for an id other than the next one asked (the
//! node answers in order), a blob whose length differs from the size the
//! tree index gave or passes `HYDRATE_BLOB_MAX_BYTES`, an error frame with
//! a length, an unknown status, the end before every id was answered, and
//! any byte after the end.

use super::error::HydrateError;
use super::want::{hex, Oid};
use crate::limits::HYDRATE_BLOB_MAX_BYTES;
use crate::tree::blobs::{Status, END_STATUS, FRAME_HEADER_BYTES};
use bytes::Bytes;
use std::collections::VecDeque;

/// What the stream said next.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Blob `oid` of `len` bytes starts; `Data` follows until `len` is met.
    Begin {
        oid: Oid,
        len: u64,
    },
    Data(Bytes),
    /// The blob that began last is complete.
    Complete {
        oid: Oid,
    },
    /// The node could not serve `oid`.
    Refused {
        oid: Oid,
        status: u8,
    },
    /// The end frame: every id was answered.
    End,
}

enum State {
    Head,
    Body { oid: Oid, remaining: u64 },
    Ended,
}

/// See the module doc.
pub struct FrameReader {
    asked: VecDeque<(Oid, u64)>,
    state: State,
    head: [u8; FRAME_HEADER_BYTES],
    head_fill: usize,
}

impl FrameReader {
    /// A reader for the answer to `asked` (id and expected size, in the
    /// order they were sent).
    pub fn new(asked: impl IntoIterator<Item = (Oid, u64)>) -> Self {
        Self { asked: asked.into_iter().collect(), state: State::Head, head: [0; FRAME_HEADER_BYTES], head_fill: 0 }
    }

    pub fn ended(&self) -> bool {
        matches!(self.state, State::Ended)
    }

    /// The next event from `input` (consuming what it uses), or None when
    /// `input` is used up mid-frame.
    pub fn next(&mut self, input: &mut Bytes) -> Result<Option<Event>, HydrateError> {
        loop {
            match &mut self.state {
                State::Ended => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    return Err(HydrateError::Protocol("bytes after the end frame".into()));
                }
                State::Body { oid, remaining } => {
                    if *remaining == 0 {
                        let oid = *oid;
                        self.state = State::Head;
                        return Ok(Some(Event::Complete { oid }));
                    }
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = (*remaining).min(input.len() as u64) as usize;
                    *remaining -= take as u64;
                    return Ok(Some(Event::Data(input.split_to(take))));
                }
                State::Head => {
                    let take = (FRAME_HEADER_BYTES - self.head_fill).min(input.len());
                    self.head[self.head_fill..self.head_fill + take].copy_from_slice(&input[..take]);
                    self.head_fill += take;
                    let _ = input.split_to(take);
                    if self.head_fill < FRAME_HEADER_BYTES {
                        return Ok(None);
                    }
                    self.head_fill = 0;
                    if let Some(event) = self.header()? {
                        return Ok(Some(event));
                    }
                }
            }
        }
    }

    /// Acts on a whole header: an event, or None when a body starts.
    fn header(&mut self) -> Result<Option<Event>, HydrateError> {
        let mut oid = [0u8; 20];
        oid.copy_from_slice(&self.head[..20]);
        let status = self.head[20];
        let mut len_bytes = [0u8; 8];
        len_bytes.copy_from_slice(&self.head[21..]);
        let len = u64::from_le_bytes(len_bytes);
        if status == END_STATUS {
            if oid != [0; 20] || len != 0 {
                return Err(HydrateError::Protocol("a malformed end frame".into()));
            }
            if let Some((missing, _)) = self.asked.front() {
                return Err(HydrateError::Protocol(format!(
                    "the stream ended with {} blobs unanswered (first {})",
                    self.asked.len(),
                    hex(missing)
                )));
            }
            self.state = State::Ended;
            return Ok(Some(Event::End));
        }
        let Some((want, size)) = self.asked.pop_front() else {
            return Err(HydrateError::Protocol("a frame for a blob nobody asked for".into()));
        };
        if oid != want {
            return Err(HydrateError::Protocol(format!("a frame for {} where {} was next", hex(&oid), hex(&want))));
        }
        if status != Status::Ok as u8 {
            if status > Status::Unreadable as u8 {
                return Err(HydrateError::Protocol(format!("unknown status {status} for {}", hex(&oid))));
            }
            if len != 0 {
                return Err(HydrateError::Protocol(format!("an error frame for {} with {len} bytes", hex(&oid))));
            }
            return Ok(Some(Event::Refused { oid, status }));
        }
        if len > HYDRATE_BLOB_MAX_BYTES || len != size {
            return Err(HydrateError::Protocol(format!(
                "blob {} is {len} bytes; the tree index says {size}",
                hex(&oid)
            )));
        }
        self.state = State::Body { oid, remaining: len };
        Ok(Some(Event::Begin { oid, len }))
    }
}

/// What an error frame's status means, for [`HydrateError::Refused`].
pub fn refusal(status: u8) -> &'static str {
    match status {
        1 => "missing from its mirror",
        2 => "not a blob",
        3 => "larger than the node serves",
        _ => "unreadable in its mirror",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::blobs::{end_frame, frame_header};
    use proptest::prelude::*;

    fn stream(parts: &[(Oid, u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (oid, status, bytes) in parts {
            out.extend_from_slice(&frame_header(oid, *status, bytes.len() as u64));
            out.extend_from_slice(bytes);
        }
        out.extend_from_slice(&end_frame());
        out
    }

    /// Every event, feeding `data` in chunks of `chunk` bytes; blob bytes
    /// joined.
    fn events(reader: &mut FrameReader, data: &[u8], chunk: usize) -> Result<Vec<Event>, HydrateError> {
        let mut out: Vec<Event> = Vec::new();
        for piece in data.chunks(chunk.max(1)) {
            let mut input = Bytes::copy_from_slice(piece);
            while let Some(ev) = reader.next(&mut input)? {
                match (ev, out.last_mut()) {
                    (Event::Data(d), Some(Event::Data(prev))) => {
                        let mut joined = prev.to_vec();
                        joined.extend_from_slice(&d);
                        *prev = Bytes::from(joined);
                    }
                    (ev, _) => out.push(ev),
                }
            }
        }
        Ok(out)
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_events(chunk in 1usize..64) {
            let (a, b) = ([1u8; 20], [2u8; 20]);
            let data = stream(&[(a, 0, b"hello world"), (b, 1, b"")]);
            let mut r = FrameReader::new([(a, 11), (b, 3)]);
            let ev = events(&mut r, &data, chunk).expect("valid");
            prop_assert_eq!(ev, vec![
                Event::Begin { oid: a, len: 11 },
                Event::Data(Bytes::from_static(b"hello world")),
                Event::Complete { oid: a },
                Event::Refused { oid: b, status: 1 },
                Event::End,
            ]);
            prop_assert!(r.ended());
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut r = FrameReader::new([([1u8; 20], 5)]);
            let _ = events(&mut r, &data, 7);
        }
    }

    #[test]
    fn lies_are_refused() {
        let (a, b) = ([1u8; 20], [2u8; 20]);
        // Out of order.
        let mut r = FrameReader::new([(a, 1), (b, 1)]);
        assert!(events(&mut r, &stream(&[(b, 0, b"x"), (a, 0, b"y")]), 64).is_err());
        // A length other than the index's size.
        let mut r = FrameReader::new([(a, 1)]);
        assert!(events(&mut r, &stream(&[(a, 0, b"xx")]), 64).is_err());
        // Ended early.
        let mut r = FrameReader::new([(a, 1), (b, 1)]);
        assert!(events(&mut r, &stream(&[(a, 0, b"x")]), 64).is_err());
        // Trailing bytes.
        let mut r = FrameReader::new([(a, 1)]);
        let mut data = stream(&[(a, 0, b"x")]);
        data.push(0);
        assert!(events(&mut r, &data, 64).is_err());
        // An error frame with a body.
        let mut r = FrameReader::new([(a, 1)]);
        assert!(events(&mut r, &stream(&[(a, 1, b"x")]), 64).is_err());
        // A huge length never allocates: it is refused on the header.
        let mut r = FrameReader::new([(a, u64::MAX)]);
        let mut data = frame_header(&a, 0, u64::MAX).to_vec();
        data.extend_from_slice(&end_frame());
        assert!(events(&mut r, &data, 64).is_err());
        // Unknown status.
        let mut r = FrameReader::new([(a, 0)]);
        assert!(events(&mut r, &stream(&[(a, 9, b"")]), 64).is_err());
    }
}
