//! An upload-pack request body, read as far as its wants and no further.
//!
//! What the node must know before it takes an upload-pack slot is the
//! wants (the mirror may have to fetch them first). git sends them first:
//! the want section ends at the first flush (protocol v0), or at the first
//! `have` or `done` (v2, and v0 as well). So the body is read, gzip undone
//! incrementally, until that point; a body that ends meanwhile (a clone, a
//! small fetch) is whole, which the shared-clone path needs. Past it, and
//! past `STREAM_AFTER_BYTES`, the rest of a fetch (one that wants
//! something) is not held: it streams into upload-pack as the client sends
//! it, after admission (`rest`).
//!
//! Every byte held counts against the node's body budget. The request is
//! limited to `UPLOAD_PACK_BODY_MAX_BYTES` after inflating, streamed part
//! included. The want section is read by the engine's `repo::wants`;
//! upload-pack checks the rest.

use crate::budget::Reservation;
use crate::error::ApiError;
use crate::limits::UPLOAD_PACK_BODY_MAX_BYTES;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::io::Write;
use trove_engine::repo::wants::WantScan;

/// Once the wants are known, bodies longer than this stream.
pub const STREAM_AFTER_BYTES: usize = 256 * 1024;
/// Memory a want held costs beyond its bytes in the body: its String's
/// 40 bytes in a 48-byte allocation, and its 24-byte slot in a list that
/// grows by doubling, whose old and new buffers live side by side while it
/// moves (3 slots a want at worst).
const WANT_HELD_BYTES: usize = 48 + 3 * 24;

/// The request as far as it has been read.
pub struct PackRequest {
    body: Incoming,
    gzip: Option<flate2::write::GzDecoder<Vec<u8>>>,
    /// Inflated bytes read so far (held or streamed).
    total: usize,
    ended: bool,
}

/// The part read before admission.
pub struct Head {
    pub bytes: Vec<u8>,
    pub wants: Vec<String>,
    /// The body ended within it: `bytes` is the whole request.
    pub whole: bool,
}

impl PackRequest {
    pub fn new(body: Incoming, gzip: bool) -> Self {
        Self { body, gzip: gzip.then(|| flate2::write::GzDecoder::new(Vec::new())), total: 0, ended: false }
    }

    /// Reads until the wants are known and either the body ended or
    /// `STREAM_AFTER_BYTES` are held, each byte taken from `reservation`.
    pub async fn head(&mut self, reservation: &mut Reservation) -> Result<Head, ApiError> {
        let mut bytes = Vec::new();
        let mut scan = WantScan::default();
        loop {
            let known = scan.wants.len();
            scan.advance(&bytes).map_err(|e| ApiError::bad_request("bad_upload_pack_request", e.to_string()))?;
            // A want kept costs about its String, beyond its bytes.
            reservation.grow(((scan.wants.len() - known) * WANT_HELD_BYTES) as u64)?;
            if self.ended {
                if bytes.is_empty() {
                    return Err(garbage("empty body"));
                }
                if scan.pos != bytes.len() {
                    return Err(garbage("truncated pkt-line"));
                }
                return Ok(Head { bytes, wants: scan.wants, whole: true });
            }
            // Only a fetch streams: a body that wants nothing (a v2
            // command, or garbage) is small, and is held whole.
            if scan.complete && !scan.wants.is_empty() && bytes.len() >= STREAM_AFTER_BYTES {
                return Ok(Head { bytes, wants: scan.wants, whole: false });
            }
            match self.next_inflated().await? {
                Some(data) => hold(&mut bytes, &data, reservation)?,
                None => self.ended = true,
            }
        }
    }

    /// The next bytes after the head, inflated; None at the end.
    pub async fn rest(&mut self) -> Result<Option<Bytes>, ApiError> {
        if self.ended {
            return Ok(None);
        }
        let next = self.next_inflated().await?;
        self.ended = next.is_none();
        Ok(next)
    }

    async fn next_inflated(&mut self) -> Result<Option<Bytes>, ApiError> {
        loop {
            let Some(frame) = self.body.frame().await else {
                if let Some(dec) = self.gzip.as_mut() {
                    dec.try_finish().map_err(corrupt_gzip)?;
                    let tail = std::mem::take(dec.get_mut());
                    if !tail.is_empty() {
                        return self.count(Bytes::from(tail)).map(Some);
                    }
                }
                return Ok(None);
            };
            let frame = frame
                .map_err(|e| ApiError::bad_request("bad_body", format!("reading the request body failed: {e}")))?;
            let Ok(data) = frame.into_data() else { continue };
            let data = match self.gzip.as_mut() {
                None => data,
                Some(dec) => {
                    dec.write_all(&data).map_err(corrupt_gzip)?;
                    Bytes::from(std::mem::take(dec.get_mut()))
                }
            };
            if !data.is_empty() {
                return self.count(data).map(Some);
            }
        }
    }

    fn count(&mut self, data: Bytes) -> Result<Bytes, ApiError> {
        self.total += data.len();
        if self.total > UPLOAD_PACK_BODY_MAX_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "an upload-pack request is limited to {UPLOAD_PACK_BODY_MAX_BYTES} bytes (after gzip is undone)"
                ),
            ));
        }
        Ok(data)
    }
}

/// Appends `data` to `held`, first taking from `reservation` what the
/// buffer grows by. What a Vec holds is its capacity, not its length, and
/// while it moves the old buffer lives beside the new one: both are
/// charged until the move is done.
fn hold(held: &mut Vec<u8>, data: &[u8], reservation: &mut Reservation) -> Result<(), ApiError> {
    let need = held.len() + data.len();
    let old = held.capacity();
    if need > old {
        let new = need.max(old * 2);
        reservation.grow(new as u64)?;
        held.reserve_exact(new - held.len());
        reservation.give_back(old as u64);
        if held.capacity() > new {
            reservation.grow((held.capacity() - new) as u64)?;
        }
    }
    held.extend_from_slice(data);
    Ok(())
}

fn corrupt_gzip(e: std::io::Error) -> ApiError {
    ApiError::bad_request("bad_body", format!("the gzip request body is corrupt: {e}"))
}

fn garbage(why: &str) -> ApiError {
    ApiError::bad_request("bad_upload_pack_request", format!("not a git upload-pack request: {why}"))
}
