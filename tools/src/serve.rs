//! `trove serve`: start the shards with the HTTP face and run until
//! SIGTERM or SIGINT, then drain in-flight requests and exit 0.

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use trove_engine::NodeConfig;
use trove_server::ServerConfig;

/// Exit status after a panic on any thread (EX_SOFTWARE).
const EXIT_PANIC: i32 = 70;

pub fn run(node: NodeConfig, server: ServerConfig) -> Result<()> {
    exit_on_panic();
    raise_fd_limit();
    crate::port_check::refuse_a_taken_address(server.listen)?;
    tracing::info!(
        listen = %server.listen,
        data_dir = %node.data_dir.display(),
        shards = node.shards,
        local_capacity_bytes = node.local_capacity_bytes,
        remote = node.remote.as_ref().map(|r| format!("{} bucket {}", r.endpoint, r.bucket)).unwrap_or_else(|| "none (local tier only)".into()),
        "starting trove"
    );
    let handle = trove_engine::start(node, move |shard| trove_server::serve(shard, server.clone()))
        .context("starting the node")?;
    // Beside the node for its whole life; its pipe closes when the node
    // exits, however it exits (orphans.rs).
    let _watcher = crate::orphans::start(&handle.shared.config.data_dir)?;
    let shared = handle.shared.clone();
    let started = handle.shared.clone();
    std::thread::Builder::new()
        .name("trove-started".into())
        .spawn(move || {
            // Every shard has opened its first file once the node is ready.
            while !started.is_ready() && !started.is_stopping() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            crate::log::say_iopoll_once();
        })
        .context("starting the start-up notice thread")?;
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("trove-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!(signal = sig, "stopping: draining in-flight requests");
                shared.request_stop();
            }
        })
        .context("starting the signal thread")?;
    handle.join().context("a shard failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Many idle client connections must not run the node out of descriptors:
/// lift the soft limit to the hard one.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(max), maximum: Some(max) });
    }
}

/// A panic on a shard's thread would stop that shard while the others
/// serve on: its connections would hang and requests it owns would wait
/// forever. Better to exit at once: clients see their connections close,
/// a supervisor restarts the node, and startup recovers what was committed.
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        tracing::error!(%info, "a thread panicked; exiting so the node can be restarted whole");
        std::process::exit(EXIT_PANIC);
    }));
}
