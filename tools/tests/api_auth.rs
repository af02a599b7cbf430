//! Who may write objects: loopback by default, others with a bearer token
//! or from an allowed network; reads open unless `--api-read-auth`. The
//! client that is not loopback is curl (and `trove put`) in a network
//! namespace of the test's own, reaching the node over a veth pair.

use crate::harness::*;
use std::process::Output;

/// curl from inside `ns`: the status and the body.
fn curl_from(ns: &NetNs, args: &[&str]) -> (u16, String) {
    let out: Output = ns
        .command("curl")
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl in the namespace");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn writes_need_loopback_an_allowed_network_or_a_token_and_reads_stay_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = NetNs::new();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# CI fleet\nci-token-1\n\nci-token-2\n").expect("write tokens");
    let node =
        Node::start_on("0.0.0.0", &dir.path().join("data"), &["--api-token-file", tokens.to_str().expect("utf8")]);
    let far = format!("http://{}:{}/api/v1/object/ci/k", ns.host_ip, node.port);

    // Loopback writes as before.
    assert_eq!(put(&node.object_url("ci", "k"), b"from loopback".to_vec()).status, 201);

    // From the namespace: reads are open, writes are not.
    assert_eq!(curl_from(&ns, &[&far]), (200, "from loopback".into()));
    let (status, body) = curl_from(&ns, &["-X", "PUT", "--data-binary", "evil", &far]);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"code\":\"unauthorized\""), "{body}");
    let (status, _) =
        curl_from(&ns, &["-X", "PUT", "-H", "Authorization: Bearer ci-token-3", "--data-binary", "evil", &far]);
    assert_eq!(status, 403, "a token the node does not have");
    let (status, body) = curl_from(&ns, &["-X", "DELETE", &far]);
    assert_eq!(status, 401, "{body}");
    assert_eq!(get(&node.object_url("ci", "k")).body, b"from loopback", "refused writes changed nothing");

    // Any of the file's tokens admits a write; `trove put` sends TROVE_API_TOKEN.
    let (status, _) =
        curl_from(&ns, &["-X", "PUT", "-H", "Authorization: Bearer ci-token-2", "--data-binary", "v2", &far]);
    assert_eq!(status, 201);
    // The scheme is case-insensitive.
    let (status, _) =
        curl_from(&ns, &["-X", "PUT", "-H", "Authorization: bearer ci-token-2", "--data-binary", "v2", &far]);
    assert_eq!(status, 201, "a lowercase scheme");
    assert_eq!(get(&node.object_url("ci", "k")).body, b"v2");
    let file = dir.path().join("upload");
    std::fs::write(&file, "v3 by trove put").expect("write");
    let node_url = format!("http://{}:{}", ns.host_ip, node.port);
    let out = ns
        .command(trove_bin())
        .args(["put", "ci", "k", file.to_str().expect("utf8"), "--url", &node_url])
        .env("TROVE_API_TOKEN", "ci-token-1")
        .output()
        .expect("trove put");
    assert!(out.status.success(), "trove put with a token: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(get(&node.object_url("ci", "k")).body, b"v3 by trove put");
    let (status, _) = curl_from(&ns, &["-X", "DELETE", "-H", "Authorization: Bearer ci-token-1", &far]);
    assert_eq!(status, 204);
    drop(node);

    // --api-allow admits a network without a token; --api-read-auth puts
    // reads under the rule (stats too), loopback still in.
    let allow = format!("{}/32", ns.client_ip);
    let node = Node::start_on("0.0.0.0", &dir.path().join("data2"), &["--api-allow", &allow, "--api-read-auth"]);
    let far = format!("http://{}:{}/api/v1/object/ci/k", ns.host_ip, node.port);
    assert_eq!(curl_from(&ns, &["-X", "PUT", "--data-binary", "allowed", &far]).0, 201);
    assert_eq!(curl_from(&ns, &[&far]), (200, "allowed".into()));
    drop(node);
    let node = Node::start_on("0.0.0.0", &dir.path().join("data3"), &["--api-read-auth"]);
    let far = format!("http://{}:{}/api/v1", ns.host_ip, node.port);
    assert_eq!(curl_from(&ns, &[&format!("{far}/object/ci/k")]).0, 403, "reads need the rule too");
    assert_eq!(curl_from(&ns, &[&format!("{far}/stats")]).0, 403);
    let metrics = format!("http://{}:{}/metrics", ns.host_ip, node.port);
    assert_eq!(curl_from(&ns, &[&metrics]).0, 403, "/metrics shows what stats hides: the same rule");
    assert_eq!(get(&node.url("/api/v1/stats")).status, 200, "loopback reads");
    assert_eq!(get(&node.url("/metrics")).status, 200);
}
