//! The open-loop generator (wrk2's model): request i is due at
//! start + i/rate whatever happened before, and its latency is measured
//! from that due time, so a server that stalls is charged for every
//! request it delayed (coordinated omission corrected by construction).
//!
//! One OS thread per connection, all pinned to the generator's CPU, each
//! taking the next due request when it is free and sleeping in the kernel
//! (an hrtimer, tens of microseconds of slack) until that request's time.
//! Not the monoio runtime the closed loop uses: its timer has a 1 ms wheel,
//! so requests left in bursts, and with tasks spinning to their time
//! instead its I/O went unseen until every connection waited on a read:
//! either way the measured p50 was about a connection's whole interval
//! (7/8 of it with 8 connections), for nginx as for trove.

use crate::loadgen::{parse_head, LoadResult, LoadSpec};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A response slower than this counts as an error (and its connection is
/// dropped), so a dead server ends the run instead of hanging it.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `spec` open loop at `rate` requests per second.
pub fn run(spec: &LoadSpec, rate: f64) -> std::io::Result<LoadResult> {
    let total = (rate * spec.duration.as_secs_f64()).ceil() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let next = Arc::new(AtomicU64::new(0));
    let request = Arc::new(format!("GET {} HTTP/1.1\r\nHost: bench\r\n\r\n", spec.path).into_bytes());
    let threads: Vec<_> = (0..spec.connections.max(1))
        .map(|_| {
            let (next, request, addr, cpu) = (next.clone(), request.clone(), spec.addr, spec.cpu);
            std::thread::Builder::new().name("trove-openloop".into()).spawn(move || {
                let _ = monoio::utils::bind_to_cpu_set([cpu]);
                connection(addr, &request, &next, total, start, interval)
            })
        })
        .collect::<Result<_, _>>()?;
    let mut out = LoadResult::empty(spec.duration)?;
    for t in threads {
        let r = t.join().map_err(|_| std::io::Error::other("a generator thread panicked"))??;
        out.latency_us.add(&r.latency_us).map_err(std::io::Error::other)?;
        out.send_lag_us.add(&r.send_lag_us).map_err(std::io::Error::other)?;
        out.requests += r.requests;
        out.errors += r.errors;
        out.bytes += r.bytes;
    }
    Ok(out)
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 120_000_000)
}

fn connection(
    addr: std::net::SocketAddr,
    request: &[u8],
    next: &AtomicU64,
    total: u64,
    start: Instant,
    interval: Duration,
) -> std::io::Result<LoadResult> {
    let mut r = LoadResult::empty(Duration::ZERO)?;
    let mut conn: Option<TcpStream> = None;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            return Ok(r);
        }
        let due = start + interval.mul_f64(i as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let s = match &mut conn {
            Some(s) => s,
            None => match TcpStream::connect(addr) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    let _ = s.set_read_timeout(Some(RESPONSE_TIMEOUT));
                    conn.insert(s)
                }
                Err(_) => {
                    r.errors += 1;
                    continue;
                }
            },
        };
        let _ = r.send_lag_us.record(micros(due.elapsed()));
        match exchange(s, request, &mut buf) {
            Ok(body) => {
                let _ = r.latency_us.record(micros(due.elapsed()));
                r.requests += 1;
                r.bytes += body;
            }
            Err(_) => {
                r.errors += 1;
                conn = None;
            }
        }
    }
}

/// Sends one request and reads its whole response; returns the body length.
fn exchange(s: &mut TcpStream, request: &[u8], buf: &mut [u8]) -> std::io::Result<u64> {
    s.write_all(request)?;
    let mut head = Vec::new();
    let (head_len, body_len) = loop {
        match s.read(buf)? {
            0 => return Err(std::io::Error::other("connection closed")),
            n => head.extend_from_slice(&buf[..n]),
        }
        if let Some(lengths) = parse_head(&head)? {
            break lengths;
        }
    };
    let mut remaining = body_len.saturating_sub((head.len() - head_len) as u64);
    while remaining > 0 {
        match s.read(buf)? {
            0 => return Err(std::io::Error::other("closed mid-body")),
            n => remaining = remaining.saturating_sub(n as u64),
        }
    }
    Ok(body_len)
}
