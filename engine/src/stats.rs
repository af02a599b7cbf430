//! Counters, one set per shard. Each shard bumps only its own (relaxed
//! atomics, no contention); any shard may read all of them to answer
//! `/api/v1/stats` or `/metrics` without a cross-shard hop.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $doc:literal,)*) => {
        #[derive(Debug, Default)]
        pub struct ShardStats {
            $(#[doc = $doc] pub $name: AtomicU64,)*
        }

        impl ShardStats {
            /// Every counter as (name, doc, value), for the metrics pages.
            pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($name), $doc, self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters! {
    requests: "HTTP requests served by this shard",
    local_hits: "reads found in the local tier",
    local_misses: "reads not found in the local tier",
    memory_hits: "local hits served from the shard's memory tier of small objects",
    local_bytes_read: "object bytes served from the local tier",
    local_bytes_written: "object bytes written to the local tier",
    local_objects: "objects this shard owns in the local tier",
    local_used_bytes: "bytes on disk of the objects this shard owns",
    evictions: "objects evicted to stay within capacity",
    expirations: "objects removed because their time-to-live ran out",
    checksum_failures: "objects found corrupt and removed",
    remote_hits: "local misses found in the remote tier",
    remote_misses: "local misses not in the remote tier either",
    remote_get_requests: "GET requests sent to the remote tier",
    remote_put_requests: "PUT and upload-part requests sent to the remote tier",
    remote_bytes_read: "bytes received from the remote tier",
    remote_bytes_written: "bytes sent to the remote tier",
    remote_errors: "failed remote tier requests",
    singleflight_followers: "reads that joined a remote fetch already in flight",
    snapshot_builds: "working-tree snapshots built (tar.zst)",
    bundle_builds: "git bundles built",
    mirror_restores: "mirrors restored from a mirror snapshot instead of cloned",
    upstream_clones: "mirrors cloned from their upstream",
    upstream_fetches: "git fetches from upstreams (stale refs, missing wants, restored mirrors)",
    passthrough_requests: "pushes and Git LFS requests passed through to upstreams",
    mirror_upkeeps: "mirrors repacked for serving after fetches changed them",
    tree_indexes: "tree indexes of commits made (GET .../tree/{commit})",
    blob_requests: "POST .../blobs requests served",
    blobs_served: "blobs sent by POST .../blobs",
    blob_cache_hits: "blobs POST .../blobs sent from memory (--blob-cache), neither inflated nor hashed again",
    mirror_evictions: "mirrors evicted, least recently used first, to stay within --mirror-capacity",
    mirror_bytes: "disk the mirrors this shard owns used at the last count",
    upload_pack_runs: "git upload-pack processes run for clients",
    pack_cache_follows: "clone requests answered from another identical request's pack",
    sendfile_bytes: "response bytes sent with sendfile from checked, locked page-cache units (no copy through user space)",
    sends_socket_full: "response writes that found the client's socket full and waited on the ring for room",
    slow_clients_closed: "connections closed for a request head or body slower than --head-timeout allows",
    repo_states: "repos this shard keeps a record of (mirrors, jobs, recent failures)",
    upstream_jobs_refused: "clones and fetches refused because every upstream job slot and the queue were taken",
}

pub fn bump(c: &AtomicU64, by: u64) {
    c.fetch_add(by, Ordering::Relaxed);
}
