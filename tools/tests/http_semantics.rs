//! Ranges, conditional requests and message framing as RFC 9110 and 9112
//! say, against hostile values: an overflowing last-byte-pos, conditional
//! headers that cannot be parsed, a failing If-Range, a missing Host and
//! transfer codings the node does not decode.

use crate::harness::*;
use std::time::Duration;

/// The status of a raw response (and it arrived before the timeout).
fn status_of(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn a_last_byte_pos_past_the_end_means_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("data"), &[]);
    let small = bytes(7, 29);
    let large = bytes(8, 50_000_000);
    assert_eq!(put(&node.object_url("ns", "small"), small.clone()).status, 201);
    assert_eq!(put(&node.object_url("ns", "large"), large.clone()).status, 201);
    for (key, data) in [("small", &small), ("large", &large)] {
        let url = node.object_url("ns", key);
        let len = data.len();
        for (range, start) in [("bytes=5-18446744073709551615", 5), ("bytes=0-18446744073709551615", 0)] {
            let r = http("GET", &url, &[("Range", range)], vec![]);
            assert_eq!(r.status, 206, "{key} {range}");
            assert_eq!(r.header("content-range"), Some(format!("bytes {start}-{}/{len}", len - 1).as_str()), "{key}");
            assert_eq!(r.header("content-length"), Some((len - start).to_string().as_str()), "{key}");
            assert!(r.body == data[start..], "{key} {range}: the bytes from {start} to the end");
        }
        // Several ranges: the whole object, always.
        let r = http("GET", &url, &[("Range", "bytes=0-1,3-18446744073709551615")], vec![]);
        assert_eq!((r.status, r.body.len()), (200, len), "{key} multi-range");
        let r = http("GET", &url, &[("Range", "bytes=18446744073709551615-")], vec![]);
        assert_eq!(r.status, 416, "{key}");
    }
}

#[test]
fn conditional_headers_that_cannot_be_parsed_are_refused_and_if_range_is_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("data"), &[]);
    let url = node.object_url("ns", "k");
    let first = put(&url, b"version one".to_vec());
    assert_eq!(first.status, 201);
    let etag = first.header("etag").expect("an ETag").to_owned();
    let t = Duration::from_secs(10);
    for (method, name) in
        [("PUT", "If-Match"), ("PUT", "If-None-Match"), ("DELETE", "If-Match"), ("DELETE", "If-None-Match")]
    {
        let mut req = format!("{method} /api/v1/object/ns/k HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n").into_bytes();
        req.extend_from_slice(format!("{name}: \"").as_bytes());
        req.extend_from_slice(b"\xe9\"\r\nConnection: close\r\n\r\nlost");
        let resp = raw(node.port, &req, t);
        assert_eq!(status_of(&resp), 400, "{method} with a non-ASCII {name}: {}", String::from_utf8_lossy(&resp));
        assert!(String::from_utf8_lossy(&resp).contains("invalid_header"));
        assert_eq!(get(&url).body, b"version one", "{method} with {name} changed nothing");
    }
    let r = http("PUT", &url, &[("If-Match", "unquoted")], b"lost".to_vec());
    assert_eq!(r.status, 400);
    let r = http("PUT", &url, &[("If-Match", &format!("W/{etag}"))], b"lost".to_vec());
    assert_eq!(r.status, 412, "If-Match compares strongly");
    assert_eq!(http("GET", &url, &[("If-None-Match", &format!("W/{etag}"))], vec![]).status, 304);

    // If-Range: the range only for the same strong ETag, else the whole body.
    let r = http("GET", &url, &[("Range", "bytes=0-6"), ("If-Range", "\"other\"")], vec![]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"version one"[..]));
    let r = http("GET", &url, &[("Range", "bytes=0-6"), ("If-Range", "Wed, 21 Oct 2015 07:28:00 GMT")], vec![]);
    assert_eq!(r.status, 200, "objects have no Last-Modified: a date never holds");
    let r = http("GET", &url, &[("Range", "bytes=0-6"), ("If-Range", &etag)], vec![]);
    assert_eq!((r.status, r.body.as_slice()), (206, &b"version"[..]));
}

#[test]
fn framing_follows_rfc_9112() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("data"), &[]);
    let t = Duration::from_secs(10);
    let resp = raw(node.port, b"GET /_liveness HTTP/1.1\r\nConnection: close\r\n\r\n", t);
    assert_eq!(status_of(&resp), 400, "HTTP/1.1 without Host: {}", String::from_utf8_lossy(&resp));
    assert!(String::from_utf8_lossy(&resp).contains("missing_host"));
    let resp = raw(node.port, b"GET /_liveness HTTP/1.0\r\n\r\n", t);
    assert_eq!(status_of(&resp), 200, "HTTP/1.0 needs no Host");

    let body = b"5\r\nhello\r\n0\r\n\r\n";
    for te in ["gzip, chunked", "chunked, chunked", "identity"] {
        let mut req = format!(
            "PUT /api/v1/object/ns/te HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: {te}\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        req.extend_from_slice(body);
        let resp = raw(node.port, &req, t);
        let s = status_of(&resp);
        assert!(s == 501 || s == 400, "Transfer-Encoding: {te} got {}", String::from_utf8_lossy(&resp));
        assert_eq!(get(&node.object_url("ns", "te")).status, 404, "nothing stored for {te}");
    }
    let mut req =
        b"PUT /api/v1/object/ns/te HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    req.extend_from_slice(body);
    assert_eq!(status_of(&raw(node.port, &req, t)), 201);
    assert_eq!(get(&node.object_url("ns", "te")).body, b"hello");
}
