//! Long GETs whose client stops reading until the node finds the socket
//! full, again and again: from a file still landing from S3 (O_DIRECT
//! reads as it lands) and from the local file (checked page-cache units
//! sent with sendfile). Every stream must resume at once when the client
//! reads again and end whole and correct. This is the regression test of
//! the stall that got the first sendfile path reverted: a unit checked on
//! another thread whose wake reached the shard late, or never, while the
//! socket sat empty.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// How long a stream may take to go on once its client reads again.
const RESUME_WITHIN: Duration = Duration::from_secs(20);

/// The median time, over a stream's pauses, to read the next `step` bytes
/// once the client reads again. A stream whose wake is lost goes on only
/// at the connection's next deadline tick (1 s); one woken at once takes
/// milliseconds.
const RESUME_MEDIAN_MAX: Duration = Duration::from_millis(300);

fn socket_full_waits(node: &Node) -> u64 {
    node.stats()["send"]["sends_socket_full"].as_u64().expect("send.sends_socket_full")
}

/// Bytes a pause leaves at least still to come: more than the node's
/// socket buffer holds (tcp_wmem's 4 MiB at most), so the node's writes
/// must find it full.
const PAUSE_ROOM: usize = 12 << 20;

/// GETs `path` on a small receive buffer, stopping after every `step`
/// bytes (while at least PAUSE_ROOM are still to come) until the node has
/// found the socket full once more; returns the body and, per pause, the
/// time the next `step` bytes took once the client read again.
fn paused_get(node: &Node, path: &str, len: usize, step: usize) -> (Vec<u8>, Vec<Duration>) {
    let mut s = TcpStream::connect(("127.0.0.1", node.port)).expect("connect");
    rustix::net::sockopt::set_socket_recv_buffer_size(s.as_fd(), 64 * 1024).expect("SO_RCVBUF");
    s.set_read_timeout(Some(RESUME_WITHIN)).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").expect("send");
    let mut all = Vec::new();
    // The body's length, plus a head of at most 1 KiB.
    let total = len + 1024;
    let mut buf = vec![0u8; 256 * 1024];
    let mut since_pause = 0usize;
    let mut resumes: Vec<Duration> = Vec::new();
    let mut resumed: Option<Instant> = None;
    loop {
        let before = socket_full_waits(node);
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e) => panic!("the stream stalled after {} bytes ({} pauses): {e}", all.len(), resumes.len()),
        };
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
        since_pause += n;
        if since_pause < step {
            continue;
        }
        if let Some(at) = resumed.take() {
            resumes.push(at.elapsed());
        }
        since_pause = 0;
        if all.len() + PAUSE_ROOM < total {
            // Not reading: the node's socket fills, and its next write waits.
            wait_until("the node to find the socket full", RESUME_WITHIN, || socket_full_waits(node) > before);
            resumed = Some(Instant::now());
        }
    }
    let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let head = String::from_utf8_lossy(&all[..head_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    (all.split_off(head_end), resumes)
}

/// Asserts a stream paused often enough and went on at once after each
/// pause (by the median, so one slow moment of a busy host is no failure).
fn assert_resumed_at_once(what: &str, mut resumes: Vec<Duration>) {
    assert!(resumes.len() >= 6, "{what}: the client paused only {} times", resumes.len());
    resumes.sort();
    let median = resumes[resumes.len() / 2];
    assert!(
        median < RESUME_MEDIAN_MAX,
        "{what}: after a pause the stream went on only after {median:?} (median; all {resumes:?})"
    );
}

#[test]
fn a_stream_that_finds_the_socket_full_resumes_from_a_landing_and_a_local_file() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut flags = s3.flags();
    flags.extend(["--shards", "1"].map(String::from));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let writer = Node::start(&dir.path().join("a"), &flags);
    let big = bytes(31, 96 << 20);
    assert_eq!(put(&writer.object_url("ns", "big"), big.clone()).status, 201);

    // A node with an empty disk: the first GET streams the file as it
    // lands from S3.
    let reader = Node::start(&dir.path().join("b"), &flags);
    let (body, resumes) = paused_get(&reader, "/api/v1/object/ns/big", big.len(), 8 << 20);
    assert!(body == big, "the landing stream's bytes ({} of {})", body.len(), big.len());
    assert_resumed_at_once("landing from S3", resumes);
    assert_eq!(reader.stats()["tiers"]["remote"]["hits"], 1);

    // Once committed, the local file: sendfile from checked units.
    wait_until("the local copy to be committed", Duration::from_secs(30), || {
        reader.stats()["tiers"]["local"]["objects"] == 1
    });
    let sent_before = reader.stats()["send"]["sendfile_bytes"].as_u64().expect("sendfile_bytes");
    let (body, resumes) = paused_get(&reader, "/api/v1/object/ns/big", big.len(), 8 << 20);
    assert!(body == big, "the local stream's bytes ({} of {})", body.len(), big.len());
    assert_resumed_at_once("the local file", resumes);
    let sent = reader.stats()["send"]["sendfile_bytes"].as_u64().expect("sendfile_bytes") - sent_before;
    assert!(sent > (80 << 20), "the local stream went out with sendfile: {sent} bytes");
    // Many at once, each pausing: streams of one shard share its mapper.
    std::thread::scope(|s| {
        let clients: Vec<_> =
            (0..4).map(|_| s.spawn(|| paused_get(&reader, "/api/v1/object/ns/big", big.len(), 8 << 20).0)).collect();
        for c in clients {
            assert!(c.join().expect("client") == big, "a concurrent stream's bytes");
        }
    });
}
