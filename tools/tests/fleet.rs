//! A fleet on one bucket: nodes that share SeaweedFS build each snapshot
//! once, claimed with a conditional PUT of a lease (engine snapshots/lease.rs).
//! A lease left by a node that died expires; a poisoned one is ignored.

use crate::git::{git, Upstream};
use crate::harness::*;
use crate::snapshot::s3_node;
use std::path::Path;
use std::time::{Duration, Instant};
use trove_engine::repo::names::lease_key;
use trove_engine::repo::RepoKey;

fn builds(nodes: &[&Node]) -> u64 {
    nodes.iter().map(|n| n.stats()["git"]["snapshot_builds"].as_u64().expect("a number")).sum()
}

fn snapshot_url(node: &Node, repo: &str) -> String {
    node.url(&format!("/git/example.test/org/{repo}/snapshot.tar.zst"))
}

/// Puts `body` where a node would keep the lease on `repo`'s snapshot of
/// `commit` (generation 0), as another node of the fleet would have.
fn plant_lease(s3: &S3, repo: &str, commit: &str, body: &str) {
    let key = RepoKey::parse("example.test", &format!("org/{repo}")).expect("repo key");
    let hex = trove_engine::key::hash_hex(lease_key(&key, commit, 0).hash());
    let url = format!("{}/{}/trove/leases/{hex}", s3.endpoint(), s3.flags()[3]);
    assert_eq!(put(&url, body.as_bytes().to_vec()).status, 200, "planting the lease");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64
}

/// A second repo beside `org/repo`, with the same history.
fn add_repo(up: &Upstream, dir: &Path, name: &str) -> String {
    let bare = up.root.join("org").join(name);
    git(dir, &["clone", "-q", "--bare", up.work.to_str().expect("utf8"), bare.to_str().expect("utf8")]);
    git(&bare, &["rev-parse", "HEAD"])
}

#[test]
fn three_nodes_on_one_bucket_build_a_snapshot_once() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut up = Upstream::new(dir.path());
    // Big enough that the build takes a while and the requests overlap it.
    std::fs::write(up.work.join("big.bin"), bytes(11, 16 << 20)).expect("write");
    let head = up.commit(1);
    let nodes: Vec<Node> = (0..3).map(|i| s3_node(&s3, &dir.path().join(format!("n{i}")), &up, &[])).collect();
    let urls: Vec<String> = (0..10).map(|i| snapshot_url(&nodes[i % 3], "repo")).collect();
    let answers: Vec<Resp> = std::thread::scope(|s| {
        let hs: Vec<_> = urls.iter().map(|u| s.spawn(move || get(u))).collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for (r, url) in answers.iter().zip(&urls) {
        assert_eq!(r.status, 200, "{url}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("x-trove-snapshot-commit"), Some(head.as_str()));
        assert!(
            r.body == answers[0].body,
            "every node serves the same snapshot bytes: {url} {} vs {}",
            r.body.len(),
            answers[0].body.len()
        );
    }
    let all: Vec<&Node> = nodes.iter().collect();
    assert_eq!(builds(&all), 1, "one build for the fleet");
}

#[test]
fn a_dead_nodes_lease_expires_and_a_poisoned_one_is_ignored() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::new(dir.path());
    let dead = add_repo(&up, dir.path(), "dead");
    let poisoned = add_repo(&up, dir.path(), "poisoned");
    let node = s3_node(&s3, &dir.path().join("n"), &up, &["--snapshot-lease", "3s"]);

    // A node that claimed the build and died: its lease runs 3 s more.
    let planted = Instant::now();
    plant_lease(&s3, "dead", &dead, &format!(r#"{{"node":"a dead node","expires_ms":{}}}"#, now_ms() + 3000));
    let r = get(&snapshot_url(&node, "dead"));
    let took = planted.elapsed();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(took >= Duration::from_millis(2500), "the live lease was waited on ({took:?})");
    assert!(took < Duration::from_secs(20), "the expired lease was taken over ({took:?})");
    assert_eq!(builds(&[&node]), 1);

    // A lease that claims to run for ever (a poisoned object, a skewed
    // clock) would stop every build of the fleet: it is ignored.
    plant_lease(&s3, "poisoned", &poisoned, &format!(r#"{{"node":"evil","expires_ms":{}}}"#, u64::MAX));
    let started = Instant::now();
    let r = get(&snapshot_url(&node, "poisoned"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(started.elapsed() < Duration::from_secs(3), "not held by the poisoned lease ({:?})", started.elapsed());
    assert_eq!(builds(&[&node]), 2);
    assert!(node.log_text().contains("expires later than any node sets one"), "{}", node.log_text());
}
