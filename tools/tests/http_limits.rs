//! Limits: header and body size, idle clients, many idle connections.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn oversized_heads_and_bodies_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("data"), &["--max-object-size", "1M"]);
    let big_header = "x".repeat(20_000);
    let r = http("GET", &node.object_url("ns", "k"), &[("X-Big", big_header.as_str())], vec![]);
    assert_eq!(r.status, 431);

    let r = put(&node.object_url("ns", "big"), bytes(1, 1_048_577));
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["code"], "too_large");
    // Chunked, so the size is only known while streaming.
    let file = dir.path().join("big.bin");
    std::fs::write(&file, bytes(1, 3_000_000)).expect("write");
    let out = curl(&[
        "-s",
        "-o",
        "-",
        "-w",
        "%{http_code}",
        "-X",
        "PUT",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &format!("@{}", file.display()),
        &node.object_url("ns", "big"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("413"), "{text}");
    assert!(text.contains("too_large"), "{text}");
    assert_eq!(get(&node.object_url("ns", "big")).status, 404);
    assert_eq!(put(&node.object_url("ns", "ok"), bytes(1, 1_048_576)).status, 201);
    assert_eq!(tmp_files(&dir.path().join("data"), 0), 0, "refused uploads leave no tmp file");
}

#[test]
fn silent_clients_are_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("data"), &["--idle-timeout", "1s"]);
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", node.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server must close, not answer");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "closed after {waited:?}");
    // Half a request head, then silence: also cut off.
    let out = raw(node.port, b"GET /_liveness HTTP/1.1\r\nHost:", Duration::from_secs(10));
    assert!(
        out.is_empty() || String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn a_thousand_idle_connections_do_not_block_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("data"), &[]);
    put(&node.object_url("ns", "k"), bytes(9, 4096));
    raise_fd_limit();
    let idle: Vec<TcpStream> =
        (0..1000).map(|_| TcpStream::connect(("127.0.0.1", node.port)).expect("connect")).collect();
    let started = Instant::now();
    for _ in 0..20 {
        let r = get(&node.object_url("ns", "k"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, bytes(9, 4096));
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "20 GETs took {:?} beside 1000 idle connections",
        started.elapsed()
    );
    drop(idle);
}

fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let _ = setrlimit(Resource::Nofile, Rlimit { current: lim.maximum, maximum: lim.maximum });
}

/// The node's peak resident memory so far (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    proc_status_bytes(pid, "VmHWM")
}

/// `n` upload-pack POSTs of `body` to `url` at once, answered in order.
fn upload_packs_at_once(url: &str, body: &[u8], n: usize) -> Vec<Resp> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    http("POST", url, &[("Content-Type", "application/x-git-upload-pack-request")], body.to_vec())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    })
}

/// An upstream under `dir`, a node of 2 shards with `--body-memory
/// body_memory` in front of it with its mirror made, and the repo's URL on
/// the node.
fn mirrored_node(dir: &std::path::Path, body_memory: &str) -> (crate::git::Upstream, Node, String) {
    use crate::git::{node_for, repo_url, Upstream};
    let up = Upstream::new(dir);
    let node = node_for(dir, &up, &["--body-memory", body_memory, "--shards", "2"]);
    let base = repo_url(&node);
    assert_eq!(get(&format!("{base}/info/refs?service=git-upload-pack")).status, 200);
    (up, node, base)
}

#[test]
fn buffered_upload_pack_bodies_are_bounded_node_wide() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_up, node, base) = mirrored_node(dir.path(), "64M");
    let before = peak_rss(node.pid());
    // Ten 12 MB want sections at once (what the node must hold before it
    // can admit a request): it could hold one alone (in 45 MB), not two.
    // One it holds then needs more to look its wants up than the budget
    // (413, see below); the others find the budget taken (503).
    let body = distinct_wants(12 << 20);
    let url = format!("{base}/git-upload-pack");
    let statuses: Vec<u16> = upload_packs_at_once(&url, &body, 10).iter().map(|r| r.status).collect();
    assert!(statuses.contains(&503), "past the budget, 503: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 503 || *s == 413 || *s == 0), "{statuses:?}");
    // The budget bounds what is held at once. Peak RSS also counts what
    // the allocator keeps: each of the node's 2 shard threads allocates
    // from an arena of its own, which keeps its own high-water mark, so a
    // body freed on one shard does not make room for one on the other
    // (96 MB seen once, in a full suite run). Beyond that, connection
    // buffers are small.
    let grew = peak_rss(node.pid()).saturating_sub(before);
    assert!(grew < (2 * 64 + 16) << 20, "the node's peak memory grew by {} MB for a 64 MB budget", grew >> 20);
    assert_eq!(get(&format!("{base}/info/refs?service=git-upload-pack")).status, 200, "and it serves on");
}

/// A want section of about `len` bytes, every want a different object, so
/// none is cheaper to hold or look up than another.
fn distinct_wants(len: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(len + 64);
    for i in 0u64.. {
        if body.len() >= len {
            break;
        }
        body.extend_from_slice(format!("0032want {i:040x}\n").as_bytes());
    }
    body
}

#[test]
fn wants_the_budget_cannot_look_up_are_refused_before_the_lookup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_up, node, base) = mirrored_node(dir.path(), "64M");
    let before = peak_rss(node.pid());
    // 250 000 wants: held, they fit 64 MB; looked up in the mirror (and
    // again after a fetch for the ones it lacks) they would not.
    let r = http(
        "POST",
        &format!("{base}/git-upload-pack"),
        &[("Content-Type", "application/x-git-upload-pack-request")],
        distinct_wants(250_000 * 50),
    );
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["code"], "body_too_large");
    assert!(String::from_utf8_lossy(&r.body).contains("--body-memory"), "it says what to raise");
    let grew = peak_rss(node.pid()).saturating_sub(before);
    assert!(grew < 80 << 20, "the node's peak memory grew by {} MB for a 64 MB budget", grew >> 20);
    assert_eq!(get(&format!("{base}/info/refs?service=git-upload-pack")).status, 200, "and it serves on");
}

#[test]
fn a_fetch_with_a_huge_have_list_streams_into_upload_pack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (up, node, base) = mirrored_node(dir.path(), "16M");
    let head = crate::git::git(&up.work, &["rev-parse", "HEAD"]);
    let before = peak_rss(node.pid());
    // A fetch whose negotiation names 12 MB of commits the mirror lacks:
    // past its wants it need not be held, so ten at once fit a 16 MB budget.
    let mut body = format!("0032want {head}\n0000").into_bytes();
    let mut n: u64 = 0;
    while body.len() < 12 << 20 {
        n += 1;
        body.extend_from_slice(format!("0032have {:040x}\n", n).as_bytes());
    }
    body.extend_from_slice(b"0009done\n");
    let url = format!("{base}/git-upload-pack");
    let answers = upload_packs_at_once(&url, &body, 10);
    for r in &answers {
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body[..r.body.len().min(300)]));
        assert!(r.body.windows(4).any(|w| w == b"PACK"), "a pack came back");
    }
    let grew = peak_rss(node.pid()).saturating_sub(before);
    assert!(grew < 60 << 20, "the node's peak memory grew by {} MB for 120 MB of bodies", grew >> 20);
}

/// `pid`'s anonymous resident memory (heap, not mapped files), in bytes.
fn rss_anon(pid: u32) -> u64 {
    proc_status_bytes(pid, "RssAnon")
}

/// Samples `pid`'s anonymous resident memory (heap, not the mirror's
/// mapped pack files) until dropped; `max()` is the highest seen.
struct AnonPeak {
    max: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AnonPeak {
    fn start(pid: u32) -> AnonPeak {
        use std::sync::atomic::Ordering;
        let max = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (m, s) = (max.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                m.fetch_max(rss_anon(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        AnonPeak { max, stop, thread: Some(thread) }
    }

    fn max(&self) -> u64 {
        self.max.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for AnonPeak {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn slow_readers_of_large_blobs_are_bounded_node_wide() {
    const BIG: usize = 40 << 20;
    use crate::git::{git, node_for, repo_url, Upstream};
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::new(dir.path());
    // Over 16 MiB, so it streams in chunks; the old code read it whole.
    std::fs::write(up.work.join("big.bin"), bytes(77, BIG)).expect("write");
    git(&up.work, &["add", "big.bin"]);
    git(&up.work, &["commit", "-qm", "a 40 MiB asset"]);
    git(&up.work, &["push", "-q", up.bare().to_str().expect("utf8"), "HEAD:main"]);
    let big = git(&up.work, &["rev-parse", "HEAD:big.bin"]);
    let node = node_for(dir.path(), &up, &["--blob-memory", "64M", "--shards", "2"]);
    let base = repo_url(&node);
    assert_eq!(get(&format!("{base}/tree?ref=main")).status, 200, "the mirror is made");
    let idle_anon = rss_anon(node.pid());
    let peak = AnonPeak::start(node.pid());

    // Sixteen clients ask for the blob and never read.
    raise_fd_limit();
    let request = format!(
        "POST /git/example.test/org/repo/blobs HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{big}\n",
        big.len() + 1
    );
    let slow: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", node.port)).expect("connect");
            s.write_all(request.as_bytes()).expect("request");
            s
        })
        .collect();
    // Once they hold the budget, a new request is told at once to come
    // back. (Each probe reads only the answer's head: one admitted earlier
    // would otherwise wait for room behind the sixteen.)
    wait_until("a blobs request to get 503 while the budget is held", Duration::from_secs(60), || {
        let mut probe = TcpStream::connect(("127.0.0.1", node.port)).expect("connect");
        probe.write_all(request.as_bytes()).expect("request");
        let mut head = [0u8; 256];
        let n = probe.read(&mut head).unwrap_or(0);
        let head = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
        head.starts_with("http/1.1 503") && head.contains("retry-after")
    });
    let t = Instant::now();
    assert_eq!(get(&node.url("/_liveness")).status, 200, "liveness answers");
    assert!(t.elapsed() < Duration::from_secs(2), "at once: {:?}", t.elapsed());
    // The budget bounds the blob bytes held; each stream's reader thread
    // also holds what is not charged (inflate state, its allocator arena):
    // 88-100 MB in all alone, up to 135 MB with the whole suite running.
    // Before the budget the node read the blob whole per stream: 16 x 40 MB.
    let grew = peak.max().saturating_sub(idle_anon);
    assert!(grew < 3 * (64 << 20), "the node's heap grew by {} MB for a 64 MB blob budget", grew >> 20);
    drop(slow);
    // A reader that does read gets the whole blob once the others are gone.
    wait_until("a full read of the blob", Duration::from_secs(60), || {
        let r = http("POST", &format!("{base}/blobs"), &[], format!("{big}\n").into_bytes());
        r.status == 200 && r.body.len() == 29 + BIG + 29
    });
}

#[test]
fn puts_in_flight_never_run_the_node_out_of_descriptors() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 4096 descriptors: the cap used to let 2048 connections in, and 2048
    // PUTs in flight (a socket and a tmp file each) took them all.
    let node = Node::start_with_nofile(&dir.path().join("data"), &["--head-timeout", "120s", "--shards", "2"], 4096);
    raise_fd_limit();
    let body = bytes(5, 64 << 10);
    let mut puts: Vec<TcpStream> = Vec::new();
    for i in 0..2300 {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", node.port)) else { break };
        let head = format!("PUT /api/v1/object/ns/k{i} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len());
        if s.write_all(head.as_bytes()).and_then(|()| s.write_all(&body[..1024])).is_ok() {
            puts.push(s);
        }
    }
    // Health answers under this load, at once, every time.
    for _ in 0..5 {
        let t = Instant::now();
        let r = get(&node.url("/_liveness"));
        assert_eq!(r.status, 200, "liveness after {:?}", t.elapsed());
        assert!(t.elapsed() < Duration::from_secs(2), "liveness took {:?}", t.elapsed());
        assert_eq!(get(&node.url("/_readiness")).status, 200);
    }
    assert!(!node.log_text().contains("Too many open files"), "{}", node.log_text());
    // The first PUTs finish, and what the node acknowledged is there.
    let mut acknowledged = Vec::new();
    for (i, s) in puts.iter_mut().enumerate().take(20) {
        s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        if s.write_all(&body[1024..]).is_err() {
            continue;
        }
        let mut answer = [0u8; 12];
        if s.read_exact(&mut answer).is_ok() && (answer.starts_with(b"HTTP/1.1 20")) {
            acknowledged.push(i);
        }
    }
    assert!(acknowledged.len() >= 10, "the first PUTs were served: {acknowledged:?}");
    // Once the other PUTs are gone, their places serve reads again.
    drop(puts);
    for i in acknowledged {
        let url = node.object_url("ns", &format!("k{i}"));
        wait_until("the node to serve reads again", Duration::from_secs(30), || get(&url).status != 503);
        let r = get(&url);
        assert_eq!((r.status, r.body == body), (200, true), "k{i}");
    }
}
