//! The object API: round trips, ETag, Range, conditionals, TTL, status pages.

use crate::harness::*;
use std::time::Duration;

#[test]
fn put_get_head_delete_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("data"), &[]);
    let body = bytes(1, 300_000);
    let r = put(&node.object_url("ns", "obj"), body.clone());
    assert_eq!(r.status, 201);
    let etag = r.header("etag").expect("etag").to_owned();
    assert_eq!(r.json()["size"], 300_000);

    let g = get(&node.object_url("ns", "obj"));
    assert_eq!(g.status, 200);
    assert_eq!(g.body, body);
    assert_eq!(g.header("etag"), Some(etag.as_str()));
    assert_eq!(g.header("x-trove-tier"), Some("local"));
    assert_eq!(g.header("accept-ranges"), Some("bytes"));

    let h = http("HEAD", &node.object_url("ns", "obj"), &[], vec![]);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some("300000"));
    assert!(h.body.is_empty());

    assert_eq!(http("DELETE", &node.object_url("ns", "obj"), &[], vec![]).status, 204);
    let gone = get(&node.object_url("ns", "obj"));
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["code"], "not_found");
    assert_eq!(http("DELETE", &node.object_url("ns", "obj"), &[], vec![]).status, 404);
}

#[test]
fn etag_is_a_hash_of_the_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("data"), &[]);
    let a = put(&node.object_url("ns", "a"), bytes(7, 5000));
    let b = put(&node.object_url("other", "b"), bytes(7, 5000));
    let c = put(&node.object_url("ns", "c"), bytes(8, 5000));
    assert_eq!(a.header("etag"), b.header("etag"), "same bytes, same ETag, whatever the name");
    assert_ne!(a.header("etag"), c.header("etag"));
    // Overwrite changes the ETag the next GET reports.
    put(&node.object_url("ns", "a"), bytes(8, 5000));
    assert_eq!(get(&node.object_url("ns", "a")).header("etag"), c.header("etag"));
}

#[test]
fn ranges_and_conditionals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("data"), &[]);
    let body = bytes(2, 1_000_000);
    let url = node.object_url("ns", "r");
    let etag = put(&url, body.clone()).header("etag").expect("etag").to_owned();

    // A range across a checksum block boundary (256 KiB).
    let r = http("GET", &url, &[("Range", "bytes=262000-262999")], vec![]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 262000-262999/1000000"));
    assert_eq!(r.body, &body[262_000..263_000]);
    let suffix = http("GET", &url, &[("Range", "bytes=-10")], vec![]);
    assert_eq!(suffix.status, 206);
    assert_eq!(suffix.body, &body[999_990..]);
    let open = http("GET", &url, &[("Range", "bytes=999999-")], vec![]);
    assert_eq!(open.body, &body[999_999..]);

    let bad = http("GET", &url, &[("Range", "bytes=1000000-")], vec![]);
    assert_eq!(bad.status, 416);
    assert_eq!(bad.header("content-range"), Some("bytes */1000000"));

    let nm = http("GET", &url, &[("If-None-Match", etag.as_str())], vec![]);
    assert_eq!(nm.status, 304);
    assert!(nm.body.is_empty());
    assert_eq!(http("GET", &url, &[("If-None-Match", "\"other\"")], vec![]).status, 200);
    assert_eq!(http("GET", &url, &[("If-Match", "\"other\"")], vec![]).status, 412);
    assert_eq!(http("GET", &url, &[("If-Match", etag.as_str())], vec![]).status, 200);
    // Conditional writes.
    assert_eq!(http("PUT", &url, &[("If-Match", "\"other\"")], bytes(3, 10)).status, 412);
    assert_eq!(http("PUT", &url, &[("If-None-Match", "*")], bytes(3, 10)).status, 412);
    assert_eq!(http("PUT", &node.object_url("ns", "new"), &[("If-None-Match", "*")], bytes(3, 10)).status, 201);
    assert_eq!(get(&url).body, body, "failed preconditions must not write");
}

#[test]
fn time_to_live_expires_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("data"), &[]);
    let url = node.object_url("ns", "ttl");
    assert_eq!(http("PUT", &url, &[("Time-To-Live", "1s")], bytes(4, 100)).status, 201);
    assert_eq!(get(&url).status, 200);
    let long = node.object_url("ns", "long");
    assert_eq!(http("PUT", &long, &[("Time-To-Live", "1h")], bytes(4, 100)).status, 201);
    let ttl: u64 = get(&long).header("time-to-live").expect("ttl header").parse().expect("number");
    assert!((3590..=3600).contains(&ttl), "ttl {ttl}");
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(get(&url).status, 404, "expired objects are gone");
    assert_eq!(get(&long).status, 200);
    for bad in ["soon", "0", "-1", "1.5h"] {
        let r = http("PUT", &url, &[("Time-To-Live", bad)], bytes(4, 100));
        assert_eq!(r.status, 400, "TTL {bad:?}");
        assert_eq!(r.json()["code"], "invalid_ttl");
    }
}

#[test]
fn status_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("data"), &["--shards", "2"]);
    put(&node.object_url("ns", "s"), bytes(5, 10_000));
    get(&node.object_url("ns", "s"));
    get(&node.object_url("ns", "missing"));
    assert_eq!(get(&node.url("/_liveness")).status, 200);
    assert_eq!(get(&node.url("/_readiness")).status, 200);
    let s = node.stats();
    assert_eq!(s["tiers"]["local"]["hits"], 1);
    assert_eq!(s["tiers"]["local"]["misses"], 1);
    assert_eq!(s["tiers"]["local"]["objects"], 1);
    assert_eq!(s["tiers"]["local"]["bytes_written"], 10_000);
    assert_eq!(s["tiers"]["local"]["bytes_read"], 10_000);
    assert_eq!(s["shards"].as_array().map(Vec::len), Some(2));
    let total: u64 = s["shards"].as_array().expect("shards").iter().map(|x| x["requests"].as_u64().expect("n")).sum();
    assert!(total >= 4, "requests counted per shard: {total}");
    let m = String::from_utf8(get(&node.url("/metrics")).body).expect("utf8");
    assert!(m.contains("# TYPE trove_requests_total counter"), "{m}");
    assert!(m.contains("trove_local_hits_total{shard=\"0\"}"), "{m}");
    assert_eq!(get(&node.url("/nope")).status, 404);
    assert_eq!(http("POST", &node.url("/api/v1/stats"), &[], b"x".to_vec()).status, 405);
}

#[test]
fn curl_keep_alive_chunked_and_expect_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("data"), &[]);
    let file = dir.path().join("up.bin");
    std::fs::write(&file, bytes(6, 3_000_000)).expect("write");
    let url = node.object_url("ns", "chunked");
    let out = curl(&[
        "-sS",
        "-v",
        "-X",
        "PUT",
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &format!("@{}", file.display()),
        &url,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("HTTP/1.1 100 Continue"), "expected 100-continue: {err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"size\":3000000"));
    // Two GETs in one curl run share one connection.
    let out = curl(&["-sS", "-v", "-o", "/dev/null", "-o", "/dev/null", &url, &url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Re-using existing connection") || err.contains("Reusing existing"), "no keep-alive: {err}");
    assert_eq!(get(&url).body, bytes(6, 3_000_000));
}

/// Any shard keeps memory copies of the small objects it served, but only
/// the owner changes their files: a PUT, a DELETE and an eviction must each
/// end every shard's copy at once.
#[test]
fn no_shard_serves_its_memory_copy_after_the_object_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 32 KiB of disk per shard: four 4 KiB objects (8 KiB each on disk).
    let node = Node::start(&dir.path().join("data"), &["--shards", "2", "--local-capacity", "64KiB"]);
    let url = node.object_url("ns", "hot");
    // Each GET is a fresh connection; the kernel spreads them over both shards.
    let every_get = |what: &str, ok: &dyn Fn(&Resp) -> bool| {
        for i in 0..24 {
            let r = get(&url);
            assert!(ok(&r), "{what}: GET {i} answered {} with {} bytes", r.status, r.body.len());
        }
    };
    let memory_hits = |shard: usize| node.stats()["shards"][shard]["memory_hits"].as_u64().expect("memory_hits");

    let v1 = bytes(21, 4096);
    assert_eq!(put(&url, v1.clone()).status, 201);
    every_get("first version", &|r| r.status == 200 && r.body == v1);
    assert!(memory_hits(0) > 0 && memory_hits(1) > 0, "both shards hold a copy: {}", node.stats()["shards"]);

    let v2 = bytes(22, 4096);
    assert_eq!(put(&url, v2.clone()).status, 201);
    every_get("after a PUT", &|r| r.status == 200 && r.body == v2);

    assert_eq!(http("DELETE", &url, &[], vec![]).status, 204);
    every_get("after a DELETE", &|r| r.status == 404);

    assert_eq!(put(&url, v1.clone()).status, 201);
    every_get("put back", &|r| r.status == 200 && r.body == v1);
    // Let the reads' recency notes reach the owner, then push it out.
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..32 {
        assert_eq!(put(&node.object_url("ns", &format!("filler-{i}")), bytes(i, 4096)).status, 201);
    }
    assert!(node.stats()["tiers"]["local"]["evictions"].as_u64() > Some(0));
    every_get("after its eviction", &|r| r.status == 404);
}
