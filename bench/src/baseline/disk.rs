//! The disk ceiling: fio sequential O_DIRECT reads (1 MiB, io_uring, queue
//! depth 8) of a file on the data directory's filesystem.

use std::path::Path;
use std::process::Command;

/// Bytes per second fio reads with O_DIRECT from a `size_mib` file in `dir`.
pub fn read_ceiling(dir: &Path, size_mib: u64) -> anyhow::Result<f64> {
    let file = dir.join("fio-ceiling.bin");
    let out = Command::new("fio")
        .args(["--name=ceiling", "--rw=read", "--bs=1M", "--direct=1", "--ioengine=io_uring", "--iodepth=8"])
        .arg(format!("--filename={}", file.display()))
        .arg(format!("--size={size_mib}M"))
        .args(["--output-format=json"])
        .output()
        .map_err(|e| anyhow::anyhow!("running fio ({e}): apt-get install fio (the README's setup does this)"))?;
    let _ = std::fs::remove_file(&file);
    anyhow::ensure!(out.status.success(), "fio failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // fio may print notes before the JSON document.
    let json_start = text.find('{').ok_or_else(|| anyhow::anyhow!("fio printed no JSON"))?;
    let v: serde_json::Value = serde_json::from_str(&text[json_start..])?;
    let bw =
        v["jobs"][0]["read"]["bw_bytes"].as_f64().ok_or_else(|| anyhow::anyhow!("fio JSON lacks read.bw_bytes"))?;
    Ok(bw)
}
