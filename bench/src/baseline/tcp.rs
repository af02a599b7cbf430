//! The loopback TCP ceiling: one sender writing 1 MiB buffers to one
//! receiver for a fixed time, each on its own pinned CPU.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Bytes per second over one loopback TCP connection.
pub fn loopback_ceiling(duration: Duration, sender_cpu: usize, receiver_cpu: usize) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let _ = monoio::utils::bind_to_cpu_set([sender_cpu]);
        let (mut s, _) = listener.accept()?;
        let buf = vec![0x42u8; 1 << 20];
        let end = Instant::now() + duration;
        while Instant::now() < end {
            if s.write_all(&buf).is_err() {
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
