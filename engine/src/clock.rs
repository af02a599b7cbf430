//! Wall-clock time, as the engine stores it: milliseconds since the Unix
//! epoch. TTLs, leases and pointers are absolute, so they use the wall
//! clock; durations on one node use `Instant`.

/// Milliseconds since the Unix epoch (wall clock: TTLs are absolute).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
