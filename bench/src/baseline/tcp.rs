//! The loopback TCP ceiling: one sender to one receiver for a fixed time,
//! each on its own pinned CPU, sending two ways: `write()` of 1 MiB
//! buffers (a copy into the socket, what a server sending from user
//! memory pays), and `sendfile` of a page-cached file (std's `io::copy`
//! from a file to a socket, no copy: what nginx and trove's long reads
//! pay). The ceiling is the faster of the two.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The two ways' rates, bytes per second.
pub struct TcpCeiling {
    pub write_bps: f64,
    pub sendfile_bps: f64,
}

impl TcpCeiling {
    pub fn best(&self) -> f64 {
        self.write_bps.max(self.sendfile_bps)
    }
}

/// Both ways over one loopback connection each; `file` (read once first,
/// so it is page-cached) is what sendfile sends, over and over.
pub fn loopback_ceiling(
    duration: Duration,
    file: &Path,
    sender_cpu: usize,
    receiver_cpu: usize,
) -> anyhow::Result<TcpCeiling> {
    let _ = std::fs::read(file)?;
    let write_bps = one_way(duration, None, sender_cpu, receiver_cpu)?;
    let sendfile_bps = one_way(duration, Some(file.to_owned()), sender_cpu, receiver_cpu)?;
    Ok(TcpCeiling { write_bps, sendfile_bps })
}

fn one_way(duration: Duration, file: Option<PathBuf>, sender_cpu: usize, receiver_cpu: usize) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let _ = monoio::utils::bind_to_cpu_set([sender_cpu]);
        let (mut s, _) = listener.accept()?;
        let buf = vec![0x42u8; 1 << 20];
        let end = Instant::now() + duration;
        while Instant::now() < end {
            let sent = match &file {
                // std sends a file to a socket with sendfile(2).
                Some(f) => std::io::copy(&mut std::fs::File::open(f)?, &mut s).map(|_| ()),
                None => s.write_all(&buf),
            };
            if sent.is_err() {
                break;
            }
        }
        Ok(())
    });
    let _ = monoio::utils::bind_to_cpu_set([receiver_cpu]);
    let mut c = TcpStream::connect(addr)?;
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut total = 0u64;
    loop {
        match c.read(&mut buf)? {
            0 => break,
            n => total += n as u64,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    sender.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    Ok(total as f64 / secs)
}
