//! The open-loop generator (wrk2's model): request i is due at
//! start + i/rate whatever happened before, and its latency is measured
//! from that due time, so a server that stalls is charged for every
//! request it delayed (coordinated omission corrected by construction).
//!
//! One thread, pinned to the generator's CPU, drives every connection
//! from one epoll set: it sends each request on a free connection at its
//! due time (epoll_pwait2's nanosecond timeout, timer slack 1 ns) and
//! reads responses as they arrive. It records its own CPU time, so the
//! report can say when the generator, not the server, was the busy one.
//! Three designs were measured and dropped:
//! - monoio tasks: its timer has a 1 ms wheel, so requests left in
//!   bursts, and with tasks spinning to their time its I/O went unseen
//!   until every connection waited on a read. The measured p50 was about
//!   a connection's whole interval (7/8 of it with 8 connections).
//! - a thread per connection: 32 threads taking turns on one CPU made
//!   the generator itself late by 2.5-5.7 ms at p99.9, with four times
//!   the context switches of this loop for the same requests.
//! - spinning for the last 20 us before a due time: on this nested VM
//!   the spinning vCPU was taken away for tens of milliseconds, and
//!   p99.9 grew from a few ms to 35-90 ms.

use crate::load::{parse_head, LoadResult, LoadSpec};
use rustix::buffer::spare_capacity;
use rustix::event::{epoll, Timespec};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroU64;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// A response slower than this counts as an error (and its connection is
/// dropped), so a dead server ends the run instead of hanging it.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `spec` open loop at `rate` requests per second.
pub fn run(spec: &LoadSpec, rate: f64) -> std::io::Result<LoadResult> {
    let spec = spec.clone();
    std::thread::Builder::new()
        .name("trove-openloop".into())
        .spawn(move || {
            let _ = monoio::utils::bind_to_cpu_set([spec.cpu]);
            let _ = rustix::thread::set_current_timer_slack(NonZeroU64::new(1));
            Generator::new(&spec, rate)?.drive()
        })?
        .join()
        .map_err(|_| std::io::Error::other("the open-loop generator panicked"))?
}

/// One keep-alive connection and the request it carries, if any.
struct Conn {
    stream: Option<TcpStream>,
    busy: Option<Exchange>,
}

/// A request sent and its response so far.
struct Exchange {
    due: Instant,
    sent: Instant,
    head: Vec<u8>,
    /// Body bytes still to come, once the head is parsed.
    remaining: Option<u64>,
    body_len: u64,
}

struct Generator {
    addr: SocketAddr,
    request: Vec<u8>,
    epoll: rustix::fd::OwnedFd,
    conns: Vec<Conn>,
    /// Connections with no request in flight.
    free: Vec<usize>,
    start: Instant,
    interval: Duration,
    total: u64,
    out: LoadResult,
}

impl Generator {
    fn new(spec: &LoadSpec, rate: f64) -> std::io::Result<Generator> {
        let n = spec.connections.max(1);
        Ok(Generator {
            addr: spec.addr,
            request: format!("GET {} HTTP/1.1\r\nHost: bench\r\n\r\n", spec.path).into_bytes(),
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            conns: (0..n).map(|_| Conn { stream: None, busy: None }).collect(),
            free: (0..n).rev().collect(),
            start: Instant::now() + Duration::from_millis(50),
            interval: Duration::from_secs_f64(1.0 / rate),
            total: (rate * spec.duration.as_secs_f64()).ceil() as u64,
            out: LoadResult::empty(spec.duration)?,
        })
    }

    fn drive(mut self) -> std::io::Result<LoadResult> {
        let cpu_start = thread_cpu();
        let mut next = 0u64;
        let mut events = Vec::with_capacity(self.conns.len());
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let now = Instant::now();
            while next < self.total && self.due(next) <= now {
                let Some(c) = self.free.pop() else { break };
                self.send(c, self.due(next));
                next += 1;
            }
            if next >= self.total && self.free.len() == self.conns.len() {
                self.out.generator_cpu = thread_cpu().saturating_sub(cpu_start);
                return Ok(self.out);
            }
            self.expire(now);
            // Sleep until the next request is due (only if a connection is
            // free to carry it) or a response arrives.
            let wait = match (next < self.total, self.free.is_empty()) {
                (true, false) => self.due(next).saturating_duration_since(Instant::now()),
                _ => Duration::from_millis(100),
            };
            let timeout = Timespec::try_from(wait).map_err(std::io::Error::other)?;
            match epoll::wait(&self.epoll, spare_capacity(&mut events), Some(&timeout)) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            for ev in events.drain(..) {
                self.on_readable(ev.data.u64() as usize, &mut buf);
            }
        }
    }

    fn due(&self, i: u64) -> Instant {
        self.start + self.interval.mul_f64(i as f64)
    }

    /// Sends the request due at `due` on connection `c`, connecting first
    /// if it has no stream; a failure counts as an error and uses the
    /// request up, as a real client's would.
    fn send(&mut self, c: usize, due: Instant) {
        let _ = self.out.send_lag_us.record(micros(due.elapsed()));
        let sent = Instant::now();
        self.conns[c].busy = Some(Exchange { due, sent, head: Vec::new(), remaining: None, body_len: 0 });
        if self.conns[c].stream.is_none() {
            let watched = self.connect().and_then(|s| {
                epoll::add(&self.epoll, s.as_fd(), epoll::EventData::new_u64(c as u64), epoll::EventFlags::IN)?;
                Ok(s)
            });
            match watched {
                Ok(s) => self.conns[c].stream = Some(s),
                Err(_) => return self.fail(c),
            }
        }
        // A request of a few dozen bytes on an idle keep-alive connection
        // fits its empty send buffer; a short write means the server is
        // not reading, which is an error like any other.
        let stream = self.conns[c].stream.as_mut().expect("connected above");
        if !matches!(stream.write(&self.request), Ok(n) if n == self.request.len()) {
            self.fail(c);
        }
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        let s = TcpStream::connect(self.addr)?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        Ok(s)
    }

    /// Reads what connection `c` has; completes its exchange when the
    /// whole body is in.
    fn on_readable(&mut self, c: usize, buf: &mut [u8]) {
        loop {
            let Some(stream) = self.conns[c].stream.as_mut() else { return };
            let n = match stream.read(buf) {
                Ok(0) => return self.fail(c),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return self.fail(c),
            };
            let Some(x) = self.conns[c].busy.as_mut() else {
                // Bytes nobody asked for: the server broke the protocol.
                return self.fail(c);
            };
            let remaining = match x.remaining {
                Some(r) => r.saturating_sub(n as u64),
                None => {
                    x.head.extend_from_slice(&buf[..n]);
                    match parse_head(&x.head) {
                        Ok(None) => continue,
                        Ok(Some((head_len, body_len))) => {
                            x.body_len = body_len;
                            body_len.saturating_sub((x.head.len() - head_len) as u64)
                        }
                        Err(_) => return self.fail(c),
                    }
                }
            };
            x.remaining = Some(remaining);
            if remaining == 0 {
                let (due, sent, body) = (x.due, x.sent, x.body_len);
                self.conns[c].busy = None;
                let _ = self.out.latency_us.record(micros(due.elapsed()));
                let _ = self.out.service_us.record(micros(sent.elapsed()));
                self.out.requests += 1;
                self.out.bytes += body;
                self.free.push(c);
                return;
            }
        }
    }

    /// Fails every exchange that has waited longer than RESPONSE_TIMEOUT.
    fn expire(&mut self, now: Instant) {
        for c in 0..self.conns.len() {
            if self.conns[c].busy.as_ref().is_some_and(|x| now.saturating_duration_since(x.due) > RESPONSE_TIMEOUT) {
                self.fail(c);
            }
        }
    }

    /// Drops connection `c`'s stream (the next request reconnects) and
    /// frees it; the request it carried, if any, counts as an error. An
    /// idle connection the server closed costs nothing.
    fn fail(&mut self, c: usize) {
        if let Some(s) = self.conns[c].stream.take() {
            let _ = epoll::delete(&self.epoll, s.as_fd());
        }
        if self.conns[c].busy.take().is_some() {
            self.out.errors += 1;
            self.free.push(c);
        }
    }
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 120_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;

    const BODY: &str = "0123456789abcdef";

    /// A real HTTP/1.1 keep-alive server on a thread per connection:
    /// `answer(n)` for the n-th request overall says how long to wait and
    /// whether to answer at all (false: close the connection).
    fn server(answer: impl Fn(u64) -> (Duration, bool) + Send + Sync + 'static) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = l.local_addr().expect("its address");
        let answer = std::sync::Arc::new(answer);
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (answer, count) = (answer.clone(), count.clone());
                std::thread::spawn(move || {
                    let Ok(read_half) = s.try_clone() else { return };
                    let mut r = std::io::BufReader::new(read_half);
                    let mut s = s;
                    loop {
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if r.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let (wait, ok) = answer(count.fetch_add(1, Ordering::Relaxed));
                        std::thread::sleep(wait);
                        if !ok {
                            return;
                        }
                        // One write: head and body apart would meet Nagle and
                        // the client's delayed ACK (40 ms a response).
                        let mut response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BODY.len());
                        response.push_str(BODY);
                        if s.write_all(response.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    use std::sync::atomic::Ordering;

    fn spec(addr: SocketAddr, connections: usize, millis: u64) -> LoadSpec {
        LoadSpec { addr, path: "/x".into(), connections, duration: Duration::from_millis(millis), rate: None, cpu: 0 }
    }

    #[test]
    fn every_due_request_is_sent_once_and_answered() {
        let addr = server(|_| (Duration::ZERO, true));
        let r = run(&spec(addr, 4, 500), 2000.0).expect("the run");
        assert_eq!((r.requests, r.errors), (1000, 0));
        assert_eq!(r.bytes, 1000 * BODY.len() as u64);
        assert_eq!(r.latency_us.len(), 1000);
        assert_eq!(r.service_us.len(), 1000);
        assert!(r.generator_cpu > Duration::ZERO);
    }

    #[test]
    fn a_stalled_response_is_charged_to_every_request_it_delayed() {
        // One connection at 1000 req/s; the 100th response takes 200 ms.
        // Measured from send, one request is slow; from due time (CO
        // corrected), the ~200 requests that fell due behind it are too.
        let addr = server(|n| (if n == 100 { Duration::from_millis(200) } else { Duration::ZERO }, true));
        let r = run(&spec(addr, 1, 1000), 1000.0).expect("the run");
        assert_eq!((r.requests, r.errors), (1000, 0));
        let slow = |h: &hdrhistogram::Histogram<u64>| {
            h.iter_recorded().filter(|v| v.value_iterated_to() >= 50_000).map(|v| v.count_at_value()).sum::<u64>()
        };
        assert!(slow(&r.service_us) <= 2, "service time counts only the stalled request");
        assert!(slow(&r.latency_us) >= 100, "CO correction charges the requests queued behind the stall");
    }

    #[test]
    fn a_server_that_hangs_up_costs_errors_and_the_run_still_ends() {
        // Every 5th request gets its connection closed instead of an
        // answer; the generator reconnects and goes on.
        let addr = server(|n| (Duration::ZERO, n % 5 != 4));
        let r = run(&spec(addr, 2, 500), 1000.0).expect("the run");
        assert!(r.errors >= 50, "hang-ups counted: {}", r.errors);
        assert_eq!(r.requests + r.errors, 500);
        assert!(r.requests >= 350);
    }
}
