//! Faults: a full disk, kill -9 under load, flipped bytes on disk.

use crate::harness::*;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn a_full_disk_answers_507_and_keeps_serving_reads() {
    let disk = LoopDisk::new(64);
    let data = disk.mount.join("data");
    let mut node = Node::start(&data, &["--shards", "2"]);
    let mut stored: HashMap<String, Vec<u8>> = HashMap::new();
    let mut full = None;
    for i in 0..100 {
        let key = format!("k{i}");
        let body = bytes(i, 2_000_000);
        let r = put(&node.object_url("ns", &key), body.clone());
        match r.status {
            201 => {
                stored.insert(key, body);
            }
            507 => {
                full = Some(r);
                break;
            }
            other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&r.body)),
        }
    }
    let full = full.expect("a 64 MiB disk must fill up");
    assert_eq!(full.json()["code"], "insufficient_storage");
    assert!(full.json()["error"].as_str().expect("message").contains("out of space"));
    assert!(stored.len() >= 10, "only {} objects fit", stored.len());
    // Reads keep working while full.
    for (k, v) in &stored {
        assert_eq!(&get(&node.object_url("ns", k)).body, v, "{k}");
    }
    // Freeing space makes writes work again.
    let first = stored.keys().next().expect("one").clone();
    assert_eq!(http("DELETE", &node.object_url("ns", &first), &[], vec![]).status, 204);
    stored.remove(&first);
    assert_eq!(put(&node.object_url("ns", "after"), bytes(1, 100_000)).status, 201);
    // Nothing is corrupt after a restart.
    node.restart();
    for (k, v) in &stored {
        assert_eq!(&get(&node.object_url("ns", k)).body, v, "{k} after restart");
    }
    assert_eq!(node.stats()["tiers"]["local"]["objects"].as_u64(), Some(stored.len() as u64 + 1));
}

#[test]
fn kill_9_during_concurrent_puts_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut node = Node::start(&data, &["--shards", "2"]);
    let acked: Arc<Mutex<Vec<(String, u64, usize)>>> = Arc::new(Mutex::new(Vec::new()));
    let tried: Arc<Mutex<Vec<(String, u64, usize)>>> = Arc::new(Mutex::new(Vec::new()));
    // Writers go on until the node is gone (or a bound far past the kill).
    let give_up = Instant::now() + Duration::from_secs(120);
    let workers: Vec<_> = (0..8u64)
        .map(|w| {
            let (url, acked, tried) = (node.url.clone(), acked.clone(), tried.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while Instant::now() < give_up {
                    let key = format!("w{w}-{i}");
                    let seed = w * 1_000_000 + i;
                    let len = 1 + (seed as usize * 7919) % 3_000_000;
                    tried.lock().expect("lock").push((key.clone(), seed, len));
                    let r = put(&format!("{url}/api/v1/object/ns/{key}"), bytes(seed, len));
                    if r.status == 201 {
                        acked.lock().expect("lock").push((key, seed, len));
                    } else if r.status == 0 {
                        return;
                    }
                    i += 1;
                }
            })
        })
        .collect();
    // Killed mid-stream once enough PUTs are acknowledged: a count, not
    // a time (on a busy disk the first PUTs took 1.8 s, and a fixed 1.5 s
    // window saw one).
    wait_until("8 acknowledged PUTs", Duration::from_secs(60), || acked.lock().expect("lock").len() >= 8);
    node.kill9();
    for w in workers {
        w.join().expect("worker");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 8, "too few PUTs before the kill: {}", acked.len());
    node.restart();
    for (key, seed, len) in &acked {
        let r = get(&node.object_url("ns", key));
        assert_eq!(r.status, 200, "acknowledged {key} lost");
        assert!(r.body == bytes(*seed, *len), "acknowledged {key} has wrong bytes");
    }
    // Unacknowledged ones are absent or whole: never partial.
    for (key, seed, len) in tried.lock().expect("lock").iter() {
        let r = get(&node.object_url("ns", key));
        assert!(r.status == 404 || (r.status == 200 && r.body == bytes(*seed, *len)), "{key}: {} partial", r.status);
    }
    let files = object_files(&data).len() as u64;
    assert_eq!(node.stats()["tiers"]["local"]["objects"].as_u64(), Some(files), "index matches the files");
    for shard in [0, 1] {
        assert_eq!(tmp_files(&data, shard), 0, "tmp/ wiped at restart");
    }
}

#[test]
fn a_flipped_byte_is_never_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let node = Node::start(&data, &["--shards", "1"]);
    let body = bytes(11, 1_000_000);

    // In the first block: refused before any status line is sent.
    put(&node.object_url("ns", "first"), body.clone());
    let file = object_files(&data).pop().expect("one file");
    flip_byte(&file, 1000);
    let r = get(&node.object_url("ns", "first"));
    assert_eq!(r.status, 404, "corrupt and no remote copy: a miss");
    wait_until("the owner to remove the corrupt file", Duration::from_secs(10), || !file.exists());
    assert_eq!(node.stats()["tiers"]["local"]["checksum_failures"], 1);

    // In a later block: the stream stops before the bad block.
    put(&node.object_url("ns", "later"), body.clone());
    let file = object_files(&data).pop().expect("one file");
    flip_byte(&file, 600_000);
    let out = curl(&["-s", "-o", "-", &node.object_url("ns", "later")]);
    assert!(!out.status.success(), "curl must see a cut transfer");
    assert!(out.stdout.len() <= 524_288, "{} bytes sent, past the bad block", out.stdout.len());
    assert_eq!(&out.stdout[..], &body[..out.stdout.len()], "only good bytes were sent");
    wait_until("the owner to remove the corrupt file", Duration::from_secs(10), || !file.exists());
    assert_eq!(get(&node.object_url("ns", "later")).status, 404);

    // In the trailer: refused at open.
    put(&node.object_url("ns", "trailer"), body.clone());
    let file = object_files(&data).pop().expect("one file");
    let len = std::fs::metadata(&file).expect("stat").len();
    flip_byte(&file, len - 4096 + 70);
    assert_eq!(get(&node.object_url("ns", "trailer")).status, 404);
    assert_eq!(node.stats()["tiers"]["local"]["checksum_failures"], 3);

    // In a long object, whose GET goes through the page cache and leaves
    // with sendfile: checked before it is sent all the same.
    let long = bytes(12, 20 << 20);
    put(&node.object_url("ns", "long"), long.clone());
    let file = object_files(&data).pop().expect("one file");
    let bad_block_start = 15_000_000 / 262_144 * 262_144;
    flip_byte(&file, 15_000_000);
    let out = curl(&["-s", "-o", "-", &node.object_url("ns", "long")]);
    assert!(!out.status.success(), "curl must see a cut transfer");
    assert!(out.stdout.len() <= bad_block_start, "{} bytes sent, past the bad block", out.stdout.len());
    assert_eq!(&out.stdout[..], &long[..out.stdout.len()], "only good bytes were sent");
    assert_eq!(get(&node.object_url("ns", "long")).status, 404);
    assert_eq!(node.stats()["tiers"]["local"]["checksum_failures"], 4);
}

/// A reader that finds its file corrupt must not take down a newer version
/// published over it while it was reading: only the owner removes files,
/// and only the one the reader opened.
#[test]
fn a_corrupt_file_found_after_it_was_replaced_takes_the_new_version_with_it_never() {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let node = Node::start(&data, &["--shards", "1"]);
    let (old_len, bad_at) = (48 << 20, 44 << 20);
    put(&node.object_url("ns", "k"), bytes(31, old_len));
    let file = object_files(&data).pop().expect("one file");
    flip_byte(&file, bad_at);

    // A slow reader: it takes the head and a little data, then stops
    // reading, so the node is held in the send buffers far before the bad
    // block, with the old file open.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", node.port)).expect("connect");
    write!(slow, "GET /api/v1/object/ns/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
    let mut first = vec![0u8; 64 << 10];
    slow.read_exact(&mut first).expect("the first bytes");
    assert!(first.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first[..40]));

    // The object is replaced meanwhile.
    let new = bytes(32, 100_000);
    assert_eq!(put(&node.object_url("ns", "k"), new.clone()).status, 201);

    // The reader goes on, reaches the bad block and is cut off.
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let head = first.windows(4).position(|w| w == b"\r\n\r\n").expect("a whole head") + 4;
    let sent = (first.len() + rest.len() - head) as u64;
    assert!(sent <= bad_at, "{sent} bytes sent, past the bad block");
    wait_until("the node to count the bad block", Duration::from_secs(10), || {
        node.stats()["tiers"]["local"]["checksum_failures"] == 1
    });

    // The new version is still there, whole.
    let r = get(&node.object_url("ns", "k"));
    assert_eq!((r.status, r.body == new), (200, true), "the new version was taken down");
    assert_eq!(object_files(&data).len(), 1);
}

#[test]
fn a_client_gone_mid_upload_leaves_no_partial_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let node = Node::start(&data, &["--shards", "1"]);
    // Dropped at once: the connection closes with 7 MB unsent.
    drop(partial_put(node.port, "cut", 10_000_000, &bytes(5, 3_000_000)));
    wait_until("the partial upload to be removed", Duration::from_secs(10), || tmp_files(&data, 0) == 0);
    assert_eq!(get(&node.object_url("ns", "cut")).status, 404);
    assert!(object_files(&data).is_empty());
}
