//! What clients can make a node ask of its upstream: repeated requests for
//! things the upstream does not have must cost bounded upstream calls.

use crate::git::{git, node_for, repo_url, Upstream};
use crate::harness::*;

fn upstream_fetches(node: &Node) -> u64 {
    node.stats()["git"]["upstream_fetches"].as_u64().expect("a number")
}

#[test]
fn an_unknown_commit_costs_one_upstream_fetch_per_refs_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::new(dir.path());
    let node = node_for(dir.path(), &up, &["--shards", "1", "--refs-ttl", "60s"]);
    let base = repo_url(&node);
    assert_eq!(get(&format!("{base}/info/refs?service=git-upload-pack")).status, 200, "the mirror is made");
    let before = upstream_fetches(&node);
    let unknown = "1".repeat(40);
    let body = serde_json::json!({ "commits": [unknown] }).to_string().into_bytes();
    for i in 0..20 {
        let r = http("POST", &format!("{base}/ensure-refs"), &[("Content-Type", "application/json")], body.clone());
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["missing"], 1);
        assert_eq!(r.json()["fetched"], i == 0, "request {i}");
        assert_eq!(get(&format!("{base}/snapshot.bundle?base={unknown}")).status, 404);
    }
    assert_eq!(upstream_fetches(&node) - before, 1, "40 requests for one unknown commit: one fetch");

    // Another name is not covered by that miss, and a commit that exists is
    // found (no fetch: the mirror has it).
    let other = "2".repeat(40);
    let r = http(
        "POST",
        &format!("{base}/ensure-refs"),
        &[],
        serde_json::json!({ "commits": [other] }).to_string().into_bytes(),
    );
    assert_eq!(r.json()["fetched"], true);
    assert_eq!(upstream_fetches(&node) - before, 2);
    let head = git(&up.work, &["rev-parse", "HEAD"]);
    let r = http(
        "POST",
        &format!("{base}/ensure-refs"),
        &[],
        serde_json::json!({ "commits": [head] }).to_string().into_bytes(),
    );
    assert_eq!((r.json()["missing"].as_u64(), r.json()["fetched"].as_bool()), (Some(0), Some(false)));
}
