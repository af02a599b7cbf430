//! The disk ceiling, with fio: sequential O_DIRECT reads (io_uring) of
//! trove's own object file, the very file its large GETs read, in several
//! request sizes and depths; the ceiling is the best of them. (A fresh
//! file fio lays out itself read 1.8-2.1x slower than trove's file on this
//! virtio disk, so it was no ceiling for trove.)

use std::path::Path;
use std::process::Command;

/// fio's patterns: (request size, requests in flight).
const PATTERNS: [(&str, &str); 3] = [("4M", "8"), ("4M", "16"), ("1M", "32")];

/// Each pattern's bytes per second on `file`, read-only, twice over.
pub fn file_ceiling(file: &Path) -> anyhow::Result<Vec<(String, f64)>> {
    PATTERNS
        .iter()
        .map(|(bs, depth)| {
            let bw =
                fio_read(file, &["--readonly", &format!("--bs={bs}"), &format!("--iodepth={depth}"), "--loops=2"])?;
            Ok((format!("{bs} x {depth}"), bw))
        })
        .collect()
}

fn fio_read(file: &Path, extra: &[&str]) -> anyhow::Result<f64> {
    let out = Command::new("fio")
        .args(["--name=ceiling", "--rw=read", "--direct=1", "--ioengine=io_uring", "--output-format=json"])
        .arg(format!("--filename={}", file.display()))
        .args(extra)
        .output()
        .map_err(|e| anyhow::anyhow!("running fio ({e}): apt-get install fio (the README's setup does this)"))?;
    anyhow::ensure!(out.status.success(), "fio failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // fio may print notes before the JSON document.
    let json_start = text.find('{').ok_or_else(|| anyhow::anyhow!("fio printed no JSON"))?;
    let v: serde_json::Value = serde_json::from_str(&text[json_start..])?;
    v["jobs"][0]["read"]["bw_bytes"].as_f64().ok_or_else(|| anyhow::anyhow!("fio JSON lacks read.bw_bytes"))
}
