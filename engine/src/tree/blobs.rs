//! The blob stream of `POST /git/{host}/{repo}/blobs`.
//!
//! Request: object ids, 40 hex digits each, one per line, at most
//! `BLOBS_PER_REQUEST_MAX`. Response (`application/x-trove-blobs`), one
//! frame per id in the order asked, then an end frame:
//!
//! ```text
//! oid      20 bytes
//! status   u8       0 ok, 1 missing, 2 not a blob, 3 too large (over
//!                   BLOB_STREAM_MAX_BYTES, or a delta over
//!                   BLOB_REBUILD_MAX_BYTES), 4 unreadable
//! len      u64 LE   bytes that follow (0 unless ok)
//! bytes    len
//! end:     20 zero bytes, status 255, len 0
//! ```
//!
//! A blob is read whole and hashed (`blob <len>\0` + bytes, SHA-1) before
//! its frame is made: a mirror's corrupt object is `unreadable`, never
//! sent. A larger one (over BLOB_SERVE_MAX_BYTES) is streamed after a
//! first pass hashed it: from its pack (`bigblob.rs`), or, a delta or
//! loose, from git (`gitblob.rs`). A stream without its end frame was cut.
//! What a stream holds in memory is charged to the node's blob memory
//! (`blob_memory.rs`). An id asked twice is answered once.
//! The reader checks each blob against its oid again: it trusts no node.

use crate::limits::{BLOBS_PER_REQUEST_MAX, BLOB_MEMORY_WAIT, BLOB_SERVE_MAX_BYTES};
use crate::tree::blob_cache::BlobCache;
use crate::tree::blob_memory::{BlobMemory, Charge};
use crate::tree::{oid_hex, parse_oid};

pub const FRAME_HEADER_BYTES: usize = 20 + 1 + 8;
pub const END_STATUS: u8 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    Missing = 1,
    NotABlob = 2,
    TooLarge = 3,
    Unreadable = 4,
}

/// The ids of a request body, or what is wrong with it.
pub fn parse_request(body: &[u8]) -> Result<Vec<[u8; 20]>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body must be text: one object id per line".to_owned())?;
    let mut ids = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if ids.len() == BLOBS_PER_REQUEST_MAX {
            return Err(format!("at most {BLOBS_PER_REQUEST_MAX} object ids per request"));
        }
        ids.push(parse_oid(line).ok_or_else(|| format!("{line:?} is not an object id (40 hex digits)"))?);
    }
    if ids.is_empty() {
        return Err("no object ids: send one per line".into());
    }
    Ok(ids)
}

/// A frame's header.
pub fn frame_header(oid: &[u8; 20], status: u8, len: u64) -> [u8; FRAME_HEADER_BYTES] {
    let mut h = [0u8; FRAME_HEADER_BYTES];
    h[..20].copy_from_slice(oid);
    h[20] = status;
    h[21..].copy_from_slice(&len.to_le_bytes());
    h
}

/// The frame that ends a stream.
pub fn end_frame() -> [u8; FRAME_HEADER_BYTES] {
    frame_header(&[0; 20], END_STATUS, 0)
}

/// A blob's size from its object header, before anything is read: Err
/// when it is missing, not a blob, or unreadable.
pub fn blob_size(repo: &gix::Repository, oid: &[u8; 20]) -> Result<u64, Status> {
    let id = gix::ObjectId::from_bytes_or_panic(oid);
    let header = match repo.try_find_header(id) {
        Ok(Some(h)) => h,
        Ok(None) => return Err(Status::Missing),
        Err(_) => return Err(Status::Unreadable),
    };
    if header.kind() != gix::objs::Kind::Blob {
        return Err(Status::NotABlob);
    }
    Ok(header.size())
}

/// Reads blob `oid` (at most BLOB_SERVE_MAX_BYTES, see [`blob_size`]) whole
/// from `repo` and checks it against its id.
pub fn read_checked(repo: &gix::Repository, oid: &[u8; 20]) -> Result<Vec<u8>, Status> {
    let id = gix::ObjectId::from_bytes_or_panic(oid);
    let object = repo.find_object(id).map_err(|_| Status::Unreadable)?;
    let data = object.detach().data;
    if !matches(oid, &data) {
        tracing::warn!(oid = %oid_hex(oid), "a blob in the mirror does not match its id; not served");
        return Err(Status::Unreadable);
    }
    Ok(data)
}

/// Whether `data` is the blob named `oid`.
pub fn matches(oid: &[u8; 20], data: &[u8]) -> bool {
    gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, data)
        .is_ok_and(|h| h.as_bytes() == oid.as_slice())
}

/// One piece of a blob stream (a frame header, a blob, or a chunk of
/// one) with its charge on the node's blob memory: the charge is given
/// back when the piece is dropped, after the shard has passed it on.
pub struct Piece {
    pub bytes: bytes::Bytes,
    _charge: Option<Charge>,
}

impl Piece {
    fn free(bytes: bytes::Bytes) -> Self {
        Self { bytes, _charge: None }
    }

    fn header(oid: &[u8; 20], status: Status, len: u64) -> Self {
        Self::free(bytes::Bytes::copy_from_slice(&frame_header(oid, status as u8, len)))
    }
}

/// Reads `ids` from `mirror` on a thread of its own and yields the pieces
/// (a header, then a blob's bytes), at most `BLOBS_READ_AHEAD` ahead of
/// the consumer; each blob or chunk is charged to `memory` before it is
/// read, and the stream is cut (no end frame) when no room comes within
/// BLOB_MEMORY_WAIT. An id asked twice is read and answered once.
/// `served` counts the blobs sent. Dropping the receiver stops the reader.
/// The pieces come through a doorbell channel (`crate::doorbell`): a plain
/// thread's wake of a shard through a futures channel can wait for the
/// shard's next timer.
pub fn spawn_reader(
    mirror: std::path::PathBuf,
    ids: Vec<[u8; 20]>,
    served: std::sync::Arc<crate::stats::ShardStats>,
    memory: std::sync::Arc<BlobMemory>,
    (cache, repo_id): (std::sync::Arc<BlobCache>, u128),
) -> std::io::Result<crate::doorbell::Receiver<Piece>> {
    let (tx, rx) = crate::doorbell::channel(Some(crate::limits::BLOBS_READ_AHEAD))?;
    std::thread::Builder::new().name("trove-blobs".into()).spawn(move || {
        let send = |p: Piece| -> bool { tx.send(p).is_ok() };
        let charge = |bytes: u64| memory.take(bytes, BLOB_MEMORY_WAIT);
        let repo = crate::tree::walk::open(&mirror).ok();
        let mut answered = std::collections::HashSet::with_capacity(ids.len());
        for oid in ids.iter().filter(|o| answered.insert(**o)) {
            // Served lately: neither inflated nor hashed again.
            if let Some(data) = cache.get(repo_id, oid) {
                let Some(held) = charge(data.len() as u64) else {
                    tracing::warn!(
                        "no blob memory came free in {BLOB_MEMORY_WAIT:?} (--blob-memory); cutting a blob stream"
                    );
                    return;
                };
                crate::stats::bump(&served.blobs_served, 1);
                crate::stats::bump(&served.blob_cache_hits, 1);
                if !(send(Piece::header(oid, Status::Ok, data.len() as u64))
                    && send(Piece { bytes: data, _charge: Some(held) }))
                {
                    return;
                }
                continue;
            }
            let size = match &repo {
                Some(r) => blob_size(r, oid),
                None => Err(Status::Unreadable),
            };
            let sent = match size {
                Ok(size) if size > BLOB_SERVE_MAX_BYTES => send_big(&mirror, oid, size, &served, &send, &charge),
                Ok(size) => {
                    let Some(held) = charge(size) else {
                        tracing::warn!(
                            "no blob memory came free in {BLOB_MEMORY_WAIT:?} (--blob-memory); cutting a blob stream"
                        );
                        return;
                    };
                    match read_checked(repo.as_ref().expect("a size was read from it"), oid) {
                        Ok(data) => {
                            crate::stats::bump(&served.blobs_served, 1);
                            let data = bytes::Bytes::from(data);
                            cache.put(repo_id, oid, data.clone());
                            send(Piece::header(oid, Status::Ok, data.len() as u64))
                                && send(Piece { bytes: data, _charge: Some(held) })
                        }
                        Err(status) => send(Piece::header(oid, status, 0)),
                    }
                }
                Err(status) => send(Piece::header(oid, status, 0)),
            };
            if !sent {
                return; // the client went away, or no memory came free
            }
        }
        send(Piece::free(bytes::Bytes::copy_from_slice(&end_frame())));
    })?;
    Ok(rx)
}

/// Streams a large blob of `size` bytes in `BLOB_STREAM_CHUNK_BYTES`
/// chunks, after a first pass checked it: from its pack
/// ([`crate::tree::bigblob`]) or through git ([`crate::tree::gitblob`]). A
/// blob it cannot stream is refused per item. False when the client went
/// away.
fn send_big(
    mirror: &std::path::Path,
    oid: &[u8; 20],
    size: u64,
    served: &crate::stats::ShardStats,
    send: &dyn Fn(Piece) -> bool,
    charge: &dyn Fn(u64) -> Option<Charge>,
) -> bool {
    use crate::limits::{BLOB_REBUILD_MAX_BYTES, BLOB_STREAM_MAX_BYTES};
    use crate::tree::{bigblob::Stored, gitblob::GitBlob};
    let refuse = |status: Status| send(Piece::header(oid, status, 0));
    let unreadable = || {
        tracing::warn!(oid = %oid_hex(oid), "a large blob in the mirror does not match its id; not served");
        refuse(Status::Unreadable)
    };
    let sent = match crate::tree::bigblob::PackedBlob::find(mirror, oid) {
        Stored::Whole(blob) if blob.size > BLOB_STREAM_MAX_BYTES => return refuse(Status::TooLarge),
        Stored::Whole(blob) => {
            if !blob.verify(oid) {
                return unreadable();
            }
            let Some(reader) = blob.reader() else { return refuse(Status::Unreadable) };
            send_chunks(oid, blob.size, reader, send, charge)
        }
        Stored::Delta if size > BLOB_REBUILD_MAX_BYTES => return refuse(Status::TooLarge),
        Stored::Unpacked if size > BLOB_STREAM_MAX_BYTES => return refuse(Status::TooLarge),
        stored => {
            let blob = GitBlob::new(mirror, oid, size);
            let _turn = matches!(stored, Stored::Delta).then(GitBlob::rebuild_turn);
            if !blob.verify(oid) {
                return unreadable();
            }
            let Ok(reader) = blob.reader() else { return refuse(Status::Unreadable) };
            send_chunks(oid, size, reader, send, charge)
        }
    };
    if sent {
        crate::stats::bump(&served.blobs_served, 1);
    }
    sent
}

/// A blob's frame: its header, then `size` bytes of `reader` in chunks,
/// each charged before it is read. False when the client went away or no
/// memory came free: the stream is then cut.
fn send_chunks(
    oid: &[u8; 20],
    size: u64,
    mut reader: impl std::io::Read,
    send: &dyn Fn(Piece) -> bool,
    charge: &dyn Fn(u64) -> Option<Charge>,
) -> bool {
    if !send(Piece::header(oid, Status::Ok, size)) {
        return false;
    }
    let mut left = size;
    while left > 0 {
        let n = (crate::limits::BLOB_STREAM_CHUNK_BYTES as u64).min(left);
        let Some(held) = charge(n) else {
            tracing::warn!("no blob memory came free in {BLOB_MEMORY_WAIT:?} (--blob-memory); cutting a blob stream");
            return false;
        };
        let mut chunk = vec![0u8; n as usize];
        // It was read whole and checked a moment ago; failing now is the
        // disk, and a stream cut before its end frame is what the client
        // then sees.
        if reader.read_exact(&mut chunk).is_err()
            || !send(Piece { bytes: bytes::Bytes::from(chunk), _charge: Some(held) })
        {
            return false;
        }
        left -= n;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_ids_one_per_line_and_bounded() {
        let a = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(parse_request(format!("{a}\n\n{a}\n").as_bytes()).expect("valid").len(), 2);
        assert!(parse_request(b"").is_err());
        assert!(parse_request(b"xyz\n").is_err());
        assert!(parse_request(&[0xff, 0xfe]).is_err());
        let many = format!("{a}\n").repeat(BLOBS_PER_REQUEST_MAX + 1);
        assert!(parse_request(many.as_bytes()).is_err());
    }

    #[test]
    fn a_blob_matches_its_git_id() {
        // `printf hello | git hash-object --stdin`
        let oid = parse_oid("b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0").expect("hex");
        assert!(matches(&oid, b"hello"));
        assert!(!matches(&oid, b"hellp"));
    }
}
