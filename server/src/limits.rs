//! Limits and defaults of the HTTP face, with units and reasons.

use std::time::Duration;

/// Longest request head (request line + headers), in bytes. hyper answers
/// 431 past it. 16 KiB fits any real client; hyper's floor is 8 KiB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
const _: () = assert!(MAX_HEADER_BYTES >= 8192);

/// A connection that sends nothing for this long is closed. Also bounds a
/// slow upload's pauses.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Most connections one shard keeps open; past it new ones are closed at
/// once (the other shards still accept).
pub const MAX_CONNECTIONS_PER_SHARD: usize = 16_384;

/// How long a shutdown waits for in-flight requests before it gives up.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the accept loop looks at the stop flag.
pub const STOP_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Lingering close (as nginx does): after the last response, the server
/// half-closes and reads and discards what the client still sends, for at
/// most this long and this many bytes, before closing. Closing with unread
/// input makes the kernel send RST, which can destroy an early error
/// response (413, 400) that the client has not read yet.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
pub const LINGER_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Largest git-upload-pack request body, in bytes (also after gzip is
/// undone). Negotiation resends every `have` per round; 64 MiB covers
/// repos with millions of refs and stops a body bomb.
pub const UPLOAD_PACK_BODY_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Bytes read from upload-pack's stdout per response chunk.
pub const UPLOAD_PACK_READ_BYTES: usize = 256 * 1024;

/// Default of `--head-timeout`: a request head must arrive whole within
/// this, from the accept or the first byte of the next request.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// While a request body is awaited, each `--head-timeout` window must bring
/// at least this many bytes per second of it (a one-byte-a-second body is
/// cut after a window or two).
pub const BODY_MIN_BYTES_PER_SEC: u64 = 1024;
/// How often a connection checks its deadlines: every connection has a
/// timer, so 16k idle ones cost 16k wakes a second at this tick; the
/// deadlines are whole seconds anyway.
pub const DEADLINE_TICK: Duration = Duration::from_secs(1);
/// Descriptors kept out of the connection cap for the node's own files,
/// mirrors, git processes and S3 connections.
pub const FD_RESERVE: u64 = 2048;
/// Descriptors one connection may hold while in a request: its socket and
/// the one file it streams to or from (a PUT's tmp file, a GET's object).
/// What holds more (upload-pack's pipes, S3 connections, blob readers) is
/// bounded by its own slots and lives in FD_RESERVE.
pub const FDS_PER_CONNECTION: u64 = 2;
/// Connections a full shard (nothing idle to shed) still takes for health
/// checks only, each closed after one answer.
pub const OVERFLOW_CONNECTIONS_PER_SHARD: usize = 16;
/// An overflow connection must send its whole head within this; it gets
/// one answer, no keep-alive and no lingering close, so a flood of
/// connections past the cap holds each place for at most this long and
/// health checks still find one.
pub const OVERFLOW_HEAD_TIMEOUT: Duration = Duration::from_millis(500);

/// Request-body bytes (upload-pack requests, read whole, and their
/// inflated form) all shards together may hold; past it, 503. Eight
/// largest bodies, inflated.
pub const BUFFERED_BODY_BUDGET_BYTES: u64 = 8 * 2 * UPLOAD_PACK_BODY_MAX_BYTES as u64;

/// Longest a push or Git LFS request passed through to the upstream may
/// run, in all (the no-progress deadline, `--upstream-timeout`, catches a
/// silent upstream long before): as long as a clone may.
pub const PASSTHROUGH_MAX: Duration = Duration::from_secs(3600);

/// The CA bundle git trusts on Debian and its kin; the pass-through trusts
/// it too (plus the webpki roots), so that it reaches what a clone reaches.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
