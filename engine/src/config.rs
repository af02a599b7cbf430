//! The engine's configuration: one plain struct, documented field by field.
//! The CLI, the TOML file and `TROVE_*` variables all resolve into it.

use crate::remote::RemoteConfig;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Number of shards (pinned executors). Default: every core.
    pub shards: usize,
    /// First CPU to pin shard 0 to; shard i runs on CPU (first_cpu + i) mod
    /// cores. Default 0.
    pub first_cpu: usize,
    /// Root of the local tier. Default `./trove-data`.
    pub data_dir: PathBuf,
    /// Most bytes the local tier may hold, split evenly over shards.
    /// Default 64 GiB.
    pub local_capacity_bytes: u64,
    /// Memory for whole small objects (sealed file <= 64 KiB), split evenly
    /// over shards; 0 turns the memory tier off. Default 256 MiB.
    pub memory_cache_bytes: u64,
    /// Memory each shard registers with io_uring for disk reads and writes
    /// in flight (read-ahead, write-behind). I/O past it falls back to the
    /// heap and runs slower. Default 64 MiB: four streams of 4 x 4 MiB.
    pub io_memory_bytes: u64,
    /// Largest object accepted, in bytes. Default 64 GiB.
    pub max_object_bytes: u64,
    /// The S3-compatible remote tier; `None` runs on the local tier alone.
    pub remote: Option<RemoteConfig>,
    /// How long an idle shard spins before it parks. Spinning makes a
    /// cross-shard wake ~13 us instead of ~50-65 us, at the cost of CPU.
    /// Default 0 (park at once).
    pub spin_before_park: Duration,
    /// Threads each shard runs blocking work on (`spawn_blocking`: a
    /// mount landing small blobs through the page cache). 1 (the default)
    /// is one thread pinned to the shard's CPU; more float over all CPUs,
    /// so file creation on one blob overlaps the next.
    pub blocking_threads: usize,
    /// The git face: upstreams, fetch cadence, upload-pack admission.
    pub repo: crate::repo::RepoConfig,
    /// What this process is to a user ("node", "mount"): the data dir's
    /// lock records it, so a second process is told who holds the dir.
    pub role: &'static str,
}

impl Default for NodeConfig {
    fn default() -> Self {
        let shards = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Self {
            shards,
            repo: crate::repo::RepoConfig::new(shards),
            first_cpu: 0,
            data_dir: PathBuf::from("trove-data"),
            local_capacity_bytes: 64 << 30,
            memory_cache_bytes: 256 << 20,
            io_memory_bytes: 64 << 20,
            max_object_bytes: 64 << 30,
            remote: None,
            spin_before_park: Duration::ZERO,
            blocking_threads: 1,
            role: "node",
        }
    }
}
