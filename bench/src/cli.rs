//! `trove bench` subcommands and their flags.

use crate::object::{self, ObjectBench};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Object GETs: small-object latency (open loop, CO-corrected) and
    /// large-object throughput, next to nginx sendfile on the same files,
    /// the disk's O_DIRECT ceiling (fio) and loopback TCP.
    Object(ObjectArgs),
    /// Git: warm `git clone` through trove and `trove restore`, next to a
    /// clone straight from the upstream (git daemon), and N concurrent cold
    /// clones with the upstream's upload-packs counted. On a generated repo
    /// (50k files, 200 MB by default) or any local repo (--repo).
    Git(GitArgs),
    /// The lazy mount: time to ready next to `git clone` and `trove
    /// restore`, metadata with blobs counted, first reads (from the node,
    /// from the local tier) and hydrated preads open loop, sequential and
    /// whole-tree reads, each next to an ext4 checkout of the same commit.
    /// On a generated repo (100k files, 1 GB, plus a 256 MiB file) or any
    /// local repo (--repo). Needs root (FUSE).
    Mount(MountArgs),
}

#[derive(Args)]
pub struct MountArgs {
    /// Bench this local repo instead of a generated one.
    #[arg(long)]
    repo: Option<PathBuf>,
    /// Files of the generated repo.
    #[arg(long, default_value_t = 100_000)]
    files: usize,
    /// Bytes of the generated repo's files, in all (the 256 MiB file comes on top).
    #[arg(long, default_value_t = 1_000_000_000)]
    bytes: u64,
    /// Rounds of clone, restore and mount-ready; the report takes medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// First reads per second (open loop) of the first-read phases.
    #[arg(long, default_value_t = 200)]
    first_read_rate: u64,
    /// Preads per second (open loop) of the hydrated-pread phase.
    #[arg(long, default_value_t = 20_000)]
    pread_rate: u64,
    /// Where the upstream, the node's data, the checkout and the mounts go.
    #[arg(long, default_value = "/var/tmp/trove-bench/data")]
    work_dir: PathBuf,
    /// Where results (JSON, markdown, SVG) are written: outside the source
    /// tree by default (copy a run into bench/results to quote it).
    #[arg(long, default_value = "/var/tmp/trove-bench/results")]
    out: PathBuf,
    /// Do not drop the page cache before each cold step.
    #[arg(long)]
    keep_page_cache: bool,
}

#[derive(Args)]
pub struct GitArgs {
    /// Bench this local repo instead of a generated one.
    #[arg(long)]
    repo: Option<PathBuf>,
    /// Files of the generated repo.
    #[arg(long, default_value_t = 50_000)]
    files: usize,
    /// Bytes of the generated repo's files, in all.
    #[arg(long, default_value_t = 200_000_000)]
    bytes: u64,
    /// Rounds, alternating upstream clone, trove clone and trove restore;
    /// the report takes medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent cold clones.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Where the upstream, the nodes' data and the clones go.
    #[arg(long, default_value = "/var/tmp/trove-bench/data")]
    work_dir: PathBuf,
    /// Where results (JSON, markdown) are written: outside the source tree
    /// by default (copy a run into bench/results to quote it).
    #[arg(long, default_value = "/var/tmp/trove-bench/results")]
    out: PathBuf,
    /// Do not drop the page cache before each timed step (it is dropped
    /// when running as root, after a `sync`, so no step inherits the state
    /// the one before it left; see the README).
    #[arg(long)]
    keep_page_cache: bool,
}

#[derive(Args)]
pub struct ObjectArgs {
    /// Bench a node already running here instead of starting one.
    #[arg(long)]
    url: Option<String>,
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds of each phase, alternating trove and nginx; the report takes
    /// the median round (shared machines are noisy).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Size of the small object, in bytes.
    #[arg(long, default_value_t = 4096)]
    small_bytes: usize,
    /// Size of the large object, in bytes (at least 256 MiB for the figure).
    #[arg(long, default_value_t = 256 << 20)]
    large_bytes: usize,
    /// Requests per second of the small-object open-loop phase; by default
    /// half of nginx's closed-loop maximum measured in the same run.
    #[arg(long)]
    rate: Option<f64>,
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Where the node's data, nginx's files and fio's file go: the disk under test.
    #[arg(long, default_value = "/var/tmp/trove-bench/data")]
    work_dir: PathBuf,
    /// Where results (JSON, markdown, SVG) are written: outside the source
    /// tree by default (copy a run into bench/results to quote it).
    #[arg(long, default_value = "/var/tmp/trove-bench/results")]
    out: PathBuf,
    /// CPU of the servers (trove's one shard, nginx's one worker).
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// CPU of the load generator.
    #[arg(long, default_value_t = 1)]
    loadgen_cpu: usize,
}

pub fn run(cmd: BenchCommand, trove: PathBuf) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Object(a) => {
            object::run(ObjectBench {
                trove,
                url: a.url,
                duration: std::time::Duration::from_secs(a.seconds.max(1)),
                small_bytes: a.small_bytes,
                large_bytes: a.large_bytes,
                connections: a.connections,
                rate: a.rate,
                work_dir: a.work_dir,
                out: a.out,
                server_cpu: a.server_cpu,
                loadgen_cpu: a.loadgen_cpu,
                rounds: a.rounds,
            })?;
            Ok(())
        }
        BenchCommand::Mount(a) => {
            crate::mount::run(crate::mount::MountBench {
                trove,
                repo: a.repo,
                files: a.files,
                total_bytes: a.bytes,
                rounds: a.rounds.max(1),
                work_dir: a.work_dir,
                out: a.out,
                keep_page_cache: a.keep_page_cache,
                first_read_rate: a.first_read_rate,
                pread_rate: a.pread_rate,
            })?;
            Ok(())
        }
        BenchCommand::Git(a) => {
            crate::git::run(crate::git::GitBench {
                trove,
                repo: a.repo,
                files: a.files,
                total_bytes: a.bytes,
                rounds: a.rounds.max(1),
                clients: a.clients.max(1),
                work_dir: a.work_dir,
                out: a.out,
                keep_page_cache: a.keep_page_cache,
            })?;
            Ok(())
        }
    }
}
