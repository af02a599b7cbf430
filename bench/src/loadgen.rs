//! The load generator: HTTP/1.1 GETs over keep-alive connections on a
//! monoio (io_uring, thread-per-core) runtime pinned to its own CPU, so it
//! never competes with the server's shards for a core.
//!
//! Open loop (the wrk2 model): request i is due at start + i/rate whatever
//! happened before. Its latency is measured from when it was due, not from
//! when it was sent, so a stalled server is charged for every request it
//! delayed: coordinated omission is corrected by construction. Closed loop
//! (each connection sends its next request when the last one finished)
//! finds the maximum rate.

use hdrhistogram::Histogram;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What one load run should do.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub path: String,
    pub connections: usize,
    pub duration: Duration,
    /// Requests per second; `None` runs closed loop as fast as possible.
    pub rate: Option<f64>,
    /// The CPU the generator runs on.
    pub cpu: usize,
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Latency in microseconds, corrected for coordinated omission.
    pub latency_us: Histogram<u64>,
    pub requests: u64,
    pub errors: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl LoadResult {
    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `spec` on a fresh thread pinned to `spec.cpu` and waits for it.
pub fn run(spec: LoadSpec) -> std::io::Result<LoadResult> {
    std::thread::Builder::new()
        .name("trove-loadgen".into())
        .spawn(move || {
            let _ = monoio::utils::bind_to_cpu_set([spec.cpu]);
            let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build()?;
            rt.block_on(drive(spec))
        })?
        .join()
        .map_err(|_| std::io::Error::other("the load generator thread panicked"))?
}

struct Shared {
    next: Cell<u64>,
    total: u64,
    start: Instant,
    interval: Option<Duration>,
    deadline: Instant,
    hist: RefCell<Histogram<u64>>,
    requests: Cell<u64>,
    errors: Cell<u64>,
    bytes: Cell<u64>,
}

async fn drive(spec: LoadSpec) -> std::io::Result<LoadResult> {
    let start = Instant::now() + Duration::from_millis(50);
    let total = spec.rate.map_or(u64::MAX, |r| (r * spec.duration.as_secs_f64()).ceil() as u64);
    let shared = Rc::new(Shared {
        next: Cell::new(0),
        total,
        start,
        interval: spec.rate.map(|r| Duration::from_secs_f64(1.0 / r)),
        deadline: start + spec.duration,
        hist: RefCell::new(Histogram::new_with_bounds(1, 120_000_000, 3).map_err(std::io::Error::other)?),
        requests: Cell::new(0),
        errors: Cell::new(0),
        bytes: Cell::new(0),
    });
    let request = Rc::new(format!("GET {} HTTP/1.1\r\nHost: bench\r\n\r\n", spec.path).into_bytes());
    let mut tasks = Vec::new();
    for _ in 0..spec.connections {
        tasks.push(monoio::spawn(connection(spec.addr, request.clone(), shared.clone())));
    }
    for t in tasks {
        t.await;
    }
    let elapsed = shared.deadline.min(Instant::now()).saturating_duration_since(start).max(Duration::from_millis(1));
    let elapsed = if spec.rate.is_some() { spec.duration.max(elapsed) } else { elapsed };
    let latency_us = shared.hist.borrow().clone();
    Ok(LoadResult {
        latency_us,
        requests: shared.requests.get(),
        errors: shared.errors.get(),
        bytes: shared.bytes.get(),
        elapsed,
    })
}

async fn connection(addr: SocketAddr, request: Rc<Vec<u8>>, sh: Rc<Shared>) {
    let mut conn: Option<TcpStream> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    loop {
        let i = sh.next.get();
        if i >= sh.total {
            return;
        }
        sh.next.set(i + 1);
        let due = match sh.interval {
            Some(iv) => {
                let due = sh.start + iv.mul_f64(i as f64);
                let now = Instant::now();
                if due > now {
                    monoio::time::sleep(due - now).await;
                }
                due
            }
            None => {
                let now = Instant::now();
                if now >= sh.deadline {
                    return;
                }
                now.max(sh.start)
            }
        };
        if sh.interval.is_none() && Instant::now() < sh.start {
            monoio::time::sleep(sh.start - Instant::now()).await;
        }
        if conn.is_none() {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    conn = Some(s);
                }
                Err(_) => {
                    sh.errors.set(sh.errors.get() + 1);
                    monoio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let s = conn.as_mut().expect("connected above");
        match exchange(s, &request, buf).await {
            (Ok(body), b) => {
                buf = b;
                let us = due.elapsed().as_micros().max(1) as u64;
                let _ = sh.hist.borrow_mut().record(us.min(120_000_000));
                sh.requests.set(sh.requests.get() + 1);
                sh.bytes.set(sh.bytes.get() + body);
            }
            (Err(_), b) => {
                buf = b;
                sh.errors.set(sh.errors.get() + 1);
                conn = None;
            }
        }
    }
}

/// Sends one request and reads the whole response; returns its body
/// length. `buf` is the read buffer (monoio fills it from its start).
async fn exchange(s: &mut TcpStream, request: &Rc<Vec<u8>>, mut buf: Vec<u8>) -> (std::io::Result<u64>, Vec<u8>) {
    let fail = |m: &str| std::io::Error::other(m.to_owned());
    let (r, _) = s.write_all(request.as_ref().clone()).await;
    if let Err(e) = r {
        return (Err(e), buf);
    }
    let mut head = Vec::new();
    let (head_len, body_len) = loop {
        let (r, b) = s.read(buf).await;
        buf = b;
        match r {
            Ok(0) => return (Err(fail("connection closed")), buf),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return (Err(e), buf),
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&head) {
            Ok(httparse::Status::Complete(len)) => {
                if resp.code != Some(200) && resp.code != Some(206) {
                    return (Err(fail("non-2xx status")), buf);
                }
                let body = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                match body {
                    Some(b) => break (len, b),
                    None => return (Err(fail("no content-length")), buf),
                }
            }
            Ok(httparse::Status::Partial) if head.len() < 64 * 1024 => continue,
            _ => return (Err(fail("bad response head")), buf),
        }
    };
    let mut remaining = body_len.saturating_sub((head.len() - head_len) as u64);
    while remaining > 0 {
        let (r, b) = s.read(buf).await;
        buf = b;
        match r {
            Ok(0) => return (Err(fail("closed mid-body")), buf),
            Ok(n) => remaining = remaining.saturating_sub(n as u64),
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(body_len), buf)
}
