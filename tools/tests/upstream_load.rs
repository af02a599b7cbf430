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

fn git_stat(node: &Node, name: &str) -> u64 {
    node.stats()["git"][name].as_u64().expect("a number")
}

#[test]
fn made_up_repo_names_cost_one_upstream_call_each_per_ttl_and_bounded_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::new(dir.path());
    let node = node_for(dir.path(), &up, &[]);
    let names: Vec<String> = (0..200).map(|i| format!("org/nope-{i}")).collect();
    let ask = |names: &[String]| -> Vec<u16> {
        std::thread::scope(|s| {
            let hs: Vec<_> = names
                .chunks(names.len().div_ceil(16))
                .map(|chunk| {
                    s.spawn(|| {
                        chunk
                            .iter()
                            .map(|n| get(&crate::upstream_faults::refs_url(&node, "example.test", n)).status)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().expect("thread")).collect()
        })
    };
    let first = ask(&names);
    assert!(first.iter().all(|s| *s == 404), "every made-up name is a 404: {first:?}");
    assert_eq!(git_stat(&node, "upstream_clones"), 200, "one upstream call per name");
    let again = ask(&names);
    assert!(again.iter().all(|s| *s == 404), "{again:?}");
    assert_eq!(git_stat(&node, "upstream_clones"), 200, "a remembered not-found costs the upstream nothing");
    assert!(git_stat(&node, "repo_states") <= 200, "one record per name at most");
}

#[test]
fn upstream_jobs_past_the_cap_and_queue_get_503_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hole = crate::upstream_faults::black_hole();
    let upstream = format!("hole.test=http://127.0.0.1:{}", hole.port);
    let node = Node::start(
        &dir.path().join("data"),
        &["--upstream", &upstream, "--max-upstream-jobs", "2", "--upstream-job-queue", "2", "--upstream-timeout", "3s"],
    );
    // Clone jobs, not processes: each job runs in a process group of its
    // own, and a clone's child shows the clone's command line between its
    // fork and its exec, so counting processes saw one job twice.
    let clones_running = || {
        let groups: std::collections::HashSet<String> = crate::upstream_faults::node_children(&node.data_dir)
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("--mirror"))
            })
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                // pid (comm) state ppid pgrp ...: comm may hold spaces.
                stat.rsplit_once(')')?.1.split_whitespace().nth(2).map(str::to_owned)
            })
            .collect();
        groups.len()
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let (answers, most) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                most = most.max(clones_running());
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            most
        });
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let url = crate::upstream_faults::refs_url(&node, "hole.test", &format!("org/r{i}"));
                s.spawn(move || {
                    let started = std::time::Instant::now();
                    let r = get(&url);
                    (r.status, r.header("retry-after").map(str::to_owned), started.elapsed())
                })
            })
            .collect();
        let answers: Vec<_> = hs.into_iter().map(|h| h.join().expect("thread")).collect();
        done.store(true, std::sync::atomic::Ordering::Release);
        (answers, watcher.join().expect("watcher"))
    });
    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 503).collect();
    assert_eq!(refused.len(), 4, "2 run, 2 wait, the rest are refused: {answers:?}");
    for (_, retry_after, took) in &refused {
        assert!(retry_after.is_some(), "a 503 says when to retry");
        assert!(*took < std::time::Duration::from_secs(2), "refused at once, not after a wait ({took:?})");
    }
    assert!(answers.iter().all(|(s, _, _)| *s == 503 || *s == 504), "{answers:?}");
    assert!(most >= 1, "the watcher saw the admitted clones running (else the bound below proves nothing)");
    assert!(most <= 2, "at most 2 clones ran at once, saw {most}");
    assert_eq!(git_stat(&node, "upstream_jobs_refused"), 4);
}

/// The mirrors on the node's disk (not counting evicted copies).
fn mirror_dirs(data: &std::path::Path) -> usize {
    std::fs::read_dir(data.join("shards"))
        .expect("shards")
        .flatten()
        .map(|s| std::fs::read_dir(s.path().join("mirrors")).map(|m| m.count()).unwrap_or(0))
        .sum()
}

#[test]
fn a_node_over_its_mirror_budget_evicts_the_least_recently_used_mirror() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::new(dir.path());
    // Three repos of 1 MiB that does not compress, beside org/repo.
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let work = dir.path().join(format!("work-{name}"));
        std::fs::create_dir_all(&work).expect("mkdir");
        git(&work, &["init", "-q"]);
        std::fs::write(work.join("blob"), bytes(100 + i as u64, 1 << 20)).expect("write");
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-qm", name]);
        let bare = up.root.join("org").join(name);
        git(dir.path(), &["clone", "-q", "--bare", work.to_str().expect("utf8"), bare.to_str().expect("utf8")]);
    }
    // Two such mirrors fit, three do not.
    let node = node_for(dir.path(), &up, &["--shards", "1", "--mirror-capacity", "2600KiB"]);
    let data = dir.path().join("data");
    let refs = |name: &str| {
        let r = get(&node.url(&format!("/git/example.test/org/{name}/info/refs?service=git-upload-pack")));
        assert_eq!(r.status, 200, "{name}: {}", String::from_utf8_lossy(&r.body));
    };
    refs("a");
    refs("b");
    refs("a"); // b is the least recently used now
    assert_eq!(git_stat(&node, "mirror_evictions"), 0, "two mirrors fit");
    refs("c");
    wait_until("a mirror is evicted", std::time::Duration::from_secs(20), || git_stat(&node, "mirror_evictions") == 1);
    assert_eq!(mirror_dirs(&data), 2);
    let evicted: Vec<String> =
        node.log_text().lines().filter(|l| l.contains("mirror evicted")).map(str::to_owned).collect();
    assert!(evicted.len() == 1 && evicted[0].contains("repo=example.test/org/b "), "b was the one: {evicted:?}");
    assert!(git_stat(&node, "mirror_bytes") <= 2600 << 10, "{}", node.stats());

    // b is cloned again on its next request, and serves whole.
    let clone = dir.path().join("clone-b");
    let url = node.url("/git/example.test/org/b");
    git(dir.path(), &["clone", "-q", &url, clone.to_str().expect("utf8")]);
    assert_eq!(std::fs::read(clone.join("blob")).expect("blob"), bytes(101, 1 << 20));
    assert_eq!(git_stat(&node, "upstream_clones"), 4, "a, b, c, and b again");
    // Now a is the least recently used.
    wait_until("a second mirror is evicted", std::time::Duration::from_secs(20), || {
        git_stat(&node, "mirror_evictions") == 2
    });
    assert_eq!(mirror_dirs(&data), 2);
}
