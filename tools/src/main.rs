//! `trove`: the one command-line binary. Thin: parse, resolve, call the
//! library crates. Errors become messages and exit codes here, once.

mod client;
mod config;
mod index_stat;
mod limits;
mod log;
mod mount;
mod orphans;
mod port_check;
mod restore;
mod serve;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// trove: a git artifact cache node on a shard-per-core io_uring engine.
///
/// Start a node on the local tier alone:
///     trove serve --listen 127.0.0.1:8080 --data-dir ./trove-data
///
/// Store and fetch an artifact:
///     trove put ci linux.tar.zst ./linux.tar.zst --ttl 7d
///     trove get ci linux.tar.zst ./out.tar.zst
///
/// Add a shared S3-compatible tier behind the local disk:
///     AWS_ACCESS_KEY_ID=.. AWS_SECRET_ACCESS_KEY=.. trove serve \
///         --s3-endpoint http://127.0.0.1:8333 --s3-bucket trove
///
/// Serve git through the cache, and make working trees fast:
///     git clone http://127.0.0.1:8080/git/github.com/org/repo
///     trove restore github.com/org/repo ./repo
///
/// Measure it against nginx and the machine's limits:
///     trove bench object
#[derive(Parser)]
#[command(name = "trove", version, verbatim_doc_comment)]
struct Cli {
    /// Log filter (error, warn, info, debug, or per module). Also RUST_LOG.
    #[arg(long, global = true, env = "TROVE_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ObjectArgs {
    /// Node to talk to.
    #[arg(long, env = "TROVE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Namespace: 1-128 of A-Z a-z 0-9 . _ -
    namespace: String,
    /// Key: 1-1024 bytes of UTF-8, no slashes or control characters.
    key: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run a cache node (every flag is also a TROVE_* variable and a key of --config).
    Serve(Box<config::ServeArgs>),
    /// Store FILE (or stdin) as NAMESPACE/KEY; prints its ETag and size.
    Put {
        #[command(flatten)]
        object: ObjectArgs,
        /// File to upload; `-` or nothing reads stdin.
        file: Option<PathBuf>,
        /// Time to live: seconds, or 90s / 15m / 1h / 7d.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Fetch NAMESPACE/KEY into FILE (or stdout).
    Get {
        #[command(flatten)]
        object: ObjectArgs,
        /// Where to write; `-` or nothing writes stdout.
        file: Option<PathBuf>,
    },
    /// Print an object's size, ETag, tier and time to live as JSON.
    Stat {
        #[command(flatten)]
        object: ObjectArgs,
    },
    /// Remove an object from every tier.
    Delete {
        #[command(flatten)]
        object: ObjectArgs,
    },
    /// Make a working tree of a repo from a node's snapshot (faster than git clone).
    ///
    /// Exit codes: 0 done; 1 the node failed; 2 bad arguments; 3 no such repo,
    /// ref or commit; 4 the snapshot kept changing; 5 the node is unreachable or
    /// the download broke; 6 the archive was refused (an entry escapes the
    /// target, or it is corrupt); 7 a git step failed; 8 the target exists
    /// and is not empty, or could not be written.
    #[command(verbatim_doc_comment)]
    Restore(restore::RestoreArgs),
    Mount(mount::MountArgs),
    /// Unmount a trove mount: a live one stops cleanly, a dead one (its
    /// daemon killed: every access says "Transport endpoint is not
    /// connected") is detached.
    Umount(mount::UmountArgs),
    /// List trove mounts: repo, commit, state (preparing, ready, failed,
    /// stopping, dead), files, hydrated blobs and bytes, errors.
    Mounts(mount::MountsArgs),
    /// Latency and throughput benchmarks, side by side with baselines.
    #[command(subcommand)]
    Bench(trove_bench::cli::BenchCommand),
    /// The mount daemon of one data dir, started by `trove mount`; not for users.
    #[command(hide = true)]
    Mountd(mount::MountdArgs),
    /// Started by `trove serve` beside itself (see orphans.rs); not for users.
    #[command(name = "watch-orphans", hide = true)]
    WatchOrphans {
        data_dir: PathBuf,
        node_pid: u32,
    },
}

fn main() {
    let cli = Cli::parse();
    log::init(&cli.log);
    match run(cli.command) {
        Ok(()) => {}
        Err(e) => {
            let code = e.downcast_ref::<client::ClientFailure>().map_or(1, |f| f.code);
            eprintln!("trove: {e:#}");
            std::process::exit(code);
        }
    }
}

fn run(command: Command) -> Result<()> {
    let target = |o: ObjectArgs| -> Result<client::Target> {
        let t = client::Target { url: o.url, namespace: o.namespace, key: o.key };
        t.validate()?;
        Ok(t)
    };
    match command {
        Command::Serve(args) => {
            let (node, server) = config::resolve(*args)?;
            serve::run(node, server)
        }
        Command::Put { object, file, ttl } => client::put(&target(object)?, file, ttl),
        Command::Get { object, file } => client::get(&target(object)?, file),
        Command::Stat { object } => client::stat(&target(object)?),
        Command::Delete { object } => client::delete(&target(object)?),
        Command::Restore(args) => restore::run(args),
        Command::Mount(args) => mount::mount(args),
        Command::Umount(args) => mount::umount(args),
        Command::Mounts(args) => mount::mounts(args),
        Command::Mountd(args) => mount::mountd(args),
        Command::Bench(cmd) => trove_bench::cli::run(cmd, std::env::current_exe()?),
        Command::WatchOrphans { data_dir, node_pid } => orphans::watch(&data_dir, node_pid),
    }
}
