//! A trove node for a bench run: started as a child process of the same
//! binary (or an existing one, by URL) and loaded over plain HTTP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct BenchNode {
    child: Option<Child>,
    pub addr: SocketAddr,
}

impl BenchNode {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The node's process, if this bench started it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl BenchNode {
    /// Starts `trove serve` with one shard pinned to `cpu`.
    pub fn start(trove: &Path, data_dir: &Path, cpu: usize) -> anyhow::Result<BenchNode> {
        Self::start_with(trove, data_dir, &["--shards", "1", "--first-cpu", &cpu.to_string()])
    }

    /// Starts `trove serve` on a free port with `args`.
    pub fn start_with(trove: &Path, data_dir: &Path, args: &[&str]) -> anyhow::Result<BenchNode> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let child = Command::new(trove)
            .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("TROVE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let node = BenchNode { child: Some(child), addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = request(addr, "GET", "/_readiness", &[]) {
                return Ok(node);
            }
            anyhow::ensure!(Instant::now() < deadline, "the trove node did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Uses a node that is already running at `url` (http://host:port).
    pub fn existing(url: &str) -> anyhow::Result<BenchNode> {
        let hostport = url.trim_start_matches("http://").trim_end_matches('/');
        let addr = hostport.to_socket_addrs()?.next().ok_or_else(|| anyhow::anyhow!("cannot resolve {url}"))?;
        Ok(BenchNode { child: None, addr })
    }

    /// The node's `/api/v1/stats` as JSON.
    pub fn stats(&self) -> anyhow::Result<serde_json::Value> {
        let (status, body) = request(self.addr, "GET", "/api/v1/stats", &[])?;
        anyhow::ensure!(status == 200, "GET /api/v1/stats: {status}");
        Ok(serde_json::from_slice(&body)?)
    }

    pub fn put(&self, path: &str, body: &[u8]) -> anyhow::Result<()> {
        let (status, resp) = request(self.addr, "PUT", path, body)?;
        anyhow::ensure!(status == 201, "PUT {path}: {status} {}", String::from_utf8_lossy(&resp));
        Ok(())
    }
}

impl Drop for BenchNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One HTTP/1.1 request on a fresh connection; returns status and body.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let status = status_of(&resp)?;
    let body_at = resp.windows(4).position(|w| w == b"\r\n\r\n").map_or(resp.len(), |p| p + 4);
    Ok((status, resp[body_at..].to_vec()))
}

/// The status code of a response that starts with `resp`.
fn status_of(resp: &[u8]) -> anyhow::Result<u16> {
    let text = String::from_utf8_lossy(&resp[..resp.len().min(64)]);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| anyhow::anyhow!("bad response: {text}"))
}

/// One request, timed: the status, the time to the first byte of the body
/// (from the request's first byte sent), the bytes received in all, and the
/// time to the last. The body is counted and dropped, so any size fits.
pub struct Timed {
    pub status: u16,
    pub first_byte: Duration,
    pub bytes: u64,
    pub total: Duration,
}

pub fn timed_request(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &[u8]) -> anyhow::Result<Timed> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    s.set_nodelay(true)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let started = Instant::now();
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut head_buf = Vec::new();
    let mut first_byte = None;
    let mut bytes = 0u64;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if first_byte.is_none() {
            head_buf.extend_from_slice(&buf[..n]);
            if let Some(p) = head_buf.windows(4).position(|w| w == b"\r\n\r\n") {
                if head_buf.len() > p + 4 {
                    first_byte = Some(started.elapsed());
                }
            }
        }
        bytes += n as u64;
    }
    let total = started.elapsed();
    let status = status_of(&head_buf)?;
    Ok(Timed { status, first_byte: first_byte.unwrap_or(total), bytes, total })
}

/// Deterministic incompressible bytes (xorshift), fast to make.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Creates `root/name` and returns it as an absolute path: servers started
/// from it (nginx's `-p` prefix) resolve paths against their own roots.
pub fn work_subdir(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let d = root.join(name);
    std::fs::create_dir_all(&d)?;
    Ok(std::fs::canonicalize(&d)?)
}
