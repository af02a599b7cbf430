//! Every limit and default of the engine, with its unit and why.
//!
//! Relations between limits are checked at compile time below, so that a
//! change to one cannot silently break an alignment another relies on.

use std::time::Duration;

/// O_DIRECT alignment of file offsets, lengths and buffers, in bytes. 4 KiB
/// covers every NVMe and virtio disk we run on (logical block <= 4 KiB).
pub const ALIGN_BYTES: u64 = 4096;

/// Granularity of content checksums, in bytes. A block is verified before a
/// single byte of it is sent, so this is also the unit of read I/O and the
/// most a reader holds per in-flight read.
pub const BLOCK_BYTES: u64 = 256 * 1024;

/// Blocks the first read I/O of a stream covers: 4 x 256 KiB = 1 MiB, so a
/// short range costs one modest read. Verification still happens per block.
pub const READ_UNIT_BLOCKS: u64 = 4;

/// Blocks one read I/O covers once a stream has proved sequential: each
/// further unit doubles, up to 16 x 256 KiB = 4 MiB (the kernel's read-ahead
/// ramps up the same way). On the virtio disk measured here, fio O_DIRECT
/// sequential reads at 4 in flight ran 1.7-2.4 GB/s with 4 MiB requests
/// against 0.8-1.3 GB/s with 1 MiB ones.
pub const READ_UNIT_MAX_BLOCKS: u64 = 16;

/// Read I/Os a stream keeps in flight ahead of what it sends. With 4 MiB
/// units this bounds a stream's memory to 16 MiB.
pub const READ_AHEAD_UNITS: usize = 8;

/// Ranges at least this long of a sealed file go through the page cache
/// and leave with `sendfile` (store/mapped.rs) instead of O_DIRECT reads
/// and a copy into the socket. On this machine the copy capped a large GET
/// at ~1.45 GB/s against nginx's 2.5 GB/s from a cold page cache; shorter
/// ranges, and every small object, keep O_DIRECT and the memory tier.
pub const MAPPED_MIN_BYTES: u64 = 8 * 1024 * 1024;

/// Size of one write buffer of the object writer, in bytes.
pub const WRITE_CHUNK_BYTES: usize = 1024 * 1024;

/// Write buffers the object writer keeps in flight before it waits.
pub const WRITE_BEHIND: usize = 4;

/// Files up to this size are read whole with one I/O on open (open, fstat,
/// one read, close) and kept by the memory tier, whose hits cost no
/// syscall at all.
pub const SMALL_FILE_BYTES: u64 = 64 * 1024;

/// Longest namespace, in bytes.
pub const NAMESPACE_MAX_BYTES: usize = 128;
/// Longest object key, in bytes (after percent-decoding).
pub const KEY_MAX_BYTES: usize = 1024;

/// Depth of each cross-shard request channel. A full channel makes the
/// sender wait: that is the back-pressure between shards.
pub const CROSS_SHARD_CHANNEL_DEPTH: usize = 1024;

/// How often a shard flushes the access-recency notes it gathered for keys
/// other shards own. Recency is advisory; it never waits on the owner.
pub const TOUCH_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Most recency notes buffered per owner before the oldest are dropped.
pub const TOUCH_BUFFER_MAX: usize = 65_536;

/// How often an owner sweeps its index for expired objects.
pub const EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// How often an owner writes the access times of the objects it touched
/// (store/recency.rs): a crash loses at most this much recency.
pub const RECENCY_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// How often a reader following an object that is still landing from the
/// remote tier looks for new bytes.
pub const LANDING_POLL_INTERVAL: Duration = Duration::from_micros(250);

/// Size of the ranged GETs a remote fetch splits a large object into, and
/// of the parts of a multipart upload, in bytes. S3 needs parts >= 5 MiB.
pub const REMOTE_PART_BYTES: u64 = 8 * 1024 * 1024;

/// Size of a remote fetch's first ranged GET, which runs alone: a reader
/// waiting for the first byte then shares S3 and the shard with nothing.
/// Its bytes land a block at a time; the other ranges start when it is
/// done. On SeaweedFS here this took a cold snapshot's first byte from
/// ~30 ms to ~10 ms.
pub const REMOTE_FIRST_PART_BYTES: u64 = 1024 * 1024;

/// Objects (sealed file size) above this are uploaded with multipart.
pub const MULTIPART_THRESHOLD_BYTES: u64 = 16 * 1024 * 1024;

/// Ranged GETs or part uploads one remote transfer keeps in flight.
pub const REMOTE_PARALLELISM: usize = 4;

/// The first GET of a remote fetch asks for this many bytes from the end of
/// the object: it carries the trailer (and all of a small object).
pub const REMOTE_TAIL_BYTES: u64 = 64 * 1024;

/// Default time to connect to the remote tier.
pub const REMOTE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Default time for the remote tier to answer a request with its head.
pub const REMOTE_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest remote response head or error body we read, in bytes.
pub const REMOTE_SMALL_BODY_MAX_BYTES: usize = 1024 * 1024;

/// Lifetime of a presigned S3 URL; it is used at once.
pub const REMOTE_SIGN_TTL: Duration = Duration::from_secs(300);

/// Longest time-to-live accepted on an object: 10 years, in seconds.
pub const TTL_MAX_SECS: u64 = 10 * 365 * 24 * 3600;

/// Passed access checks of private repos a shard remembers (one entry per
/// repo and credential) before it sweeps the expired ones: each entry is
/// 40 bytes, and clients can drive the count with made-up credentials
/// only as far as the upstream says yes to them.
pub const ACCESS_CACHE_MAX: usize = 10_000;

/// Most (repo, name) misses one shard remembers (mirrors/misses.rs): about
/// 100 bytes each; clients drive the count with made-up commit ids, so past
/// it the expired go and then all.
pub const MISS_CACHE_MAX: usize = 8_192;

const _: () = assert!(READ_UNIT_MAX_BLOCKS >= READ_UNIT_BLOCKS && READ_UNIT_MAX_BLOCKS.is_power_of_two());
const _: () = assert!(BLOCK_BYTES.is_multiple_of(ALIGN_BYTES));
const _: () = assert!((WRITE_CHUNK_BYTES as u64).is_multiple_of(BLOCK_BYTES));
const _: () = assert!(REMOTE_PART_BYTES.is_multiple_of(BLOCK_BYTES));
const _: () = assert!(REMOTE_FIRST_PART_BYTES.is_multiple_of(BLOCK_BYTES));
const _: () = assert!(REMOTE_TAIL_BYTES.is_multiple_of(ALIGN_BYTES));
const _: () = assert!(REMOTE_PART_BYTES >= 5 * 1024 * 1024);
const _: () = assert!(SMALL_FILE_BYTES.is_multiple_of(ALIGN_BYTES));

/// An upstream job (clone, fetch, ls-remote) that reads fewer bytes than
/// this within `--upstream-timeout` is killed (repo/reaper.rs): 1 KiB
/// keeps a slow real link alive and ends a one-byte-a-second trickle.
pub const UPSTREAM_LOW_SPEED_BYTES: u64 = 1024;
/// Default of `--upstream-timeout`: how long an upstream job may go
/// without progress, connecting included.
pub const UPSTREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest a request for a warm mirror waits on its refs-TTL fetch before
/// it is served the mirror as it is (the fetch goes on).
pub const FRESH_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a clone that the upstream answered "no such repo" is
/// remembered: requests for the name get 404 from the node meanwhile, so a
/// client looping over made-up names costs the upstream one call per name
/// per this long.
pub const UPSTREAM_NOT_FOUND_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// Repo records one shard keeps before it drops those that never became
/// Ready and whose retry time has passed (each is a few hundred bytes; a
/// client naming random repos drives the count).
pub const REPO_STATES_MAX: usize = 10_000;

/// Default of `--snapshot-lease`: a fleet build lease not renewed for this
/// long is taken over. The builder renews it every third of it.
pub const SNAPSHOT_LEASE: Duration = Duration::from_secs(120);
/// How often a node waiting on another's build looks in S3 for the result
/// (two small requests each time).
pub const SNAPSHOT_LEASE_POLL: Duration = Duration::from_millis(500);
/// Largest lease object read.
pub const SNAPSHOT_LEASE_MAX_BYTES: usize = 4096;
/// Lease generations tried before a node builds regardless (each one is
/// a builder that died or gave up).
pub const SNAPSHOT_LEASE_GENERATIONS: u32 = 64;

/// Default of `--mirror-capacity`: disk the bare mirrors may use, node-wide.
pub const MIRROR_CAPACITY_BYTES: u64 = 64 << 30;

/// Most entries a tree index may hold (files, directories, submodules).
/// With TREE_INDEX_MAX_PATH_BYTES this bounds a mount's table
/// (`tree::index::MAX_MEMORY_BYTES`); the README has measured figures.
pub const TREE_INDEX_MAX_ENTRIES: usize = 4_000_000;
/// Longest path in a tree index, in bytes (Linux's PATH_MAX).
pub const TREE_PATH_MAX_BYTES: usize = 4096;
/// Bytes of all the paths of a tree index together. A 4M-entry tree with
/// 128-byte paths fits (real trees average 40-80); 4M paths of PATH_MAX
/// (16 GB) do not: without this bound a 4 MB compressed index of deep
/// paths took a mount past 10 GB.
pub const TREE_INDEX_MAX_PATH_BYTES: u64 = 512 << 20;
/// Largest blob whose checkout conversion (`ident`, `eol=crlf`) a node
/// computes and a mount applies, in bytes: both hold it, and what it
/// becomes, in memory. A larger file with such attributes shows its blob's
/// bytes (the README says so); git repos keep text files far smaller.
pub const CHECKOUT_CONVERT_MAX_BYTES: u64 = 32 << 20;
/// Most blobs one `POST .../blobs` may ask for.
pub const BLOBS_PER_REQUEST_MAX: usize = 1024;
/// Default of `--blob-cache`: blobs served to mounts lately, kept in
/// memory node-wide so the next mount of the tree is not inflated again.
pub const BLOB_CACHE_BYTES: u64 = 256 << 20;
/// Delta bases a tree walk or blob stream keeps inflated (per reader, so
/// per request): git's own default (core.deltaBaseCacheLimit).
pub const DELTA_BASE_CACHE_BYTES: usize = 96 << 20;
/// Largest blob `POST .../blobs` reads whole, in bytes: each is read and
/// checked against its oid before it is sent. Larger ones stream in
/// BLOB_STREAM_CHUNK_BYTES chunks, so what a slow client pins is a few
/// chunks, not a whole asset.
pub const BLOB_SERVE_MAX_BYTES: u64 = 16 << 20;
/// Default of `--blob-memory`: blob bytes all `POST .../blobs` responses
/// together may hold in memory (read, not yet written to the socket).
/// Past it, a new request gets 503 and a stream waits for room.
pub const BLOB_MEMORY_BYTES: u64 = 256 << 20;
/// Longest a blob stream waits for room in the blob memory before it is
/// cut (the client sees a stream without its end frame, and may retry).
pub const BLOB_MEMORY_WAIT: Duration = Duration::from_secs(30);
/// Largest blob `POST .../blobs` streams from its pack (past
/// BLOB_SERVE_MAX_BYTES it is streamed, not read whole).
pub const BLOB_STREAM_MAX_BYTES: u64 = 64 << 30;
/// Largest blob a node rebuilds from a delta (through git, which holds
/// the base and the result whole in its memory; one at a time per node).
/// git itself deltas no file over 512 MiB (`core.bigFileThreshold`), so a
/// larger delta is an upstream's odd packing, and gets `too_large`.
pub const BLOB_REBUILD_MAX_BYTES: u64 = 1 << 30;
/// Chunk of a streamed blob: with BLOBS_READ_AHEAD, a slow client holds at
/// most 4 MiB of it in the node.
pub const BLOB_STREAM_CHUNK_BYTES: usize = 1 << 20;
/// Frames (blobs) read ahead of a slow client per `POST .../blobs`.
pub const BLOBS_READ_AHEAD: usize = 4;

/// Blobs one hydration batch (`POST .../blobs`) asks for: the node's own
/// ceiling, so one request carries as much as it may.
pub const HYDRATE_BATCH_BLOBS: usize = BLOBS_PER_REQUEST_MAX;
/// Hydration batches one mount runs at once. Two keep one fetching while
/// the other lands; more mostly queue at the node's mirror reads.
pub const HYDRATE_BATCHES_IN_FLIGHT: usize = 4;
/// Blob bytes a mount may have asked for and not yet landed. A batch is
/// cut when it would pass this; a single larger blob still goes alone.
pub const HYDRATE_IN_FLIGHT_BYTES: u64 = 256 << 20;
/// Hydration requests (opens and prefetches) waiting at the owner shard.
/// Prefetches past it are dropped; an open past it fails with EAGAIN.
pub const HYDRATE_QUEUE_DEPTH: usize = 1 << 16;
/// Largest hydrated blob: the node serves no larger one
/// (`BLOB_STREAM_MAX_BYTES`), and a frame claiming more is a lie.
pub const HYDRATE_BLOB_MAX_BYTES: u64 = BLOB_STREAM_MAX_BYTES;
/// A blob up to this size is gathered whole in memory and lands on a task
/// of its own; a larger one streams to disk as it arrives.
pub const HYDRATE_SMALL_BLOB_BYTES: u64 = 256 << 10;
/// Largest slab small blobs are appended to (`hydrate/blobstore/slab.rs`);
/// a slab is also at most 1/16 of the cache's capacity, as it is evicted
/// whole.
pub const HYDRATE_SLAB_MAX_BYTES: u64 = 64 << 20;
/// Write-behind buffers of one landing blob (DMA, 128 KiB each).
pub const HYDRATE_WRITE_BUFFER_BYTES: usize = 128 << 10;
/// Default of `trove mount --fetch-timeout`: how long an open waits on the
/// node (to connect, for the answer, between frames) before it gets EIO.
/// How long a read of a blob whose fetch just failed fails at once with
/// the same error, on any read path (the kernel retries a failed readahead
/// page by page, and each retry would otherwise wait out the fetch again).
/// The node's recovery (health.rs) ends it early.
pub const HYDRATE_FAILED_HOLD: Duration = Duration::from_secs(1);
/// Most failed blobs remembered for HYDRATE_FAILED_HOLD.
pub const HYDRATE_FAILED_MAX: usize = 4096;
pub const HYDRATE_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The slowest a hydration batch may arrive, in bytes per second, on
/// average: a batch of N bytes is cut after `--fetch-timeout` plus
/// N / this. `--fetch-timeout` alone bounds each gap between frames, so a
/// node trickling a byte every few seconds held an open for minutes.
/// 256 KiB/s keeps a 2 Mbit/s link working.
pub const HYDRATE_MIN_BYTES_PER_SEC: u64 = 256 << 10;
/// Default of `trove mount --cache-capacity`: hydrated bytes kept.
pub const HYDRATE_CACHE_CAPACITY_BYTES: u64 = 8 << 30;
/// Eviction takes the cache down to this share of its capacity, in
/// percent, so a full cache does not evict on every landing.
pub const HYDRATE_EVICT_TO_PERCENT: u64 = 90;
const _: () = assert!(HYDRATE_BATCH_BLOBS <= BLOBS_PER_REQUEST_MAX);
const _: () = assert!(HYDRATE_BLOB_MAX_BYTES <= BLOB_STREAM_MAX_BYTES);
const _: () = assert!(BLOB_SERVE_MAX_BYTES <= BLOB_STREAM_MAX_BYTES);
const _: () = assert!(BLOB_SERVE_MAX_BYTES <= BLOB_REBUILD_MAX_BYTES);
// A stream that holds its read-ahead of whole blobs still leaves room.
const _: () = assert!(BLOB_MEMORY_BYTES >= 4 * BLOBS_READ_AHEAD as u64 * BLOB_SERVE_MAX_BYTES);
