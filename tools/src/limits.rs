//! Limits of the `trove` binary's client commands, each with its unit and
//! why. Every byte a node sends `trove restore` is hostile input: each body
//! is read no further than what was asked for, or than these.

/// Bytes per ranged GET of a snapshot; a range's body is read to exactly
/// its length and no further.
pub const RANGE_BYTES: u64 = 8 << 20;

/// Largest snapshot streamed whole (a node answers 200 while it builds
/// one) when the answer names no Content-Length: the node's own largest
/// object (`--max-object-size` default).
pub const SNAPSHOT_STREAM_MAX_BYTES: u64 = 64 << 30;

/// Largest bundle applied after a snapshot; it lands on disk, never in
/// memory, and the node makes it from the commits since the snapshot.
pub const BUNDLE_MAX_BYTES: u64 = 64 << 30;

/// Largest `ensure-refs` reply: a few counts, as JSON.
pub const ENSURE_REPLY_MAX_BYTES: u64 = 64 << 10;
