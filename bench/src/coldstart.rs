//! Cold start against S3: a node with an empty disk and no mirror serves a
//! snapshot that only S3 has. Measured per round on a fresh node: the time
//! to the first byte of the snapshot, next to the time to the first byte of
//! the same stored object fetched from S3 directly, in the same round.
//!
//! One node builds the snapshot first and uploads it (with the pointer and
//! the mirror snapshot), then is stopped; every round starts a new node on
//! a new data dir against the same bucket.

use crate::node::{timed_request, BenchNode};
use crate::seaweed::Seaweed;
use anyhow::Result;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct ColdStart {
    /// Time to first byte from a cold node, per round (ms).
    pub trove_ms: Vec<f64>,
    /// Time to first byte of the stored object straight from S3 (ms).
    pub s3_ms: Vec<f64>,
    pub object_bytes: u64,
}

/// `node_args` name the upstream; `snap_path` is the snapshot's route.
pub fn run(trove: &Path, work: &Path, node_args: &[&str], snap_path: &str, rounds: usize) -> Result<ColdStart> {
    let weed = Seaweed::start(&work.join("seaweed"))?;
    let mut args: Vec<String> = weed.flags();
    args.extend(node_args.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let fresh = |name: &str| -> Result<BenchNode> {
        let d = work.join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)?;
        BenchNode::start_with(trove, &d, &args)
    };

    // The first node builds and uploads: the snapshot, its pointer, and
    // last the mirror snapshot, so three objects mean all are there.
    let builder = fresh("cold-builder")?;
    let built = timed_request(builder.addr, "GET", snap_path, "", &[])?;
    anyhow::ensure!(built.status == 200, "building the snapshot: HTTP {}", built.status);
    let deadline = Instant::now() + Duration::from_secs(300);
    let (key, object_bytes) = loop {
        let objects = weed.objects()?;
        if objects.len() >= 3 {
            break objects.into_iter().max_by_key(|(_, size)| *size).expect("three objects");
        }
        anyhow::ensure!(Instant::now() < deadline, "the snapshot did not reach S3 in 5 minutes");
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(builder);

    let s3_path = format!("/{}/{key}", weed.bucket);
    let (mut trove_ms, mut s3_ms) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let direct = timed_request(weed.s3, "GET", &s3_path, "", &[])?;
        anyhow::ensure!(direct.status == 200, "S3 GET: HTTP {}", direct.status);
        let node = fresh(&format!("cold-{round}"))?;
        let cold = timed_request(node.addr, "GET", snap_path, "", &[])?;
        anyhow::ensure!(cold.status == 200, "cold snapshot GET: HTTP {}", cold.status);
        anyhow::ensure!(
            cold.bytes + 4096 >= built.bytes,
            "the cold node sent {} bytes, the builder {}",
            cold.bytes,
            built.bytes
        );
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        eprintln!(
            "cold start {round}: first byte from a cold node {:.1} ms, from S3 directly {:.1} ms",
            ms(cold.first_byte),
            ms(direct.first_byte)
        );
        trove_ms.push(ms(cold.first_byte));
        s3_ms.push(ms(direct.first_byte));
    }
    Ok(ColdStart { trove_ms, s3_ms, object_bytes })
}
