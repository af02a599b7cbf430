//! Upstreams that hang: one that accepts TCP and never answers, one that
//! trickles a byte a second, and a working one (`git daemon` behind a
//! proxy) that goes silent once the mirror is warm. A client must get an
//! answer within `--upstream-timeout` (504 cold, the mirror as it is when
//! warm), and no git process may outlive its request or the node.

use crate::git::{daemon, git, Upstream};
use crate::harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Accepts and holds every connection, never writing a byte.
pub(crate) fn black_hole() -> TcpServer {
    TcpServer::start(|mut conn| {
        let mut buf = [0u8; 4096];
        while conn.read(&mut buf).is_ok_and(|n| n > 0) {}
    })
}

/// Answers every request one byte a second, forever.
fn trickle() -> TcpServer {
    TcpServer::start(|mut conn| {
        let mut head = [0u8; 4096];
        let _ = conn.read(&mut head);
        crate::harness::trickle(
            &mut conn,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\n".iter().copied().cycle(),
        );
    })
}

/// Forwards to `port` until `silent` is set; from then on holds new
/// connections without a byte.
pub(crate) fn switchable_proxy(port: u16, silent: Arc<AtomicBool>) -> TcpServer {
    TcpServer::start(move |mut client| {
        if silent.load(Ordering::Acquire) {
            let mut buf = [0u8; 4096];
            while client.read(&mut buf).is_ok_and(|n| n > 0) {}
            return;
        }
        relay(client, port, None);
    })
}

/// Forwards to `port`, its answers at about `bytes_per_s`: a slow link.
pub(crate) fn throttled_proxy(port: u16, bytes_per_s: u64) -> TcpServer {
    TcpServer::start(move |client| relay(client, port, Some(bytes_per_s)))
}

/// Relays `client` to `port` both ways until either side closes; what
/// comes back is paced to `bytes_per_s` if given (the link the fault
/// stages: a pace, not a wait for anything).
fn relay(mut client: TcpStream, port: u16, bytes_per_s: Option<u64>) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", port)) else { return };
    let (mut c2, mut s2) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut s2);
        let _ = s2.shutdown(std::net::Shutdown::Write);
    });
    match bytes_per_s {
        None => {
            let _ = std::io::copy(&mut server, &mut client);
        }
        Some(rate) => {
            let started = Instant::now();
            let (mut sent, mut buf) = (0u64, vec![0u8; 16 << 10]);
            while let Ok(n) = server.read(&mut buf) {
                if n == 0 || client.write_all(&buf[..n]).is_err() {
                    break;
                }
                sent += n as u64;
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                if let Some(ahead) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(ahead);
                }
            }
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

/// The pids of processes the node at `data_dir` marked as its own.
pub(crate) fn node_children(data_dir: &Path) -> Vec<u32> {
    let marker = format!("TROVE_NODE={}", data_dir.canonicalize().expect("data dir").display());
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if let Ok(env) = std::fs::read(e.path().join("environ")) {
            if env.split(|b| *b == 0).any(|v| v == marker.as_bytes()) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// The pids of the orphan watchers of nodes on `data_dir`.
fn watchers_of(data_dir: &Path) -> Vec<u32> {
    let dir = data_dir.canonicalize().expect("data dir");
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.contains(&b"watch-orphans".as_slice()) && args.contains(&dir.as_os_str().as_encoded_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

fn timed_get(url: &str) -> (Resp, Duration) {
    let started = Instant::now();
    let r = get(url);
    (r, started.elapsed())
}

pub(crate) fn refs_url(node: &Node, host: &str, repo: &str) -> String {
    node.url(&format!("/git/{host}/{repo}/info/refs?service=git-upload-pack"))
}

#[test]
fn a_silent_or_trickling_upstream_gets_a_504_in_time_and_leaves_no_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hole, drip) = (black_hole(), trickle());
    let node = Node::start(
        &dir.path().join("data"),
        &[
            "--upstream",
            &format!("hole.test=http://127.0.0.1:{}", hole.port),
            "--upstream",
            &format!("drip.test=http://127.0.0.1:{}", drip.port),
            // git:// has no low-speed limit of its own: the watchdog's case.
            "--upstream",
            &format!("holegit.test=git://127.0.0.1:{}", hole.port),
            "--upstream-timeout",
            "3s",
        ],
    );
    // Three askers of one repo (one clone, two followers), and others.
    let urls = [
        refs_url(&node, "hole.test", "a/b"),
        refs_url(&node, "hole.test", "a/b"),
        refs_url(&node, "hole.test", "a/b"),
        refs_url(&node, "hole.test", "c/d"),
        refs_url(&node, "drip.test", "a/b"),
        refs_url(&node, "holegit.test", "a/b"),
        // Passed through (a push's advertisement, Git LFS): the same bound.
        node.url("/git/hole.test/a/b/info/refs?service=git-receive-pack"),
        node.url("/git/drip.test/a/b.git/info/lfs/locks"),
    ];
    // The repo is Empty again, with a backoff (1 s at first): the next ask,
    // made as soon as the first answer came, is answered at once, without
    // another wait on the upstream.
    let (answers, (again, took)) = std::thread::scope(|s| {
        let again = s.spawn(|| {
            let first = timed_get(&urls[0]);
            (first, timed_get(&urls[0]))
        });
        let hs: Vec<_> = urls[1..].iter().map(|u| s.spawn(move || timed_get(u))).collect();
        let (first, again) = again.join().expect("thread");
        let answers: Vec<(Resp, Duration)> =
            std::iter::once(first).chain(hs.into_iter().map(|h| h.join().expect("thread"))).collect();
        (answers, again)
    });
    for ((r, took), url) in answers.iter().zip(&urls) {
        assert_eq!(r.status, 504, "{url}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["code"], "upstream_timeout");
        assert!(*took < Duration::from_secs(15), "{url} answered after {took:?}; the bound is 3 s without progress");
    }
    assert!(again.status == 502 || again.status == 504, "{}", String::from_utf8_lossy(&again.body));
    assert!(took < Duration::from_secs(2), "a repo in backoff answers at once ({took:?})");
    wait_until("every git the node ran is gone", Duration::from_secs(10), || node_children(&node.data_dir).is_empty());
}

#[test]
fn a_warm_mirror_whose_upstream_goes_silent_is_served_as_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::new(dir.path());
    let head = git(&up.work, &["rev-parse", "HEAD"]);
    let daemon_port = free_port();
    let _daemon = daemon(&up.root, daemon_port);
    let silent = Arc::new(AtomicBool::new(false));
    let proxy = switchable_proxy(daemon_port, silent.clone());
    let upstream = format!("proxy.test=git://127.0.0.1:{}", proxy.port);
    // Every refs listing checks the upstream; a hung check would take the
    // default --upstream-timeout (30 s).
    let node = Node::start(&dir.path().join("data"), &["--upstream", &upstream, "--refs-ttl", "0s"]);
    let url = node.url("/git/proxy.test/org/repo");
    let warm = dir.path().join("warm");
    git(dir.path(), &["clone", "-q", &url, warm.to_str().expect("utf8")]);

    silent.store(true, Ordering::Release);
    let (r, took) = timed_get(&format!("{url}/info/refs?service=git-upload-pack"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(took < Duration::from_secs(6), "served after {took:?}; the wait on a slow refs check is at most 2 s");
    let started = Instant::now();
    let clone = dir.path().join("clone");
    git(dir.path(), &["clone", "-q", &url, clone.to_str().expect("utf8")]);
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]), head);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a clone took {:?} with the upstream silent",
        started.elapsed()
    );
}

#[test]
fn git_processes_die_with_the_node_on_sigterm_and_after_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hole = black_hole();
    let upstream = format!("hole.test=http://127.0.0.1:{}", hole.port);
    let args = ["--upstream", upstream.as_str(), "--upstream-timeout", "120s"];
    let mut node = Node::start(&dir.path().join("data"), &args);

    // SIGTERM while a client waits on a hung clone: the clone is ended, the
    // client gets an answer, and the node exits 0 well within its drain.
    let url = refs_url(&node, "hole.test", "org/one");
    let waiting = std::thread::spawn(move || get(&url));
    wait_until("the clone is running", Duration::from_secs(10), || !node_children(&node.data_dir).is_empty());
    let started = Instant::now();
    assert_eq!(node.terminate(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(15), "stopping took {:?}", started.elapsed());
    let answered = waiting.join().expect("thread");
    assert!(answered.status == 504 || answered.status == 503, "the waiting client got {}", answered.status);
    assert!(node_children(&node.data_dir).is_empty(), "git outlived the node");

    // kill -9: the clones die with the node (its orphan watcher ends them).
    node.restart();
    // Eight at once, so some connections wait in the backlog and are taken
    // by glommio's fast accept path (the one that forgets CLOEXEC).
    let urls: Vec<String> = (0..8).map(|i| refs_url(&node, "hole.test", &format!("org/r{i}"))).collect();
    let askers: Vec<_> = urls.into_iter().map(|u| std::thread::spawn(move || get(&u))).collect();
    wait_until("the clones are running", Duration::from_secs(10), || node_children(&node.data_dir).len() >= 8);
    let killed = Instant::now();
    node.kill9();
    for a in askers {
        let _ = a.join();
    }
    // The dead node's connections close with it: no git inherited one
    // (glommio's fast accept path makes sockets without CLOEXEC; engine remote/hyper_io.rs).
    assert!(killed.elapsed() < Duration::from_secs(10), "clients of the killed node hung {:?}", killed.elapsed());
    wait_until("the clones died with the node", Duration::from_secs(10), || node_children(&node.data_dir).is_empty());

    // With its watcher killed too (say the OOM killer took both), the
    // clones live on until the next start on the data dir ends them.
    node.restart();
    let urls: Vec<String> = (0..2).map(|i| refs_url(&node, "hole.test", &format!("org/s{i}"))).collect();
    let askers: Vec<_> = urls.into_iter().map(|u| std::thread::spawn(move || get(&u))).collect();
    wait_until("the clones are running", Duration::from_secs(10), || node_children(&node.data_dir).len() >= 2);
    let watchers = watchers_of(&node.data_dir);
    assert_eq!(watchers.len(), 1, "one orphan watcher per node");
    run("kill", &["-9", &watchers[0].to_string()]);
    node.kill9();
    for a in askers {
        let _ = a.join();
    }
    assert!(!node_children(&node.data_dir).is_empty(), "with no watcher, the clones outlive the node");
    node.restart();
    wait_until("the restarted node swept the orphans", Duration::from_secs(10), || {
        node_children(&node.data_dir).is_empty()
    });
    assert!(node.log_text().contains("left running"), "{}", node.log_text());
}
