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
