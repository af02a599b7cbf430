//! Lifecycle: eviction by access recency, restart, SIGTERM drain, 1 GiB
//! objects in bounded memory, configuration from TOML and environment.

use crate::harness::*;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn eviction_follows_reads_not_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Each 1 MiB object takes 1 MiB + 4 KiB on disk; room for three.
    let node = Node::start(&dir.path().join("d"), &["--shards", "1", "--local-capacity", &(3 * 1_052_672).to_string()]);
    for k in ["a", "b", "c"] {
        assert_eq!(put(&node.object_url("ns", k), bytes(1, 1 << 20)).status, 201);
    }
    assert_eq!(get(&node.object_url("ns", "a")).status, 200); // a is now the most recent
    assert_eq!(put(&node.object_url("ns", "d"), bytes(1, 1 << 20)).status, 201);
    assert_eq!(get(&node.object_url("ns", "b")).status, 404, "b was least recently used");
    for k in ["a", "c", "d"] {
        assert_eq!(get(&node.object_url("ns", k)).status, 200, "{k} must stay");
    }
    let s = node.stats();
    assert_eq!(s["tiers"]["local"]["evictions"], 1);
    assert!(s["tiers"]["local"]["used_bytes"].as_u64().expect("n") <= 3 * 1_052_672);
}

#[test]
fn recency_noted_on_another_shard_reaches_the_owner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let per_shard = 3 * 1_052_672u64;
    let node = Node::start(&dir.path().join("d"), &["--shards", "2", "--local-capacity", &(2 * per_shard).to_string()]);
    // Four keys that shard 0 owns: room for three of them.
    let keys: Vec<String> = (0..100)
        .map(|i| format!("k{i}"))
        .filter(|k| trove_engine::key::owner(trove_engine::key::name_hash("ns", k), 2) == 0)
        .take(4)
        .collect();
    for k in &keys[..3] {
        assert_eq!(put(&node.object_url("ns", k), bytes(2, 1 << 20)).status, 201);
    }
    // Read the oldest, keys[0], on a connection that shard 1 accepted.
    let mut served_by_1 = false;
    for _ in 0..200 {
        let agent = ureq::AgentBuilder::new().build();
        let probe = agent.get(&node.url("/_liveness")).call().expect("liveness");
        if probe.header("x-trove-shard") == Some("1") {
            let _ = probe.into_string();
            let r = agent.get(&node.object_url("ns", &keys[0])).call().expect("get");
            assert_eq!(r.header("x-trove-shard"), Some("1"), "same connection, same shard");
            served_by_1 = true;
            break;
        }
    }
    assert!(served_by_1, "no connection landed on shard 1 in 200 tries");
    std::thread::sleep(Duration::from_millis(400)); // notes are flushed every 100 ms
    assert_eq!(put(&node.object_url("ns", &keys[3]), bytes(2, 1 << 20)).status, 201);
    assert_eq!(get(&node.object_url("ns", &keys[1])).status, 404, "keys[1] is now the least recently used");
    assert_eq!(get(&node.object_url("ns", &keys[0])).status, 200, "the read on shard 1 kept keys[0]");
}

#[test]
fn objects_and_index_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::start(&dir.path().join("d"), &["--shards", "2"]);
    for i in 0..20u64 {
        put(&node.object_url("ns", &format!("k{i}")), bytes(i, 10_000 + i as usize * 1000));
    }
    let before = node.stats()["tiers"]["local"].clone();
    assert_eq!(node.terminate(), Some(0));
    node.restart();
    for i in 0..20u64 {
        assert_eq!(get(&node.object_url("ns", &format!("k{i}"))).body, bytes(i, 10_000 + i as usize * 1000));
    }
    let after = node.stats()["tiers"]["local"].clone();
    assert_eq!(before["objects"], after["objects"]);
    assert_eq!(before["used_bytes"], after["used_bytes"]);
}

#[test]
fn objects_move_to_their_new_owner_when_the_shard_count_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let mut node = Node::start(&data, &["--shards", "1"]);
    for i in 0..40u64 {
        assert_eq!(put(&node.object_url("ns", &format!("k{i}")), bytes(i, 5_000)).status, 201);
    }
    assert_eq!(node.terminate(), Some(0));
    drop(node);
    // Three shards: about two thirds of the objects change owner, into
    // shard directories (and their HH directories) no object was in yet.
    let node = Node::start(&data, &["--shards", "3"]);
    for i in 0..40u64 {
        assert_eq!(get(&node.object_url("ns", &format!("k{i}"))).body, bytes(i, 5_000), "k{i}");
    }
    let moved = object_files(&data).iter().filter(|p| !p.starts_with(data.join("shards/000"))).count();
    assert!(moved > 0, "no object moved to shard 1 or 2");
    assert_eq!(node.stats()["tiers"]["local"]["objects"], 40);
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::start(&dir.path().join("d"), &[]);
    let body = bytes(5, 64 << 20);
    put(&node.object_url("ns", "slow"), body.clone());
    // A slow client: about 2 s for 64 MiB.
    let mut slow = Command::new("curl")
        .args(["-s", "--limit-rate", "32M", "-o", "-", &node.object_url("ns", "slow")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let mut out = slow.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).expect("read");
        v
    });
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    assert_eq!(node.terminate(), Some(0), "clean exit after SIGTERM");
    let got = reader.join().expect("reader");
    assert!(slow.wait().expect("curl").success(), "the in-flight download completed");
    assert!(got == body, "and got every byte");
    assert!(started.elapsed() >= Duration::from_millis(500), "the node waited for it");
}

#[test]
fn idle_keep_alive_connections_do_not_hold_up_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::start(&dir.path().join("d"), &["--idle-timeout", "60s"]);
    // Connections that sent a request and now sit idle in keep-alive.
    let idle: Vec<std::net::TcpStream> = (0..20)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", node.port)).expect("connect");
            std::io::Write::write_all(&mut s, b"GET /_liveness HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
            let mut buf = [0u8; 256];
            let _ = std::io::Read::read(&mut s, &mut buf);
            s
        })
        .collect();
    let started = Instant::now();
    assert_eq!(node.terminate(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown waited {:?} on idle connections", started.elapsed());
    drop(idle);
}

#[test]
fn a_1_gib_object_streams_in_and_out_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("d"), &["--shards", "2"]);
    let src = dir.path().join("one-gib.bin");
    run(
        "fio",
        &[
            "--name=gen",
            &format!("--filename={}", src.display()),
            "--rw=write",
            "--bs=1M",
            "--size=1G",
            "--refill_buffers",
            "--output=/dev/null",
        ],
    );
    let url = node.object_url("ns", "huge");
    let up = curl(&["-sS", "-f", "-T", src.to_str().expect("utf8"), &url]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let back = dir.path().join("back.bin");
    let down = curl(&["-sS", "-f", "-o", back.to_str().expect("utf8"), &url]);
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    let same = Command::new("cmp").arg(&src).arg(&back).status().expect("cmp");
    assert!(same.success(), "1 GiB round trip differs");
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.pid())).expect("proc status");
    let hwm_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    assert!(hwm_kib < 256 * 1024, "peak RSS {hwm_kib} KiB for a 1 GiB object: not bounded");
}

#[test]
fn settings_come_from_toml_and_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let toml = dir.path().join("trove.toml");
    std::fs::write(
        &toml,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nshards = 1\nmax_object_size = \"1K\"\n",
            dir.path().join("d").display()
        ),
    )
    .expect("toml");
    let mut child = Command::new(trove_bin())
        .args(["serve", "--config", toml.to_str().expect("utf8")])
        .env("TROVE_MAX_OBJECT_SIZE", "2K") // env beats the file
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let url = format!("http://127.0.0.1:{port}");
    wait_until("node from TOML", Duration::from_secs(20), || get(&format!("{url}/_readiness")).status == 200);
    let s: serde_json::Value = serde_json::from_slice(&get(&format!("{url}/api/v1/stats")).body).expect("json");
    let ok = put(&format!("{url}/api/v1/object/ns/a"), bytes(1, 1500)).status;
    let too_big = put(&format!("{url}/api/v1/object/ns/b"), bytes(1, 2049)).status;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(s["shards"].as_array().map(Vec::len), Some(1));
    assert_eq!((ok, too_big), (201, 413));

    let bad = Command::new(trove_bin()).args(["serve", "--config", "/nonexistent/trove.toml"]).output().expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("reading config file"));
    std::fs::write(&toml, "lisen = \"x\"\n").expect("toml");
    let typo =
        Command::new(trove_bin()).args(["serve", "--config", toml.to_str().expect("utf8")]).output().expect("run");
    assert!(String::from_utf8_lossy(&typo.stderr).contains("unknown field"), "typos in the file are reported");
}

/// Runs `trove serve` with `listen` and `data_dir`, which must refuse to
/// start; returns what it printed.
fn refused_second_node(listen: &str, data_dir: &std::path::Path) -> String {
    let mut second = Command::new(trove_bin())
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run trove serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = second.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second node started on {listen} with data dir {}", data_dir.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    second.stderr.take().expect("piped").read_to_string(&mut err).expect("stderr");
    assert!(!status.success(), "{err}");
    err
}

#[test]
fn a_second_node_on_a_taken_port_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Node::start(&dir.path().join("a"), &["--shards", "2"]);
    assert_eq!(put(&first.object_url("ns", "k"), b"first".to_vec()).status, 201);
    // The shards' SO_REUSEPORT would let a second node share the port and
    // take half of the first one's connections: it must refuse instead.
    let err = refused_second_node(&format!("127.0.0.1:{}", first.port), &dir.path().join("b"));
    assert!(err.contains("already in use"), "{err}");
    // Every connection still reaches the first node.
    for _ in 0..20 {
        assert_eq!(get(&first.object_url("ns", "k")).body, b"first");
    }
}

#[test]
fn a_second_node_on_a_data_dir_in_use_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let first = Node::start(&data, &["--shards", "1"]);
    // A PUT still in flight on the first node: its body waits in tmp/,
    // which a second node's start would wipe.
    let body = bytes(8, 200_000);
    let mut upload = partial_put(first.port, "slow", body.len(), &body[..100_000]);
    wait_until("the upload to land in tmp/", Duration::from_secs(10), || tmp_files(&data, 0) > 0);

    let err = refused_second_node(&format!("127.0.0.1:{}", free_port()), &data);
    assert!(err.contains("in use by a trove node") && err.contains(&first.pid().to_string()), "{err}");

    upload.write_all(&body[100_000..]).expect("second half");
    let mut reply = [0u8; 12];
    std::io::Read::read_exact(&mut upload, &mut reply).expect("reply");
    assert_eq!(&reply, b"HTTP/1.1 201", "the first node's upload survived");
    assert_eq!(get(&first.object_url("ns", "slow")).body, body);
}

#[test]
fn a_clean_start_logs_no_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Ready means every shard has opened its first file, which is when
    // glommio probes the disk for IOPOLL. The failed probe (virtual disks)
    // is harmless: said once at INFO, never as an ERROR a user would read
    // as broken.
    let node = Node::start(&dir.path().join("data"), &[]);
    let log = node.log_text();
    assert!(!log.contains("ERROR"), "a clean start logged an error: {log}");
    assert!(log.matches("polled I/O (IOPOLL)").count() <= 1, "{log}");
}

#[test]
fn read_recency_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let mut node = Node::start(&data, &["--shards", "1", "--local-capacity", &(3 * 1_052_672).to_string()]);
    for k in ["a", "b", "c"] {
        assert_eq!(put(&node.object_url("ns", k), bytes(1, 1 << 20)).status, 201);
    }
    let atime = |k: &str| {
        let hex = trove_engine::key::hash_hex(trove_engine::key::name_hash("ns", k));
        let path = data.join(format!("shards/000/objects/{}/{hex}", &hex[..2]));
        std::fs::metadata(&path).and_then(|m| m.accessed()).expect("an object file")
    };
    // First reads (the kernel's relatime marks those itself), then a second
    // read of a, which only trove writes down: a is now the most recent.
    for k in ["a", "b", "c", "a"] {
        assert_eq!(get(&node.object_url("ns", k)).status, 200);
    }
    wait_until("a's latest read is on disk", Duration::from_secs(20), || atime("a") > atime("c"));
    node.restart();
    assert_eq!(put(&node.object_url("ns", "d"), bytes(1, 1 << 20)).status, 201);
    assert_eq!(get(&node.object_url("ns", "b")).status, 404, "b was least recently read before the restart");
    for k in ["a", "c", "d"] {
        assert_eq!(get(&node.object_url("ns", k)).status, 200, "{k} must stay");
    }
}
