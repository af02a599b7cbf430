//! Refusing a listen address another process already listens on.
//!
//! The shards bind with SO_REUSEPORT, which the kernel grants to any
//! process of the same user: without this check a second node on the same
//! port starts and silently takes half of the first one's connections.
//! A probe bind cannot tell a live listener from the closing connections a
//! crashed node leaves behind (those must not stop a restart), so this
//! reads the kernel's socket table instead: only a socket in LISTEN state
//! on the same port, at the same or a wildcard address, counts. Such a
//! socket may also outlive a node killed a moment ago (its io_uring ring,
//! which holds the socket, is torn down after the process is gone), so a
//! listener is waited for, briefly, before the start is refused.

use anyhow::{bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// TCP state LISTEN in /proc/net/tcp{,6}.
const TCP_LISTEN: &str = "0A";
/// How long a listener may take to go away before the start is refused.
const RELEASE_GRACE: Duration = Duration::from_secs(5);
const RELEASE_POLL: Duration = Duration::from_millis(50);

pub fn refuse_a_taken_address(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + RELEASE_GRACE;
    let mut said = false;
    while let Some(held) = listener_on(addr) {
        if Instant::now() >= deadline {
            bail!("{addr} is already in use: another process (another trove node?) listens on {held}; stop it or pick a free --listen address");
        }
        if !said {
            tracing::info!(%addr, %held, grace = ?RELEASE_GRACE, "the listen address is taken; waiting for it to be released");
            said = true;
        }
        std::thread::sleep(RELEASE_POLL);
    }
    // Not listened on: what remains (a bad address, no permission) the
    // bind itself reports; a quick plain bind says it before any shard starts.
    if let Err(e) = std::net::TcpListener::bind(addr) {
        if e.kind() != std::io::ErrorKind::AddrInUse {
            return Err(e).with_context(|| format!("cannot listen on {addr}; check --listen"));
        }
    }
    Ok(())
}

/// A socket listening where `addr` would: same port, same or wildcard address.
fn listener_on(addr: SocketAddr) -> Option<SocketAddr> {
    let mut listeners = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        // A kernel without IPv6 has no tcp6 table.
        if let Ok(text) = std::fs::read_to_string(table) {
            listeners.extend(listening(&text));
        }
    }
    listeners
        .into_iter()
        .find(|(ip, port)| {
            *port == addr.port() && (*ip == addr.ip() || ip.is_unspecified() || addr.ip().is_unspecified())
        })
        .map(|(ip, port)| SocketAddr::new(ip, port))
}

/// The listening sockets in one /proc/net/tcp-format table.
fn listening(table: &str) -> Vec<(IpAddr, u16)> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != TCP_LISTEN {
                return None;
            }
            let (ip, port) = local.split_once(':')?;
            Some((parse_ip(ip)?, u16::from_str_radix(port, 16).ok()?))
        })
        .collect()
}

/// The kernel prints an address as 32-bit words in host order (%08X each).
fn parse_ip(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| hex.get(i * 8..i * 8 + 8).and_then(|w| u32::from_str_radix(w, 16).ok());
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?.to_ne_bytes()))),
        32 => {
            let mut octets = [0u8; 16];
            for i in 0..4 {
                octets[i * 4..i * 4 + 4].copy_from_slice(&word(i)?.to_ne_bytes());
            }
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listeners_from_the_kernel_table() {
        let table =
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
   1: 0100007F:1F91 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n\
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1\n";
        let got = listening(table);
        assert_eq!(got, vec![(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080), (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 22)]);
        assert_eq!(parse_ip("00000000000000000000000001000000"), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(parse_ip("xyz"), None);
    }
}
