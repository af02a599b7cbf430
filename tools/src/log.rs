//! Logging for the binary: `tracing` to stderr, filtered by `RUST_LOG`, else
//! `--log` / `TROVE_LOG`, with two known-harmless messages of glommio's
//! taken out.
//!
//! glommio probes every device for io_uring polled I/O (IOPOLL) when a
//! shard first opens a file on it, and on a device without it (virtio and
//! most virtual disks) it logs the failed probe at ERROR, once per shard.
//! Nothing is wrong: it falls back to interrupt-driven I/O. A user reads
//! ERROR as broken, so [`IopollNotice`] drops exactly that message and
//! `trove serve` says once, at INFO, what it meant ([`say_iopoll_once`]).
//!
//! Run as a user other than root, glommio cannot register its I/O buffers
//! with io_uring (they count against RLIMIT_MEMLOCK, 8 MiB here) and warns
//! that it skips them, once per shard. Nothing is wrong either: I/O uses
//! unregistered buffers. That warning is dropped and said at DEBUG.

use std::sync::atomic::{AtomicBool, Ordering};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Set when glommio's failed iopoll probe was dropped.
static IOPOLL_PROBE_FAILED: AtomicBool = AtomicBool::new(false);
/// Set once the INFO line is out.
static IOPOLL_SAID: AtomicBool = AtomicBool::new(false);

/// The words of glommio's message (glommio 0.9 `reactor.rs`).
const IOPOLL_PROBE_MESSAGE: &str = "probing iopoll support";
/// The words of glommio's buffer-registration warning (`sys/uring.rs`).
const BUFFERS_MESSAGE: &str = "registering buffers";

/// Drops glommio's failed-iopoll-probe event and remembers it was seen.
struct IopollNotice;

struct MessageHas<'a>(&'a str, bool);

impl Visit for MessageHas<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && format!("{value:?}").contains(self.0) {
            self.1 = true;
        }
    }
}

impl<S> Filter<S> for IopollNotice {
    fn enabled(&self, _: &tracing::Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, _: &Context<'_, S>) -> bool {
        // glommio logs through the `log` crate: bridged events carry the
        // target `log` (the original is in the `log.target` field).
        if !matches!(event.metadata().target(), "log" | "glommio::reactor" | "glommio::sys::uring") {
            return true;
        }
        let mut found = MessageHas(IOPOLL_PROBE_MESSAGE, false);
        event.record(&mut found);
        if found.1 {
            IOPOLL_PROBE_FAILED.store(true, Ordering::Release);
            return false;
        }
        let mut buffers = MessageHas(BUFFERS_MESSAGE, false);
        event.record(&mut buffers);
        if buffers.1 {
            tracing::debug!(
                "io_uring buffers not registered (RLIMIT_MEMLOCK too small for this user); unregistered buffers are used"
            );
            return false;
        }
        true
    }
}

/// Installs the subscriber: `RUST_LOG` if set, else `default_filter`.
pub fn init(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Colours only for a terminal: a log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_filter(filter)
        .with_filter(IopollNotice);
    tracing_subscriber::registry().with(fmt).init();
}

/// Says once, at INFO, what glommio's dropped probe message meant, if it
/// was dropped.
pub fn say_iopoll_once() {
    if IOPOLL_PROBE_FAILED.load(Ordering::Acquire) && !IOPOLL_SAID.swap(true, Ordering::AcqRel) {
        tracing::info!(
            "this disk does not support io_uring polled I/O (IOPOLL), as most virtual disks do not; \
             trove uses interrupt-driven io_uring I/O instead, which is normal"
        );
    }
}
