//! What one load run is (`LoadSpec`) and what it measured (`LoadResult`),
//! with the response-head parser both generators use. The closed loop
//! (loadgen.rs) and the open loop (openloop.rs) both build on this file and
//! never on each other.

use hdrhistogram::Histogram;
use std::net::SocketAddr;
use std::time::Duration;

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
    /// How late the generator itself sent each request after its due
    /// time, in microseconds (open loop): the generator's share of
    /// `latency_us`, which must stay far below the server's.
    pub send_lag_us: Histogram<u64>,
    /// From each request's actual send to its last byte, in microseconds
    /// (open loop): the server's share alone, not CO-corrected.
    pub service_us: Histogram<u64>,
    pub requests: u64,
    pub errors: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// CPU time the generator used (open loop; zero where not measured).
    pub generator_cpu: Duration,
}

impl LoadResult {
    /// Nothing measured yet, over `elapsed`.
    pub fn empty(elapsed: Duration) -> std::io::Result<LoadResult> {
        let histogram = || Histogram::new_with_bounds(1, 120_000_000, 3).map_err(std::io::Error::other);
        Ok(LoadResult {
            latency_us: histogram()?,
            send_lag_us: histogram()?,
            service_us: histogram()?,
            requests: 0,
            errors: 0,
            bytes: 0,
            elapsed,
            generator_cpu: Duration::ZERO,
        })
    }

    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The share of one CPU the generator kept busy over the run.
    pub fn generator_busy(&self) -> f64 {
        self.generator_cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }

    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64()
    }
}

/// The head's length and the body's (Content-Length) once `head` holds a
/// whole 2xx response head; None while it is still partial.
pub(crate) fn parse_head(head: &[u8]) -> std::io::Result<Option<(usize, u64)>> {
    let fail = |m: &str| std::io::Error::other(m.to_owned());
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(len)) => {
            if resp.code != Some(200) && resp.code != Some(206) {
                return Err(fail("non-2xx status"));
            }
            let body = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            body.map(|b| Some((len, b))).ok_or_else(|| fail("no content-length"))
        }
        Ok(httparse::Status::Partial) if head.len() < 64 * 1024 => Ok(None),
        _ => Err(fail("bad response head")),
    }
}
