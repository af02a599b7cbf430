//! Slow clients cannot take the node off the air: a head sent a byte a
//! second, a body sent a byte a second, and a flood of held connections
//! past the cap, while a normal GET and `/_liveness` keep answering.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Sends `head` whole, then `drip` a byte a second; returns how long the
/// node kept the connection open (until a write fails or a read ends).
fn drip(port: u16, head: &[u8], drip: &[u8]) -> Duration {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(1000))).expect("timeout");
    let started = Instant::now();
    let _ = s.write_all(head);
    for b in drip.iter().cycle() {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(0) => break,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            _ => break,
        }
        if started.elapsed() > Duration::from_secs(40) {
            break;
        }
    }
    started.elapsed()
}

#[test]
fn slow_heads_slow_bodies_and_floods_cannot_take_the_node_off_the_air() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("data"), &["--head-timeout", "2s", "--max-connections", "100"]);
    assert_eq!(put(&node.object_url("ns", "k"), b"hello".to_vec()).status, 201);
    let port = node.port;
    std::thread::scope(|s| {
        let head = s.spawn(|| drip(port, b"GET /_liveness HTTP/1.1\r\nHost: t\r\nX-Slow: ", b"aaaa"));
        let body = s.spawn(|| {
            drip(port, b"PUT /api/v1/object/ns/slow HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n", b"b")
        });
        // 300 connections that send nothing, three times the cap.
        let flood: Vec<TcpStream> = (0..300).filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok()).collect();
        let mut slowest = Duration::ZERO;
        for _ in 0..20 {
            for url in [node.url("/_liveness"), node.object_url("ns", "k")] {
                let started = Instant::now();
                let r = get(&url);
                assert_eq!(r.status, 200, "{url} during the flood");
                slowest = slowest.max(started.elapsed());
            }
        }
        assert!(slowest < Duration::from_millis(100), "the slowest answer during the flood took {slowest:?}");
        drop(flood);
        let (head, body) = (head.join().expect("thread"), body.join().expect("thread"));
        assert!(head < Duration::from_secs(6), "a head sent a byte a second was held {head:?} (bound 2 s)");
        assert!(body < Duration::from_secs(10), "a body sent a byte a second was held {body:?} (2 windows of 2 s)");
    });
    assert_eq!(get(&node.object_url("ns", "slow")).status, 404, "the cut body stored nothing");
    // During the flood the slow head may have been shed to make room (it
    // had waited longest); alone, the head deadline itself must cut it.
    let closed = |node: &Node| -> u64 {
        let stats = node.stats();
        stats["shards"].as_array().expect("shards").iter().map(|s| s["slow_clients_closed"].as_u64().unwrap_or(0)).sum()
    };
    let before = closed(&node);
    let held = drip(port, b"GET /_liveness HTTP/1.1\r\nHost: t\r\nX-Slow: ", b"aaaa");
    assert!(held < Duration::from_secs(6), "a head sent a byte a second was held {held:?} (bound 2 s)");
    assert_eq!(closed(&node), before + 1, "the head deadline cut it");
}
