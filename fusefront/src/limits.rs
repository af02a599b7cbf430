//! The mount's limits and defaults, each with its unit and why.

use std::time::Duration;

/// Kernel entry and attribute TTL. The base tree of a commit never
/// changes, so the kernel may keep what it learned for as long as the
/// mount lives; moving to another commit (part 2) invalidates explicitly.
pub const BASE_TREE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Attribute TTL of what the overlay holds (and of base directories it
/// changed). Every change to them comes through this kernel, which drops
/// or updates what it cached of an inode it changed (size and mtime after
/// a write, ctime after a link or rename, a directory's after a name in
/// it changed); the daemon changes nothing behind it (a copy-up changes
/// no attribute). One second bounds what a miss of that costs: with none,
/// an untar of 5k files made 78k requests and took 18x ext4's time.
pub const HELD_TTL: Duration = Duration::from_secs(1);
/// Default of `--ready-timeout`: how long an operation that arrives before
/// the tree index is in waits for it, before it gets EIO.
pub const READY_WAIT: Duration = Duration::from_secs(30);
/// Files a first read queues for prefetch after it on the walk, within
/// its directory's subtree; a reader that keeps reading within what was
/// queued doubles it each time, up to PREFETCH_WALK_MAX, across
/// directories. Small, so random reads (an agent opening files here and
/// there) fetch little they do not read: 50 random first reads on
/// git/git fetched 603 blobs with 16 and took 1.2-1.6x of no prefetch;
/// with 4, 227 blobs and no slower, and walkers were no slower either.
pub const PREFETCH_WALK_FIRST: usize = 4;
/// Most files queued ahead of one walker.
pub const PREFETCH_WALK_MAX: usize = 1024;
/// Walkers followed at once (rg reads several directories in parallel);
/// the one that went longest without a read makes room for a new one.
pub const PREFETCH_WALKERS: usize = 32;
/// Largest file a directory prefetch queues: prefetch is for the small
/// source files a build reads next, not for a directory's big assets.
pub const PREFETCH_FILE_MAX_BYTES: u64 = 1 << 20;
/// Largest file `--prehydrate` fetches: the source files a build or an
/// agent opens, not a tree's assets (a read fetches those when asked).
pub const PREHYDRATE_FILE_MAX_BYTES: u64 = 128 << 10;
/// Longest name in a directory (NAME_MAX): a longer one is ENAMETOOLONG,
/// as on ext4, for lookups and for what is made.
pub const NAME_MAX: usize = 255;
/// Longest symlink target served (Linux's PATH_MAX, with its NUL).
pub const SYMLINK_MAX_BYTES: u64 = 4095;
/// Largest read the daemon answers at once (FUSE's max_pages ceiling,
/// 256 pages of 4 KiB); a larger ask is answered short, as POSIX allows.
pub const READ_MAX_BYTES: u32 = 1 << 20;
/// FUSE worker threads reading /dev/fuse. Opens that wait on the node do
/// not hold one (their replies come from the completion threads).
pub const FUSE_THREADS: usize = 2;
/// Entries of each FUSE-over-io_uring queue (one queue per CPU): requests
/// in service at once on that CPU, a first read waiting on the node
/// included; more wait in the kernel. Each holds a 1 MiB payload buffer
/// (READ_MAX_BYTES), touched only as far as replies reach.
pub const RING_DEPTH: usize = 16;
/// How long an unmount waits for the queues' threads to end.
pub const RING_JOIN_WAIT: Duration = Duration::from_secs(5);
/// Threads that finish opens once their blob landed (open the file, hand
/// it to the kernel, reply).
pub const COMPLETION_THREADS: usize = 2;
/// Files kept open for reads that come without a FUSE open (each holds
/// one fd; the daemon raises its fd limit well past this).
pub const INODE_FILES_MAX: usize = 4096;
/// How often a mount waiting for its tree asks how far the node's clone
/// of the repo got (and how long each ask may take).
pub const PROGRESS_POLL: Duration = Duration::from_secs(1);
/// How often `trove mounts`' record of this mount is rewritten.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// Largest tree index downloaded (compressed bytes): a 4M-entry tree is
/// about 150 MB compressed.
pub const TREE_INDEX_DOWNLOAD_MAX_BYTES: u64 = 512 << 20;

/// How long a mount daemon waits for its first mount before it exits
/// (its starter died before asking).
pub const DAEMON_IDLE_GRACE: Duration = Duration::from_secs(10);

/// How long a stopping daemon waits for each mount to unmount.
pub const DAEMON_STOP_WAIT: Duration = Duration::from_secs(30);

/// Longest line on a daemon's control socket (a request or a reply).
pub const CONTROL_LINE_MAX: u64 = 256 << 10;

/// How long a control connection may take to send its request.
pub const CONTROL_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections a daemon serves at once; more wait in the backlog.
pub const CONTROL_CONNECTIONS_MAX: usize = 64;

/// How long `trove mount` waits for a daemon it started to listen, or
/// for a stopping one to exit.
pub const DAEMON_START_WAIT: Duration = Duration::from_secs(15);
