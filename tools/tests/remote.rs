//! The S3 tier, with a real SeaweedFS: both tiers on PUT, singleflight on
//! cold reads, S3 outages and recovery.

use crate::harness::*;
use std::net::TcpListener;
use std::time::{Duration, Instant};

fn node_with(s3: &S3, dir: &std::path::Path, extra: &[&str]) -> Node {
    let mut args: Vec<String> = s3.flags();
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Node::start(dir, &refs)
}

#[test]
fn puts_land_in_both_tiers_and_cold_reads_fetch_every_byte_once() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = node_with(&s3, &dir.path().join("a"), &["--shards", "2"]);
    let big = bytes(21, 40 << 20);
    let small = bytes(22, 5000);
    assert_eq!(put(&writer.object_url("ns", "big"), big.clone()).status, 201);
    assert_eq!(put(&writer.object_url("ns", "small"), small.clone()).status, 201);
    let w = writer.stats();
    assert!(w["tiers"]["remote"]["bytes_written"].as_u64().expect("n") > (40 << 20), "{w}");

    // A second node with an empty disk: only S3 has the objects.
    let reader = node_with(&s3, &dir.path().join("b"), &["--shards", "2"]);
    let started = Instant::now();
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let url = reader.object_url("ns", "big");
            std::thread::spawn(move || get(&url))
        })
        .collect();
    let mut tiers = Vec::new();
    for c in clients {
        let r = c.join().expect("client");
        assert_eq!(r.status, 200);
        assert!(r.body == big, "all 32 clients get identical, correct bytes");
        tiers.push(r.header("x-trove-tier").unwrap_or("").to_owned());
    }
    assert!(tiers.iter().all(|t| t == "remote" || t == "local"), "{tiers:?}");
    let s = reader.stats();
    let remote = &s["tiers"]["remote"];
    // The sealed object in S3: 40 MiB of data plus a 4 KiB trailer.
    let file_len = (40u64 << 20) + 4096;
    assert_eq!(remote["bytes_read"].as_u64(), Some(file_len), "every byte fetched once: {remote}");
    // One tail GET, a first 1 MiB range, then non-overlapping 8 MiB ranges
    // over the rest.
    let expected_gets = 2 + (file_len - 65536 - (1 << 20)).div_ceil(8 << 20);
    assert_eq!(remote["get_requests"].as_u64(), Some(expected_gets), "{remote}");
    assert_eq!(remote["hits"], 1);
    eprintln!("32 cold clients of 40 MiB in {:?}", started.elapsed());

    // Now local on the reader, once the landed copy is verified and
    // committed (the clients did not wait for that).
    wait_until("the local copy to be committed", Duration::from_secs(30), || {
        reader.stats()["tiers"]["local"]["objects"] == 1
    });
    let again = get(&reader.object_url("ns", "big"));
    assert_eq!(again.header("x-trove-tier"), Some("local"));
    let sm = get(&reader.object_url("ns", "small"));
    assert_eq!((sm.status, sm.body == small), (200, true));
    assert_eq!(get(&reader.object_url("ns", "absent")).status, 404);
    assert_eq!(reader.stats()["tiers"]["remote"]["misses"], 1);

    // DELETE removes it from S3 too.
    assert_eq!(http("DELETE", &writer.object_url("ns", "small"), &[], vec![]).status, 204);
    let third = node_with(&s3, &dir.path().join("c"), &[]);
    assert_eq!(get(&third.object_url("ns", "small")).status, 404);
}

/// A local copy found corrupt is dropped by its owner before the second
/// look, so the same request is answered from S3.
#[test]
fn a_corrupt_local_copy_is_answered_from_s3() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("a");
    let node = node_with(&s3, &data, &["--shards", "2"]);
    // Several objects, so that some are read on their owner's shard and
    // some on the other one.
    for i in 0..6u64 {
        let (key, body) = (format!("k{i}"), bytes(40 + i, 1_000_000));
        let before = object_files(&data);
        assert_eq!(put(&node.object_url("ns", &key), body.clone()).status, 201);
        let file = object_files(&data).into_iter().find(|f| !before.contains(f)).expect("a new file");
        flip_byte(&file, 1000);
        let r = get(&node.object_url("ns", &key));
        assert_eq!((r.status, r.body == body), (200, true), "{key}: the S3 copy, whole");
        assert_eq!(r.header("x-trove-tier"), Some("remote"), "{key}");
        assert_eq!(node.stats()["tiers"]["local"]["checksum_failures"], i + 1);
        // The S3 copy lands locally again; done before the next file is picked.
        wait_until("the landed copy to be committed", Duration::from_secs(30), || {
            node.stats()["tiers"]["local"]["objects"] == i + 1
        });
    }
}

#[test]
fn s3_outage_keeps_local_hits_and_recovers_by_itself() {
    let mut s3 = S3::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = node_with(&s3, &dir.path().join("a"), &[]);
    assert_eq!(put(&writer.object_url("ns", "warm"), bytes(31, 100_000)).status, 201);
    assert_eq!(put(&writer.object_url("ns", "cold"), bytes(32, 100_000)).status, 201);
    drop(writer);
    let reader = node_with(&s3, &dir.path().join("b"), &["--s3-timeout", "2s"]);
    assert_eq!(get(&reader.object_url("ns", "warm")).status, 200);
    // The client is served as the bytes land; the local copy is committed
    // after (fdatasync, then the owner publishes it). Until then a GET
    // follows the landing and says "remote".
    wait_until("the local copy to be committed", Duration::from_secs(10), || {
        reader.stats()["tiers"]["local"]["objects"] == 1
    });

    s3.stop();
    let started = Instant::now();
    let hit = get(&reader.object_url("ns", "warm"));
    assert_eq!((hit.status, hit.header("x-trove-tier")), (200, Some("local")));
    let miss = get(&reader.object_url("ns", "cold"));
    assert_eq!(miss.status, 502, "{}", String::from_utf8_lossy(&miss.body));
    assert_eq!(miss.json()["code"], "remote_error");
    let failed_put = put(&reader.object_url("ns", "new"), bytes(33, 1000));
    assert_eq!(failed_put.status, 502);
    assert!(started.elapsed() < Duration::from_secs(10), "failures must be quick: {:?}", started.elapsed());
    assert_eq!(get(&reader.object_url("ns", "new")).status, 502, "a failed PUT publishes nothing locally");

    s3.restart();
    let mut last = 0;
    wait_until("the node to reach S3 again", Duration::from_secs(30), || {
        let r = get(&reader.object_url("ns", "cold"));
        last = r.status;
        r.status == 200 && r.body == bytes(32, 100_000)
    });
    assert_eq!(last, 200);
}

#[test]
fn a_silent_s3_times_out_with_504() {
    // A TCP peer that accepts and never answers: S3 hung, not down.
    let hole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = hole.local_addr().expect("addr").port();
    let keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hole.incoming().take(4).flatten() {
            held.push(s);
        }
        std::thread::sleep(Duration::from_secs(8));
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = format!("http://127.0.0.1:{port}");
    let node =
        Node::start(&dir.path().join("d"), &["--s3-endpoint", &endpoint, "--s3-bucket", "b", "--s3-timeout", "1s"]);
    let started = Instant::now();
    let r = get(&node.object_url("ns", "k"));
    assert_eq!(r.status, 504, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["code"], "remote_timeout");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "{took:?}");
    drop(node);
    drop(keep); // the thread ends with the test process
}

#[test]
fn an_https_endpoint_with_a_private_ca() {
    let s3 = S3::start_tls();
    let (https_port, ca) = s3.tls.clone().expect("tls");
    let endpoint = format!("https://127.0.0.1:{https_port}");
    wait_until("S3 over HTTPS", Duration::from_secs(30), || {
        curl(&["-s", "-o", "/dev/null", "--cacert", ca.to_str().expect("utf8"), &format!("{endpoint}/{}", s3.bucket)])
            .status
            .success()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_path = ca.display().to_string();
    let start = |d: &str| {
        let flags = ["--s3-endpoint", &endpoint, "--s3-bucket", &s3.bucket, "--s3-ca-file", &ca_path];
        Node::start(&dir.path().join(d), &flags)
    };
    let writer = start("a");
    let body = bytes(41, 20 << 20); // over the multipart threshold
    assert_eq!(put(&writer.object_url("ns", "tls"), body.clone()).status, 201);
    let reader = start("b");
    let r = get(&reader.object_url("ns", "tls"));
    assert_eq!((r.status, r.header("x-trove-tier")), (200, Some("remote")));
    assert!(r.body == body, "bytes through TLS must round-trip");

    // Without the CA the handshake fails, with a clear error.
    let untrusting = Node::start(&dir.path().join("c"), &["--s3-endpoint", &endpoint, "--s3-bucket", &s3.bucket]);
    let e = get(&untrusting.object_url("ns", "tls"));
    assert_eq!(e.status, 502);
    let msg = e.json()["error"].as_str().expect("message").to_owned();
    assert!(msg.contains("TLS handshake") && msg.contains("--s3-ca-file"), "{msg}");
}
