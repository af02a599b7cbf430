//! The record each running mount keeps of itself, for `trove mounts` and
//! `trove umount`: one JSON file per mountpoint under the run dir (named
//! by the mountpoint's id; `pid` is the daemon serving it), rewritten
//! (atomically: temp file and rename) as its state changes and every
//! `STATUS_INTERVAL`.
//!
//! Run dir: `$TROVE_RUN_DIR`, else `/run/trove` for root, else
//! `$XDG_RUNTIME_DIR/trove`, else `/tmp/trove-UID`. A record whose process
//! is gone is stale: `trove mounts` shows it as `dead` while the kernel
//! still has the mount (ENOTCONN for every access until `trove umount`),
//! and removes it once the mount is gone too, except the record of a mount
//! whose preparation failed, kept with its reason until the next mount on
//! that mountpoint or `trove umount`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One mount, as its daemon last wrote it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MountRecord {
    /// The daemon serving the mount (with every other mount on its data dir).
    pub pid: u32,
    pub repo: String,
    pub commit: String,
    pub mountpoint: PathBuf,
    pub node: String,
    pub data_dir: PathBuf,
    /// preparing, ready, failed, stopping; `trove mounts` adds dead.
    pub state: String,
    /// Why preparing failed.
    pub reason: Option<String>,
    pub files: u64,
    /// How files are read: `kernel` (no FUSE opens), `passthrough` or
    /// `daemon` (`trove mount --read-path`; passthrough the kernel refused
    /// shows as daemon).
    pub read_path: String,
    /// How FUSE requests reach the daemon: `io_uring` (a queue per CPU) or
    /// `/dev/fuse` (`trove mount --transport`).
    pub transport: String,
    /// The engine's shards (`trove mount --shards`), and the one that
    /// owns the repo (fetches and lands its blobs).
    #[serde(default)]
    pub shards: u32,
    #[serde(default)]
    pub owner_shard: u32,
    /// What `--prehydrate` chose to fetch in the background: blobs and
    /// their bytes (0 when off).
    #[serde(default)]
    pub prehydrate_blobs: u64,
    #[serde(default)]
    pub prehydrate_bytes: u64,
    /// Whether writes are taken (into the overlay), and where the
    /// overlay is and how many bytes its written files take on disk (the
    /// user's data: never evicted, never counted in --cache-capacity;
    /// counted every 10 s at most).
    #[serde(default)]
    pub writable: bool,
    #[serde(default)]
    pub overlay_dir: PathBuf,
    #[serde(default)]
    pub overlay_bytes: u64,
    /// Whether opens get a passthrough backing file.
    pub passthrough: bool,
    /// Mounts the daemon serves now, this one included.
    #[serde(default)]
    pub daemon_mounts: u32,
    /// Blobs fetched from the node by the daemon (for all its mounts: they
    /// share one blob cache), and their bytes.
    pub hydrated_blobs: u64,
    pub hydrated_bytes: u64,
    /// Blobs in the local tier now (every mount's on this data dir).
    pub local_blobs: u64,
    pub local_bytes: u64,
    pub cache_capacity_bytes: u64,
    pub evicted_blobs: u64,
    /// Operations answered with an error because a blob could not be had.
    pub errors: u64,
    /// The last such error; cleared once the node answers again after an
    /// outage.
    pub last_error: Option<String>,
    /// The node stopped answering and has not answered since: files not
    /// yet hydrated fail at once.
    #[serde(default)]
    pub node_down: bool,
    pub started_ms: u64,
    pub updated_ms: u64,
}

/// Where mount records live; see the module doc.
pub fn run_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TROVE_RUN_DIR") {
        return PathBuf::from(d);
    }
    let uid = rustix::process::getuid().as_raw();
    if uid == 0 {
        return PathBuf::from("/run/trove");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("trove"),
        None => PathBuf::from(format!("/tmp/trove-{uid}")),
    }
}

fn record_path(dir: &Path, mountpoint: &Path) -> PathBuf {
    dir.join(format!("mount-{}.json", trove_engine::overlay::path_id(mountpoint)))
}

impl MountRecord {
    /// Writes this record (whole or not at all).
    pub fn write(&self) -> std::io::Result<()> {
        let dir = run_dir();
        std::fs::create_dir_all(&dir)?;
        let path = record_path(&dir, &self.mountpoint);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, path)
    }

    /// Removes the record of the mount on `mountpoint`.
    pub fn remove(mountpoint: &Path) {
        let _ = std::fs::remove_file(record_path(&run_dir(), mountpoint));
    }
}

/// Every record, with `state` set to `dead` where the process is gone.
/// Records of dead processes whose mount is gone too are removed.
pub fn list() -> Vec<MountRecord> {
    let dir = run_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mounted = mounted_points();
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("mount-") || !name.ends_with(".json") {
            continue;
        }
        let Ok(bytes) = std::fs::read(e.path()) else { continue };
        let Ok(mut rec) = serde_json::from_slice::<MountRecord>(&bytes) else { continue };
        if !process_alive(rec.pid) {
            if !mounted.contains(&rec.mountpoint) {
                // A mount that failed to prepare keeps its record (and
                // reason) until the next mount there or `trove umount`.
                if rec.state != "failed" {
                    let _ = std::fs::remove_file(e.path());
                    continue;
                }
            } else {
                rec.state = "dead".into();
            }
        }
        out.push(rec);
    }
    out.sort_by(|a, b| a.mountpoint.cmp(&b.mountpoint));
    out
}

/// Whether process `pid` exists and is a trove mount daemon (`trove
/// mountd`, or `trove mount --foreground`), not a reused pid.
pub fn process_alive(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(false);
    !zombie && cmdline.split(|&b| b == 0).any(|arg| arg == b"mount" || arg == b"mountd")
}

/// Mount points of FUSE filesystems named trove, from /proc/self/mountinfo.
pub fn mounted_points() -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    info.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            if !fstype.starts_with("fuse") || !post.split(' ').nth(1).is_some_and(|s| s.starts_with("trove")) {
                return None;
            }
            pre.split(' ').nth(4).map(|p| PathBuf::from(unescape_mountinfo(p)))
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(super::unescape_mountinfo("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(super::unescape_mountinfo("/plain"), "/plain");
    }
}
