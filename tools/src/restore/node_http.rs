//! How restore talks to the node: one HTTP client that follows no
//! redirect, bodies read no further than asked (`capped`), and the parallel
//! ranged download of a stored snapshot (`Ranges`). Every byte here is the
//! node's, so hostile.

use super::exit::fail;
use crate::client::{exit, failure, ClientFailure};
use crate::limits::RANGE_BYTES;
use anyhow::Result;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Restore's HTTP client. A node's redirect is never followed: it could
/// send restore to any host (the bundle URL's "a path on the node" rule
/// went around that way).
pub(crate) fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout_read(Duration::from_secs(300))
        .redirects(0)
        .build()
}

/// One GET, mapped to the client's exit codes on failure; a redirect is
/// a failure.
pub(crate) fn get(agent: &ureq::Agent, url: &str, headers: &[(&str, &str)]) -> Result<ureq::Response> {
    let mut req = agent.get(url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = req.call().map_err(|e| failure(e, url))?;
    refuse_redirect(&resp, url)?;
    Ok(resp)
}

/// A 3xx from the node as the error restore exits with.
pub(crate) fn refuse_redirect(resp: &ureq::Response, url: &str) -> Result<()> {
    if (300..400).contains(&resp.status()) {
        return Err(fail(
            exit::SERVER_ERROR,
            format!(
                "{url}: the node answered with a redirect (HTTP {}); restore never follows one: pass the node's own URL as --url",
                resp.status()
            ),
        ));
    }
    Ok(())
}

/// `reader` cut after `max` bytes, with an error (not a quiet end) when
/// the node sends more.
pub(crate) fn capped(reader: impl Read + Send + 'static, max: u64, what: &'static str) -> Box<dyn Read + Send> {
    Box::new(Capped { inner: reader.take(max + 1), left: max, what })
}

struct Capped<R> {
    inner: std::io::Take<R>,
    left: u64,
    what: &'static str,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(std::io::Error::other(format!(
                "the node sent more than the {} bytes {} may be",
                self.left, self.what
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// What a range download reports when the ETag it is pinned to is gone.
pub(crate) const SNAPSHOT_CHANGED: &str = "the snapshot changed during the download (412)";

/// The rest of a snapshot after its first range, fetched by `parallel`
/// threads in RANGE_BYTES pieces and read back in order. At most
/// 2 x parallel pieces are held in memory.
pub(crate) struct Ranges {
    first: Box<dyn Read + Send>,
    first_left: u64,
    shared: Arc<RangeState>,
    next: u64,
    pieces: u64,
    cur: std::io::Cursor<Vec<u8>>,
}

struct RangeState {
    done: Mutex<BTreeMap<u64, Result<Vec<u8>, String>>>,
    ready: Condvar,
    /// Piece the reader is on; workers stay within the window of it.
    reading: AtomicU64,
    claimed: AtomicU64,
    stop: AtomicBool,
    workers: AtomicUsize,
}

impl Ranges {
    pub(crate) fn start(
        agent: ureq::Agent,
        url: String,
        etag: String,
        total: u64,
        first: Box<dyn Read + Send>,
        parallel: usize,
    ) -> Self {
        let pieces = total.div_ceil(RANGE_BYTES);
        let shared = Arc::new(RangeState {
            done: Mutex::new(BTreeMap::new()),
            ready: Condvar::new(),
            reading: AtomicU64::new(0),
            claimed: AtomicU64::new(1),
            stop: AtomicBool::new(false),
            workers: AtomicUsize::new(parallel),
        });
        let window = 2 * parallel as u64;
        for _ in 0..parallel {
            let (s, agent, url, etag) = (shared.clone(), agent.clone(), url.clone(), etag.clone());
            std::thread::spawn(move || {
                loop {
                    let i = s.claimed.fetch_add(1, Ordering::AcqRel);
                    if i >= pieces || s.stop.load(Ordering::Acquire) {
                        break;
                    }
                    // Stay within the window of the reader.
                    {
                        let mut g = s.done.lock().expect("not poisoned");
                        while i >= s.reading.load(Ordering::Acquire) + window && !s.stop.load(Ordering::Acquire) {
                            g = s.ready.wait(g).expect("not poisoned");
                        }
                    }
                    let start = i * RANGE_BYTES;
                    let end = (start + RANGE_BYTES).min(total) - 1;
                    let got = fetch_range(&agent, &url, &etag, start, end);
                    s.done.lock().expect("not poisoned").insert(i, got);
                    s.ready.notify_all();
                }
                s.workers.fetch_sub(1, Ordering::AcqRel);
                s.ready.notify_all();
            });
        }
        Self { first, first_left: RANGE_BYTES.min(total), shared, next: 1, pieces, cur: Default::default() }
    }
}

fn fetch_range(agent: &ureq::Agent, url: &str, etag: &str, start: u64, end: u64) -> Result<Vec<u8>, String> {
    let range = format!("bytes={start}-{end}");
    let mut last = String::new();
    for _try in 0..3 {
        match get(agent, url, &[("Range", &range), ("If-Match", etag)]) {
            Ok(r) if r.status() == 206 => {
                // Never past the range's own length, whatever the node sends.
                let len = end - start + 1;
                let mut v = Vec::with_capacity(len as usize);
                match r.into_reader().take(len + 1).read_to_end(&mut v) {
                    Ok(_) if v.len() as u64 > len => last = format!("range {range} came long"),
                    Ok(_) if v.len() as u64 == end - start + 1 => return Ok(v),
                    Ok(_) => last = format!("range {range} came short"),
                    Err(e) => last = format!("range {range}: {e}"),
                }
            }
            Ok(r) => return Err(format!("range {range}: expected 206, got {}", r.status())),
            Err(e) if e.downcast_ref::<ClientFailure>().is_some_and(|f| f.code == exit::PRECONDITION) => {
                return Err(SNAPSHOT_CHANGED.into())
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

impl Read for Ranges {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.first_left > 0 {
            let want = buf.len().min(self.first_left as usize);
            let n = self.first.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::Error::other("the first range came short"));
            }
            self.first_left -= n as u64;
            return Ok(n);
        }
        loop {
            let n = self.cur.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            if self.next >= self.pieces {
                return Ok(0);
            }
            let s = &self.shared;
            let mut g = s.done.lock().expect("not poisoned");
            let piece = loop {
                if let Some(p) = g.remove(&self.next) {
                    break p;
                }
                if s.workers.load(Ordering::Acquire) == 0 {
                    return Err(std::io::Error::other("the range downloads stopped early"));
                }
                g = s.ready.wait(g).expect("not poisoned");
            };
            drop(g);
            self.next += 1;
            s.reading.store(self.next, Ordering::Release);
            s.ready.notify_all();
            self.cur = std::io::Cursor::new(piece.map_err(std::io::Error::other)?);
        }
    }
}

impl Drop for Ranges {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.ready.notify_all();
    }
}

/// Whether `url` is a path on the node (what `X-Trove-Bundle-Url` must
/// be), not a URL that would send restore to another host.
pub(crate) fn node_path(url: &str) -> bool {
    url.starts_with('/')
        && !url.starts_with("//")
        && url.bytes().all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'@')
}
