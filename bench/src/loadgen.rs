//! The load generator: HTTP/1.1 GETs over keep-alive connections, pinned
//! to a CPU of its own, so it never competes with the server's shards.
//!
//! Closed loop (each connection sends its next request when the last one
//! finished) finds the maximum rate, on a monoio (io_uring) runtime. Open
//! loop (the wrk2 model, CO-corrected) is openloop.rs; what a run is and
//! what it measured is load.rs, which both use and neither imports the
//! other.

use crate::load::{parse_head, LoadResult, LoadSpec};
use hdrhistogram::Histogram;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Runs `spec` closed loop (its rate is ignored: as fast as it goes) on a
/// monoio runtime pinned to `spec.cpu`, and waits for it. The open loop
/// is `openloop::run`; the caller picks (`load::LoadSpec::rate`).
pub fn run(spec: LoadSpec) -> std::io::Result<LoadResult> {
    let cpu = spec.cpu;
    on_pinned_runtime(cpu, move || drive(spec))
}

/// Runs the future `make` gives on a monoio runtime of a fresh thread
/// pinned to `cpu`, and waits for it.
fn on_pinned_runtime<T, F>(cpu: usize, make: impl FnOnce() -> F + Send + 'static) -> std::io::Result<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = std::io::Result<T>>,
{
    std::thread::Builder::new()
        .name("trove-loadgen".into())
        .spawn(move || {
            let _ = monoio::utils::bind_to_cpu_set([cpu]);
            let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build()?;
            rt.block_on(make())
        })?
        .join()
        .map_err(|_| std::io::Error::other("the load generator thread panicked"))?
}

struct Shared {
    start: Instant,
    deadline: Instant,
    hist: RefCell<Histogram<u64>>,
    requests: Cell<u64>,
    errors: Cell<u64>,
    bytes: Cell<u64>,
}

async fn drive(spec: LoadSpec) -> std::io::Result<LoadResult> {
    let start = Instant::now() + Duration::from_millis(50);
    let shared = Rc::new(Shared {
        start,
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
    let mut out = LoadResult::empty(elapsed)?;
    out.latency_us = shared.hist.borrow().clone();
    out.requests = shared.requests.get();
    out.errors = shared.errors.get();
    out.bytes = shared.bytes.get();
    Ok(out)
}

async fn connection(addr: SocketAddr, request: Rc<Vec<u8>>, sh: Rc<Shared>) {
    let mut conn: Option<TcpStream> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    loop {
        let now = Instant::now();
        if now >= sh.deadline {
            return;
        }
        let due = now.max(sh.start);
        if Instant::now() < sh.start {
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

/// Times `n` GETs of `path` one after another on one keep-alive
/// connection, each from its request's send to its last body byte; on
/// `cpu`. Returns each GET's body bytes and time.
pub fn timed_gets(addr: SocketAddr, path: &str, n: usize, cpu: usize) -> std::io::Result<Vec<(u64, Duration)>> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes();
    on_pinned_runtime(cpu, move || async move {
        let request = Rc::new(request);
        let mut s = TcpStream::connect(addr).await?;
        let _ = s.set_nodelay(true);
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            let (r, b) = exchange(&mut s, &request, buf).await;
            buf = b;
            out.push((r?, started.elapsed()));
        }
        Ok(out)
    })
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
        match parse_head(&head) {
            Ok(Some(lengths)) => break lengths,
            Ok(None) => continue,
            Err(e) => return (Err(e), buf),
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
