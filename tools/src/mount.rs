//! `trove mount`, `trove umount`, `trove mounts`: the CLI of the lazy
//! mount. Parsing and printing only; the mount itself is trove-fusefront.

use crate::client::ClientFailure;
use anyhow::Result;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use trove_fusefront::mount::{MountEvent, MountOptions, ReadPath, Revision, Transport};
use trove_fusefront::status::{self, MountRecord};

/// Mount a repo at a commit as a writable working tree; files hydrate on
/// first read, and what is written stays in the mount's overlay.
///
/// The tree is ready as soon as its index (every path, mode, size and
/// symlink target) is in memory: stat, ls, find and readlink never fetch
/// file contents. The first read of a file fetches its blob from the node
/// (batched, deduplicated, checked against its git id) into the local
/// cache under --data-dir; after that the kernel keeps its pages and opens
/// it without asking the daemon (see --read-path). Files are what `git
/// checkout` writes with a default config: `text`/`eol`/`ident`
/// conversions from the tree's .gitattributes apply; a filter driver never
/// runs.
///
/// Writes (new files, edits, renames, deletes, chmod, symlinks, fifos)
/// go to an overlay under --data-dir, one per mountpoint: mounting the
/// same directory again (after a crash too) finds them, and what an fsync
/// returned for survives a crash. The overlay is never evicted (`trove
/// mounts` shows its size) and is over one commit: a mount of another
/// commit on that mountpoint is refused. A hard link to a file of the
/// commit not written yet is refused (EPERM); write it first.
///
/// One daemon per data dir serves every mount on it: the first `trove
/// mount` starts it (in the background, logging to DATA_DIR/mountd.log),
/// later ones ask it for theirs, and it exits when its last mount is
/// gone. Its mounts share one blob cache (a blob is fetched once for every
/// repo and commit that has it), each repo's fetches run on the shard that
/// owns it, and each mount keeps its own overlay. `trove mount` prints
/// `ready ...` once the tree is served and exits 0; `trove umount DIR`
/// removes one mount, and `trove mounts` shows them all. With
/// --foreground this process is the daemon instead: it serves until its
/// mounts are gone or SIGTERM/Ctrl-C, which unmounts them cleanly. A
/// killed daemon leaves its mounts dead (every access: "Transport
/// endpoint is not connected"); `trove mount` on one detaches it and
/// brings its overlay back, `trove umount` just detaches it.
///
/// Exit codes: 0 ready (--foreground: unmounted cleanly); 1 the node or
/// the mount daemon failed; 2 bad arguments;
/// 3 no such repo, ref or commit; 5 the node is unreachable; 6 the node's
/// tree index was refused; 8 the mountpoint or data dir is unusable (not an
/// empty directory, a dead mount of another filesystem, a data dir a node
/// holds, or another daemon with --foreground); 9 FUSE refused
/// the mount (needs /dev/fuse and root or CAP_SYS_ADMIN); 130 stopped by a
/// signal before the tree was ready.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct MountArgs {
    /// The repo: an upstream URL (https://github.com/org/repo) or host/org/repo.
    pub repo: String,
    /// An empty directory to mount the tree on.
    pub mountpoint: PathBuf,
    /// Node to mount from. `http://user:token@host:port` sends the token
    /// (for a private repo) as Basic auth.
    #[arg(long, env = "TROVE_URL", default_value = "http://127.0.0.1:8080")]
    pub node: String,
    /// Mount this branch or tag (resolved by the node when the mount starts). Default: HEAD.
    #[arg(long, conflicts_with = "commit")]
    pub r#ref: Option<String>,
    /// Mount this commit (40 hex digits).
    #[arg(long)]
    pub commit: Option<String>,
    /// The data dir: the blob cache, every mountpoint's overlay, and the
    /// daemon that serves every mount on it. Default:
    /// $XDG_CACHE_HOME/trove/mounts (or ~/.cache/trove/mounts), one for
    /// all of this user's mounts that name no other, so they share one
    /// daemon and one blob cache.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Most hydrated bytes kept; the least recently opened blobs go first
    /// and come back on their next open. The data dir's daemon's: set by
    /// the mount that starts it, shared by the mounts that join it.
    #[arg(long, default_value = "8GiB", value_parser = trove_engine::units::parse_size)]
    pub cache_capacity: u64,
    /// `dir`: a file's first read also fetches the small files a walk reads
    /// after it (depth first, by name; 4 in its directory's subtree, more
    /// and across directories while the reader keeps walking; behind every
    /// read); `off`: only what is read is fetched. Listings never fetch.
    #[arg(long, default_value = "dir", value_parser = ["off", "dir"])]
    pub prefetch: String,
    /// How long a first read (or open) waits on the node for each part of a fetch before it fails with EIO; the whole fetch must also arrive at 256 KiB/s on average.
    #[arg(long, default_value = "10s", value_parser = trove_engine::units::parse_duration)]
    pub fetch_timeout: Duration,
    /// How long the mount may wait for its tree index: from the start, and
    /// while the node clones a repo new to it (progress is printed), from
    /// the node's last progress. Operations that arrive meanwhile wait;
    /// once it passes they get EIO and the mount exits 5 (run it again
    /// once the node has the repo, or raise this).
    #[arg(long, default_value = "30s", value_parser = trove_engine::units::parse_duration)]
    pub ready_timeout: Duration,
    /// How the kernel reads files. `kernel`: it opens them itself (no
    /// round trip to the daemon per open) and keeps each file's pages
    /// across opens; only reads of pages it lacks come to the daemon.
    /// `passthrough`: every open and close goes to the daemon, which hands
    /// the kernel the cached file (FUSE passthrough; reads never reach the
    /// daemon). `daemon`: opens and reads all go through the daemon.
    #[arg(long, default_value = "kernel", value_parser = ["kernel", "passthrough", "daemon"])]
    pub read_path: String,
    /// The same as `--read-path daemon` (never FUSE passthrough).
    #[arg(long, conflicts_with = "read_path")]
    pub no_passthrough: bool,
    /// How requests reach the daemon. `io-uring`: FUSE over io_uring, one
    /// queue per CPU served by a thread pinned to it, so a request is
    /// answered on the CPU that made it (Linux 6.14+; needs
    /// /sys/module/fuse/parameters/enable_uring set to 1, else the mount
    /// says so and uses /dev/fuse; passthrough reads keep /dev/fuse).
    /// `dev-fuse`: threads reading /dev/fuse. `auto`: io-uring where the
    /// kernel has it on, else dev-fuse. `trove mounts` shows which one a
    /// mount uses. Reads and writes go over either.
    #[arg(long, default_value = "auto", value_parser = ["auto", "dev-fuse", "io-uring"])]
    pub transport: String,
    /// Shards (executors pinned one per core) of the daemon's engine (set
    /// by the mount that starts the daemon). Each repo is owned by one of
    /// them, picked as the node picks its mirror's, and that shard fetches
    /// and lands its blobs; a blob already hydrated is read by the thread
    /// that got the request, on any core. `trove mounts` shows the count
    /// and the owner. [default: every core]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub shards: Option<u16>,
    /// Once ready, fetch the tree's small files (up to 128 KiB each) in
    /// the background, in the order a tree walk reads them, until their
    /// bytes reach this budget (e.g. 256M), so that later first reads
    /// find them local. Below every read and prefetch; paused while the
    /// node is down; counted against --cache-capacity like any blob.
    /// `trove mounts` shows what was chosen and how far it got. 0: off.
    #[arg(long, value_name = "BUDGET", default_value = "0", value_parser = trove_engine::units::parse_size)]
    pub prehydrate: u64,
    /// Let users other than the one who mounted (root) reach the mount:
    /// the kernel checks each access against the tree's modes and owners
    /// (files of the commit are the mounting user's, 0644 or 0755; what
    /// another user makes is theirs). Off by default: as FUSE does, only
    /// the mounting user reaches the tree.
    #[arg(long)]
    pub allow_other: bool,
    /// Serve the mount from this process instead of the data dir's
    /// background daemon: it becomes that daemon (other mounts on the data
    /// dir may join it) and runs until its mounts are gone or SIGTERM or
    /// Ctrl-C, which unmounts them. Refused while a daemon already runs on
    /// the data dir. --shards and --cache-capacity apply to the daemon
    /// the first mount starts; later mounts share it as it is.
    #[arg(long)]
    pub foreground: bool,
}

/// Started by `trove mount` beside itself: the mount daemon of one data
/// dir (see `trove mount --help`). Not for users.
#[derive(clap::Args)]
pub struct MountdArgs {
    pub data_dir: PathBuf,
    #[arg(long)]
    pub shards: usize,
    #[arg(long)]
    pub cache_capacity: u64,
    #[arg(long)]
    pub own_files: bool,
}

/// SIGTERM or SIGINT, as a channel; and the handle that stops listening.
fn stop_on_signals() -> Result<(crossbeam_channel::Receiver<()>, signal_hook::iterator::Handle)> {
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = stop_tx.send(());
        }
    });
    Ok((stop_rx, handle))
}

/// The daemon's stdout, a pipe its starter reads one line from: once
/// that line is written and this dropped, stdout is /dev/null (the
/// starter is gone soon, and nothing more is said there).
struct FirstLine;

impl Write for FirstLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

impl Drop for FirstLine {
    fn drop(&mut self) {
        let _ = std::io::stdout().flush();
        if let Ok(null) = std::fs::File::options().write(true).open("/dev/null") {
            let _ = rustix::stdio::dup2_stdout(&null);
        }
    }
}

/// `trove mountd`.
pub fn mountd(args: MountdArgs) -> Result<()> {
    let (stop, handle) = stop_on_signals()?;
    // It outlives the directory its starter ran in: holding that would
    // keep its filesystem busy. Every path it is given is absolute.
    std::env::set_current_dir("/")?;
    let options = trove_fusefront::daemon::DaemonOptions {
        data_dir: args.data_dir,
        shards: args.shards.clamp(1, 256),
        cache_capacity_bytes: args.cache_capacity,
        own_files: args.own_files,
    };
    let code = trove_fusefront::daemon::background(&options, FirstLine, &stop);
    handle.close();
    if code != 0 {
        return Err(fail(code, "the mount daemon could not start"));
    }
    Ok(())
}

fn fail(code: i32, message: impl Into<String>) -> anyhow::Error {
    ClientFailure { code, message: message.into() }.into()
}

/// The node URL without its userinfo, and that userinfo as an
/// Authorization header.
fn split_auth(node: &str) -> Result<(String, Option<trove_engine::Secret>)> {
    let mut url = url::Url::parse(node).map_err(|e| fail(2, format!("--node {node:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(fail(2, format!("--node {node:?}: use http:// or https://")));
    }
    let auth = if url.username().is_empty() {
        None
    } else {
        use base64::Engine;
        let user = percent_decode(url.username());
        let pass = percent_decode(url.password().unwrap_or(""));
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        Some(trove_engine::Secret::new(format!("Basic {token}")))
    };
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok((url.as_str().trim_end_matches('/').to_owned(), auth))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The default data dir, shared by every mount that names none.
fn default_data_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    cache.join("trove/mounts")
}

pub fn mount(args: MountArgs) -> Result<()> {
    let repo = crate::restore::repo_path(&args.repo)?;
    let (node, auth) = split_auth(&args.node)?;
    let revision = match (&args.r#ref, &args.commit) {
        (_, Some(c)) => {
            if trove_engine::tree::parse_oid(c).is_none() {
                return Err(fail(2, format!("--commit {c:?} is not a commit id (40 hex digits)")));
            }
            Revision::Commit(c.to_ascii_lowercase())
        }
        (Some(r), None) => Revision::Ref(r.clone()),
        (None, None) => Revision::Ref("HEAD".into()),
    };
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let options = MountOptions {
        repo,
        mountpoint: args.mountpoint.clone(),
        node,
        revision,
        data_dir,
        cache_capacity_bytes: args.cache_capacity,
        prefetch: args.prefetch == "dir",
        fetch_timeout: args.fetch_timeout,
        ready_timeout: args.ready_timeout,
        auth,
        read_path: match (args.no_passthrough, args.read_path.as_str()) {
            (true, _) | (_, "daemon") => ReadPath::Daemon,
            (_, "passthrough") => ReadPath::Passthrough,
            _ => ReadPath::Kernel,
        },
        transport: match args.transport.as_str() {
            "io-uring" => Transport::IoUring,
            "dev-fuse" => Transport::DevFuse,
            _ => Transport::Auto,
        },
        shards: args.shards.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), usize::from),
        prehydrate_bytes: args.prehydrate,
        allow_other: args.allow_other,
    };
    let say_ready = |rec: &MountRecord, took: Duration| {
        println!(
            "ready: {} at {} on {} ({} files) in {:.0?}{}",
            rec.repo,
            &rec.commit[..12.min(rec.commit.len())],
            rec.mountpoint.display(),
            rec.files,
            took,
            if rec.read_path == "kernel" || rec.passthrough {
                String::new()
            } else {
                format!("; reads go through the daemon ({})", rec.read_path)
            }
        );
        let _ = std::io::stdout().flush();
    };
    let progress = |text: &str| eprintln!("trove: {text}");
    if !args.foreground {
        let started = Instant::now();
        let mut options = options;
        // The daemon runs elsewhere: it is told absolute paths.
        options.mountpoint = trove_fusefront::mount::lexical_absolute(&options.mountpoint);
        std::fs::create_dir_all(&options.data_dir)?;
        options.data_dir = std::fs::canonicalize(&options.data_dir)?;
        let trove = std::env::current_exe()?;
        let rec = trove_fusefront::daemon::client::mount(&trove, &options, &progress)
            .map_err(|e| fail(e.exit_code(), e.to_string()))?;
        say_ready(&rec, started.elapsed());
        return Ok(());
    }
    let (stop, handle) = stop_on_signals()?;
    let result = trove_fusefront::daemon::foreground(options, &stop, move |event| match event {
        MountEvent::Progress(text) => progress(&text),
        MountEvent::Ready(rec, took) => say_ready(&rec, took),
    });
    handle.close();
    result.map_err(|e| fail(e.exit_code(), e.to_string()))
}

#[derive(clap::Args)]
pub struct UmountArgs {
    /// The mountpoint.
    pub mountpoint: PathBuf,
    /// How long to wait for a live mount to finish unmounting.
    #[arg(long, default_value = "10s", value_parser = trove_engine::units::parse_duration)]
    pub timeout: Duration,
}

/// `trove umount`: asks a live mount's daemon to unmount it and waits; a
/// dead one (its daemon gone: ENOTCONN) is detached directly.
pub fn umount(args: UmountArgs) -> Result<()> {
    let given = trove_fusefront::mount::lexical_absolute(&args.mountpoint);
    let records = status::list();
    let live = records.iter().find(|r| r.mountpoint == given && r.state != "dead" && r.state != "failed").cloned();
    // Who uses the mount now: the kernel then detaches it lazily (it goes
    // once they let go), which the user should hear, with their names.
    let holders = holders(&given);
    let how = if holders.is_empty() {
        String::new()
    } else {
        format!(
            " lazily: it is busy (used by {}); it goes once they close their files and leave it",
            holders.join(", ")
        )
    };
    if let Some(rec) = live {
        trove_fusefront::daemon::client::unmount(&rec.data_dir, &given, args.timeout)
            .map_err(|e| fail(e.exit_code(), format!("unmounting {}: {e}", given.display())))?;
        println!("unmounted {}{how}", given.display());
        return Ok(());
    }
    match rustix::mount::unmount(&given, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) => {
            MountRecord::remove(&given);
            println!("unmounted {}{how}", given.display());
            Ok(())
        }
        Err(rustix::io::Errno::INVAL) => {
            let failed: Vec<_> = records.iter().filter(|r| r.mountpoint == given && r.state == "failed").collect();
            if failed.is_empty() {
                return Err(fail(2, format!("{} is not a mount", given.display())));
            }
            for r in failed {
                MountRecord::remove(&r.mountpoint);
            }
            println!("removed the record of the failed mount on {}", given.display());
            Ok(())
        }
        Err(e) => Err(fail(1, format!("unmounting {}: {e}", given.display()))),
    }
}

/// Processes with a file open, or their working directory, under `dir`,
/// as "pid 123 (cat)", from /proc (links are read, never followed: a dead
/// mount is not touched). Those this user may not inspect are missed.
fn holders(dir: &Path) -> Vec<String> {
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out = Vec::new();
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let under = |link: PathBuf| std::fs::read_link(link).is_ok_and(|t| t.starts_with(dir));
        let fds = std::fs::read_dir(p.path().join("fd")).into_iter().flatten().flatten();
        if under(p.path().join("cwd")) || fds.into_iter().any(|fd| under(fd.path())) {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            out.push(format!("pid {pid} ({})", comm.trim()));
        }
        if out.len() == 8 {
            out.push("more".into());
            break;
        }
    }
    out
}

#[derive(clap::Args)]
pub struct MountsArgs {
    /// Print JSON (one array of records) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `trove mounts`.
pub fn mounts(args: MountsArgs) -> Result<()> {
    let list = status::list();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if list.is_empty() {
        println!("no trove mounts");
        return Ok(());
    }
    println!(
        "{:<31} {:<27} {:<12} {:<9} {:>8} {:>20} {:>7}",
        "MOUNTPOINT", "REPO", "COMMIT", "STATE", "FILES", "HYDRATED", "ERRORS"
    );
    for r in &list {
        let hydrated = format!("{} / {}", r.hydrated_blobs, human(r.hydrated_bytes));
        println!(
            "{:<31} {:<27} {:<12} {:<9} {:>8} {:>20} {:>7}",
            r.mountpoint.display(),
            r.repo,
            &r.commit[..12.min(r.commit.len())],
            r.state,
            r.files,
            hydrated,
            r.errors
        );
        if !r.read_path.is_empty() {
            println!(
                "    read path: {}; transport: {}; shards: {} (the repo's: {}); daemon: pid {}, {} mount{}",
                r.read_path,
                r.transport,
                r.shards,
                r.owner_shard,
                r.pid,
                r.daemon_mounts,
                if r.daemon_mounts == 1 { "" } else { "s" }
            );
        }
        if r.writable {
            println!("    overlay: {} written, in {}", human(r.overlay_bytes), r.overlay_dir.display());
        }
        if r.prehydrate_blobs > 0 {
            println!(
                "    prehydrating {} small files ({}) in the background; see HYDRATED",
                r.prehydrate_blobs,
                human(r.prehydrate_bytes)
            );
        }
        if r.node_down {
            println!("    the node is not answering: files not yet hydrated fail at once until it does");
        }
        if let Some(why) = r.reason.as_ref().or(r.last_error.as_ref()) {
            println!("    {why}");
        }
        if r.state == "dead" {
            println!("    its daemon is gone; run `trove umount {}`", r.mountpoint.display());
        }
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_in_the_node_url_becomes_basic_auth_and_leaves_the_url() {
        let (url, auth) = split_auth("http://me:s3cret@127.0.0.1:8080/").expect("valid");
        assert_eq!(url, "http://127.0.0.1:8080");
        assert_eq!(auth.expect("auth").expose(), "Basic bWU6czNjcmV0");
        assert!(split_auth("ftp://x").is_err());
    }
}
