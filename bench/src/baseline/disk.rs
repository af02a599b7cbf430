//! Disk ceilings, with fio: sequential O_DIRECT reads (io_uring) of a fresh
//! file on the data directory's filesystem (4 MiB, queue depth 8), and of
//! trove's own object file with trove's steady read pattern (4 MiB, 4 in
//! flight), which says what O_DIRECT can give trove on this disk.

use std::path::Path;
use std::process::Command;

/// Bytes per second fio reads with O_DIRECT from a fresh `size_mib` file in `dir`.
pub fn read_ceiling(dir: &Path, size_mib: u64) -> anyhow::Result<f64> {
    let file = dir.join("fio-ceiling.bin");
    let bw = fio_read(&file, &[&format!("--size={size_mib}M"), "--bs=4M", "--iodepth=8"]);
    let _ = std::fs::remove_file(&file);
    bw
}

/// Bytes per second fio reads, read-only, from an existing `file` with
/// 4 MiB O_DIRECT reads, 4 in flight (trove's steady READ_UNIT_MAX x READ_AHEAD), twice over.
pub fn same_pattern(file: &Path) -> anyhow::Result<f64> {
    fio_read(file, &["--readonly", "--bs=4M", "--iodepth=4", "--loops=2"])
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
