//! Landing an object from S3 into a local file that readers can follow.
//!
//! 1. One GET of the last REMOTE_TAIL_BYTES (`Range: bytes=-N`) gives the
//!    object's size (Content-Range) and its trailer, so the object's length,
//!    ETag and block sums are known before any data lands. A small object
//!    arrives whole in this one GET. When the asker knows the file's length
//!    (a snapshot pointer carries it), the first range's GET goes out with
//!    the tail's, so a cold first byte waits one S3 round trip, not two;
//!    the length is a hint from hostile input: when S3's Content-Range
//!    disagrees, that early GET is dropped and the first range is asked
//!    for again.
//! 2. The rest, `[0, tail start)`, is split into ranges: a first one of
//!    REMOTE_FIRST_PART_BYTES, written a block at a time, then
//!    REMOTE_PART_BYTES ones. The first runs alone and the others start
//!    when it is done, so the first bytes a reader waits for share neither
//!    S3 nor this shard with the bulk; then REMOTE_PARALLELISM run at a time, written
//!    with O_DIRECT at their offsets. The ranges never overlap: every byte
//!    is fetched once.
//! 3. `Landing::landed` advances over the contiguous written prefix, so
//!    readers stream while the rest lands.
//! 4. When whole, every block is read back and checked against its sum,
//!    then the file is fdatasync'd; the owner shard then publishes it.
//!
//! Memory per fetch: REMOTE_PARALLELISM write buffers of WRITE_CHUNK_BYTES.

use crate::key::ObjectKey;
use crate::limits::{
    BLOCK_BYTES, REMOTE_FIRST_PART_BYTES, REMOTE_PARALLELISM, REMOTE_PART_BYTES, REMOTE_TAIL_BYTES, WRITE_CHUNK_BYTES,
};
use crate::remote::{http, parallel, RemoteError, RemoteTier};
use crate::store::format;
use crate::store::landing::Landing;
use crate::store::read::SealedObject;
use futures_lite::StreamExt;
use glommio::io::DmaFile;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Lands `key` from S3 into `tmp_path`. `on_landing` is called as soon as
/// the trailer is known and readers may follow. Returns `Ok(None)` when S3
/// has no such object. On error the tmp file is removed and the landing,
/// if published, is marked failed.
pub async fn land(
    remote: &Rc<RemoteTier>,
    key: &ObjectKey,
    len_hint: Option<u64>,
    tmp_path: PathBuf,
    final_path: PathBuf,
    on_landing: impl FnOnce(Arc<Landing>),
) -> Result<Option<Arc<Landing>>, RemoteError> {
    let mut published: Option<Arc<Landing>> = None;
    let result = land_inner(remote, key, len_hint, &tmp_path, final_path, |l| {
        published = Some(l.clone());
        on_landing(l);
    })
    .await;
    if result.as_ref().map_or(true, |r| r.is_none()) {
        if let Some(l) = &published {
            l.mark_failed();
        }
        let _ = glommio::io::remove(&tmp_path).await;
    }
    result
}

async fn land_inner(
    remote: &Rc<RemoteTier>,
    key: &ObjectKey,
    len_hint: Option<u64>,
    tmp_path: &std::path::Path,
    final_path: PathBuf,
    on_landing: impl FnOnce(Arc<Landing>),
) -> Result<Option<Arc<Landing>>, RemoteError> {
    let hash = key.hash();
    // The first range, early, only where it cannot overlap the tail.
    let early = len_hint.filter(|&len| len >= REMOTE_TAIL_BYTES + REMOTE_FIRST_PART_BYTES).map(|_| {
        let remote = remote.clone();
        glommio::spawn_local(async move { remote.get_range(hash, &first_range(REMOTE_FIRST_PART_BYTES)).await })
    });
    let Some(resp) = remote.get_range(hash, &format!("bytes=-{REMOTE_TAIL_BYTES}")).await? else {
        return Ok(None);
    };
    let (tail_start, total) = content_range(&resp)?;
    if len_hint.is_some_and(|len| len != total) {
        tracing::warn!(key = %key.key(), hint = ?len_hint, total, "the stored length differs from the pointer's; fetching without it");
    }
    let early = early.filter(|_| len_hint == Some(total));
    let tail = http::read_small("GET", resp.into_body(), REMOTE_TAIL_BYTES as usize, remote.response_timeout()).await?;
    remote.stats().remote_bytes_read.fetch_add(tail.len() as u64, Ordering::Relaxed);
    if tail.len() as u64 != total - tail_start {
        return Err(RemoteError::Corrupt(format!("tail is {} bytes, expected {}", tail.len(), total - tail_start)));
    }
    let trailer_len = format::decode_tail(&tail, total).map_err(|e| RemoteError::Corrupt(e.to_string()))?;
    // A trailer longer than the tail (objects of many GiB): fetch the rest.
    let mut have_from = tail_start;
    let mut trailer = tail.to_vec();
    if trailer_len > total - tail_start {
        have_from = total - trailer_len;
        let range = format!("bytes={}-{}", have_from, tail_start - 1);
        let resp =
            remote.get_range(hash, &range).await?.ok_or_else(|| RemoteError::Corrupt("vanished mid-fetch".into()))?;
        let head = http::read_small("GET", resp.into_body(), trailer_len as usize, remote.response_timeout()).await?;
        remote.stats().remote_bytes_read.fetch_add(head.len() as u64, Ordering::Relaxed);
        let mut t = head.to_vec();
        t.extend_from_slice(&trailer);
        trailer = t;
    }
    let trailer_bytes = &trailer[trailer.len() - trailer_len as usize..];
    let meta = format::decode_trailer(trailer_bytes, total).map_err(|e| RemoteError::Corrupt(e.to_string()))?;
    if meta.namespace != key.namespace() || meta.key != key.key() {
        // A different name with the same 128-bit hash: not our object.
        return Ok(None);
    }

    let io_err = |e: glommio::GlommioError<()>| RemoteError::LocalIo(format!("landing file: {e}"));
    let file = Rc::new(DmaFile::create(tmp_path).await.map_err(io_err)?);
    write_aligned(&file, have_from, &trailer).await?;
    let landing = Arc::new(Landing::new(tmp_path.to_owned(), final_path, meta, total));

    let ranges = plan_ranges(have_from);
    if ranges.is_empty() {
        landing.set_landed(total);
    }
    on_landing(landing.clone());

    let fetch = Rc::new(RangeFetch {
        remote: remote.clone(),
        file: file.clone(),
        hash,
        progress: RefCell::new(vec![0u64; ranges.len()]),
        ranges,
        landing: landing.clone(),
        total,
        first_done: Gate::default(),
        early: RefCell::new(early),
    });
    let count = fetch.ranges.len();
    parallel::for_each_index(count, REMOTE_PARALLELISM, move |i| {
        let fetch = fetch.clone();
        async move {
            if i > 0 {
                fetch.first_done.wait().await;
            }
            let result = fetch.range(i).await;
            if i == 0 {
                fetch.first_done.open();
            }
            result
        }
    })
    .await?;
    file.fdatasync().await.map_err(io_err)?;
    // Check every block against its sum before the owner publishes the file.
    let check = SealedObject::open(tmp_path).await.map_err(|e| RemoteError::Corrupt(e.to_string()))?;
    let check = check.ok_or_else(|| RemoteError::LocalIo("landing file vanished".into()))?;
    let mut blocks = Box::pin(check.stream(0, u64::MAX));
    while let Some(b) = blocks.next().await {
        b.map_err(|e| RemoteError::Corrupt(e.to_string()))?;
    }
    Ok(Some(landing))
}

/// Start offset and total size from a 206's Content-Range, or (0, length)
/// for a 200.
fn content_range(resp: &::http::Response<Incoming>) -> Result<(u64, u64), RemoteError> {
    let bad = |what: &str| RemoteError::Protocol { op: "GET", what: what.to_owned() };
    let h = resp.headers();
    if resp.status().as_u16() == 200 {
        let len = h.get(::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        return len.map(|l| (0, l)).ok_or_else(|| bad("200 without Content-Length"));
    }
    let v = h
        .get(::http::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad("206 without Content-Range"))?;
    let rest = v.strip_prefix("bytes ").ok_or_else(|| bad("Content-Range unit"))?;
    let (span, total) = rest.split_once('/').ok_or_else(|| bad("Content-Range shape"))?;
    let (start, _) = span.split_once('-').ok_or_else(|| bad("Content-Range span"))?;
    let start = start.parse().map_err(|_| bad("Content-Range start"))?;
    let total = total.parse().map_err(|_| bad("Content-Range total"))?;
    if start > total {
        return Err(bad("Content-Range start past its total"));
    }
    Ok((start, total))
}

/// Length of the written prefix: whole ranges in order, then the written
/// part of the first incomplete one. All of the file past the ranges (the
/// tail) is written before any range starts.
fn contiguous(ranges: &[(u64, u64)], progress: &[u64], total: u64) -> u64 {
    let mut landed = 0;
    for (&(s, e), &done) in ranges.iter().zip(progress) {
        if done < e - s {
            return s + done;
        }
        landed = e;
    }
    if landed == ranges.last().map_or(0, |r| r.1) {
        total
    } else {
        landed
    }
}

/// The ranged GETs of one landing and what they share.
struct RangeFetch {
    remote: Rc<RemoteTier>,
    file: Rc<DmaFile>,
    hash: u128,
    ranges: Vec<(u64, u64)>,
    /// Bytes written of each range.
    progress: RefCell<Vec<u64>>,
    landing: Arc<Landing>,
    total: u64,
    /// Opens when the first range is done (or failed).
    first_done: Gate,
    /// The first range's GET, sent with the tail's (`land_inner`).
    early: RefCell<Option<EarlyGet>>,
}

type EarlyGet = glommio::Task<Result<Option<::http::Response<Incoming>>, RemoteError>>;

/// The Range header of `[0, len)`.
fn first_range(len: u64) -> String {
    format!("bytes=0-{}", len - 1)
}

impl RangeFetch {
    /// Fetches range `i` into the file, advancing the landing as its bytes
    /// are written (the first range a block at a time).
    async fn range(&self, i: usize) -> Result<(), RemoteError> {
        let (start, end) = self.ranges[i];
        // The early GET asked for exactly [0, REMOTE_FIRST_PART_BYTES).
        let early = self.early.borrow_mut().take().filter(|_| (start, end) == (0, REMOTE_FIRST_PART_BYTES));
        let resp = match early {
            Some(task) => task.await?,
            None => self.remote.get_range(self.hash, &format!("bytes={}-{}", start, end - 1)).await?,
        };
        let resp = resp.ok_or_else(|| RemoteError::Corrupt("object vanished mid-fetch".into()))?;
        let (got_start, _) = content_range(&resp)?;
        if got_start != start || resp.status().as_u16() != 206 {
            return Err(RemoteError::Protocol { op: "GET", what: "the store ignored the Range header".into() });
        }
        let on_write = |written: u64| {
            self.progress.borrow_mut()[i] = written;
            self.landing.set_landed(contiguous(&self.ranges, &self.progress.borrow(), self.total));
        };
        let chunk = if i == 0 { BLOCK_BYTES as usize } else { WRITE_CHUNK_BYTES };
        stream_range(&self.remote, &self.file, resp.into_body(), start, end, chunk, on_write).await
    }
}

/// The ranges of `[0, len)`: a first short one, then full parts.
fn plan_ranges(len: u64) -> Vec<(u64, u64)> {
    let first = REMOTE_FIRST_PART_BYTES.min(len);
    let mut ranges = if first > 0 { vec![(0, first)] } else { Vec::new() };
    ranges.extend((first..len).step_by(REMOTE_PART_BYTES as usize).map(|s| (s, (s + REMOTE_PART_BYTES).min(len))));
    ranges
}

/// Opens once, for every waiter before and after.
#[derive(Default)]
struct Gate {
    open: std::cell::Cell<bool>,
    event: event_listener::Event,
}

impl Gate {
    fn open(&self) {
        self.open.set(true);
        self.event.notify(usize::MAX);
    }

    async fn wait(&self) {
        while !self.open.get() {
            let listener = self.event.listen();
            if self.open.get() {
                return;
            }
            listener.await;
        }
    }
}

/// Writes a body of `[start, end)` to `file` through aligned buffers of
/// `chunk` bytes, reporting each as written.
async fn stream_range(
    remote: &RemoteTier,
    file: &DmaFile,
    mut body: Incoming,
    start: u64,
    end: u64,
    chunk: usize,
    on_write: impl Fn(u64),
) -> Result<(), RemoteError> {
    let io_err = |e: glommio::GlommioError<()>| RemoteError::LocalIo(format!("landing file: {e}"));
    let mut buf = file.alloc_dma_buffer(chunk);
    let mut used = 0usize;
    let mut pos = start;
    loop {
        let frame = futures_lite::future::or(async { body.frame().await.map(|r| r.map_err(Some)) }, async {
            glommio::timer::sleep(remote.response_timeout()).await;
            Some(Err(None))
        })
        .await;
        let data = match frame {
            None => break,
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
            Some(Err(Some(e))) => return Err(RemoteError::Http { op: "GET", reason: e.to_string() }),
            Some(Err(None)) => return Err(RemoteError::Timeout { op: "GET body", after: remote.response_timeout() }),
        };
        remote.stats().remote_bytes_read.fetch_add(data.len() as u64, Ordering::Relaxed);
        let mut data = &data[..];
        while !data.is_empty() {
            if pos + (used + data.len()) as u64 > end {
                return Err(RemoteError::Protocol { op: "GET", what: "more bytes than the range asked for".into() });
            }
            let n = data.len().min(chunk - used);
            buf.as_bytes_mut()[used..used + n].copy_from_slice(&data[..n]);
            used += n;
            data = &data[n..];
            if used == chunk {
                let full = std::mem::replace(&mut buf, file.alloc_dma_buffer(chunk));
                file.write_at(full, pos).await.map_err(io_err)?;
                pos += used as u64;
                used = 0;
                on_write(pos - start);
            }
        }
    }
    if pos + used as u64 != end {
        return Err(RemoteError::Protocol { op: "GET", what: format!("body ended at {} of {end}", pos + used as u64) });
    }
    if used > 0 {
        buf.trim_to_size(used);
        file.write_at(buf, pos).await.map_err(io_err)?;
        pos += used as u64;
        on_write(pos - start);
    }
    Ok(())
}

async fn write_aligned(file: &DmaFile, pos: u64, bytes: &[u8]) -> Result<(), RemoteError> {
    let mut buf = file.alloc_dma_buffer(bytes.len());
    buf.as_bytes_mut().copy_from_slice(bytes);
    file.write_at(buf, pos).await.map_err(|e| RemoteError::LocalIo(format!("landing file: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::contiguous;

    #[test]
    fn contiguous_prefix_only_counts_what_is_written_in_order() {
        let ranges = [(0, 10), (10, 20), (20, 25)];
        assert_eq!(contiguous(&ranges, &[0, 10, 5], 40), 0);
        assert_eq!(contiguous(&ranges, &[10, 3, 5], 40), 13);
        assert_eq!(contiguous(&ranges, &[10, 10, 4], 40), 24);
        assert_eq!(contiguous(&ranges, &[10, 10, 5], 40), 40);
    }

    #[test]
    fn ranges_start_short_then_cover_everything_once() {
        use super::plan_ranges;
        use crate::limits::{REMOTE_FIRST_PART_BYTES as F, REMOTE_PART_BYTES as P};
        assert_eq!(plan_ranges(0), vec![]);
        assert_eq!(plan_ranges(F / 2), vec![(0, F / 2)]);
        assert_eq!(plan_ranges(F + P + 5), vec![(0, F), (F, F + P), (F + P, F + P + 5)]);
    }
}
