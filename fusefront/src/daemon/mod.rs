//! The mount daemon: one per data dir, serving every mount on it.
//!
//! It owns what its mounts share: the data dir's lock, the engine (a shard
//! per core, each repo's hydration on the shard that owns it), the one
//! blob cache (blobs deduplicated by id across repos and commits) and the
//! repos' hydrators ([`repos`]). Each mount (`crate::mount`) runs on its
//! own thread with its own FUSE session, overlay and record. It is asked
//! to add and remove mounts over its control socket ([`control`]), or in
//! its own process by `trove mount --foreground`.
//!
//! It exits once its last mount is gone (unmounted by `trove umount`, or
//! from outside), or if no mount is asked of it within `DAEMON_IDLE_GRACE`
//! of its start. Killed, it takes every mount with it: the kernel ends
//! their connections, and each access gets ENOTCONN, never a hang; the
//! next `trove mount` on a mountpoint detaches the dead mount and finds
//! its overlay. It never serves HTTP and composes none of the node's
//! services.

pub mod client;
pub mod control;

use crate::host::Host;
use crate::limits::*;
use crate::mount::MountEvent;
use crate::options::{MountError, MountOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use trove_engine::hydrate::blobstore::{BlobStore, SmallBlobs};

/// How a daemon is made: from its first mount's flags.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub data_dir: PathBuf,
    pub shards: usize,
    pub cache_capacity_bytes: u64,
    /// Every blob its own file (a passthrough mount asked first).
    pub own_files: bool,
}

impl DaemonOptions {
    pub fn of(options: &MountOptions) -> DaemonOptions {
        DaemonOptions {
            data_dir: options.data_dir.clone(),
            shards: options.shards,
            cache_capacity_bytes: options.cache_capacity_bytes,
            own_files: options.read_path == crate::options::ReadPath::Passthrough,
        }
    }
}

/// See the module doc. What its mounts share is its [`Host`]; this keeps
/// their threads and decides when to exit.
pub struct Daemon {
    host: Arc<Host>,
    mounts: Mutex<Mounts>,
    /// Rung each time a mount ends.
    ended_tx: crossbeam_channel::Sender<()>,
    ended_rx: crossbeam_channel::Receiver<()>,
}

#[derive(Default)]
struct Mounts {
    live: HashMap<PathBuf, Slot>,
    /// Set once the daemon decided to exit: no mount is added after.
    closing: bool,
    /// Whether any mount was ever asked of it.
    ever: bool,
}

/// A mount's thread, as the daemon holds it.
struct Slot {
    stop: crossbeam_channel::Sender<()>,
    /// Disconnected when the mount's thread is done.
    done: crossbeam_channel::Receiver<()>,
}

/// What the asker of a mount hears: its events, then its end (a failure
/// before it was ready, or Ok once it is unmounted).
pub enum Outcome {
    Event(MountEvent),
    Ended(Result<(), MountError>),
}

impl Daemon {
    /// Locks the data dir and starts the engine and the blob cache on it.
    pub fn open(options: &DaemonOptions) -> Result<Arc<Daemon>, MountError> {
        raise_fd_limit();
        let dir = &options.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| MountError::DataDir(format!("creating {}: {e}", dir.display())))?;
        let data_dir =
            std::fs::canonicalize(dir).map_err(|e| MountError::DataDir(format!("resolving {}: {e}", dir.display())))?;
        // The lock first: no other daemon's blobs (landing in its tmp/)
        // are touched below.
        let node = crate::engine::lock_data_dir(&data_dir, options.shards).map_err(|e| match e {
            trove_engine::EngineError::DataDirInUse { holder, holder_role: "mount", .. } => {
                MountError::DaemonRunning(holder)
            }
            e => MountError::DataDir(e.to_string()),
        })?;
        let small = if options.own_files { SmallBlobs::OwnFiles } else { SmallBlobs::Slabs };
        let store = BlobStore::open_dir(&data_dir, options.cache_capacity_bytes, small)
            .map_err(|e| MountError::DataDir(e.to_string()))?;
        let engine = crate::engine::start(node).map_err(|e| MountError::DataDir(e.to_string()))?;
        let (ended_tx, ended_rx) = crossbeam_channel::unbounded();
        Ok(Arc::new(Daemon {
            host: Arc::new(Host::new(data_dir, store, engine)),
            mounts: Mutex::new(Mounts::default()),
            ended_tx,
            ended_rx,
        }))
    }

    /// The data dir it serves (absolute).
    pub fn data_dir(&self) -> &Path {
        &self.host.data_dir
    }

    /// Tells the host how many mounts are live (their records show it),
    /// under the lock that changed them.
    fn counted(&self, m: &Mounts) {
        self.host.served.store(m.live.len() as u32, std::sync::atomic::Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mounts> {
        self.mounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a mount of `options` on its own thread; `tell` hears its
    /// events and its end. Refused at once if the daemon is stopping or
    /// already serves that mountpoint. The mountpoint as the daemon knows
    /// it (absolute), for [`Daemon::remove`].
    pub fn add(
        self: &Arc<Self>,
        mut options: MountOptions,
        tell: impl Fn(Outcome) + Send + 'static,
    ) -> Result<PathBuf, MountError> {
        options.mountpoint = crate::mount::lexical_absolute(&options.mountpoint);
        let key = options.mountpoint.clone();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        {
            let mut m = self.lock();
            if m.closing {
                return Err(MountError::Stopping);
            }
            if m.live.contains_key(&key) {
                return Err(MountError::Mountpoint(format!("{} is already a trove mount", key.display())));
            }
            m.ever = true;
            m.live.insert(key.clone(), Slot { stop: stop_tx, done: done_rx });
            self.counted(&m);
        }
        let mountpoint = key.clone();
        let me = self.clone();
        let spawned = std::thread::Builder::new().name("trove-mount".into()).spawn(move || {
            let ended = crate::mount::run(&me.host, options, stop_rx, &|e| tell(Outcome::Event(e)));
            if let Err(e) = &ended {
                tracing::warn!(mountpoint = %key.display(), "mount failed: {e}");
            }
            {
                let mut m = me.lock();
                m.live.remove(&key);
                me.counted(&m);
            }
            drop(done_tx);
            let _ = me.ended_tx.send(());
            tell(Outcome::Ended(ended));
        });
        spawned.map(|_| mountpoint).map_err(|e| MountError::Daemon(format!("starting a mount thread: {e}")))
    }

    /// Asks the mount on `mountpoint` to unmount; the returned receiver
    /// disconnects once it has. None if the daemon serves no mount there.
    pub fn remove(&self, mountpoint: &Path) -> Option<crossbeam_channel::Receiver<()>> {
        let m = self.lock();
        let slot = m.live.get(mountpoint)?;
        let _ = slot.stop.try_send(());
        Some(slot.done.clone())
    }

    /// Serves until the last mount is gone (or none came within
    /// `DAEMON_IDLE_GRACE`) or `stop` fires; then stops every mount and
    /// the engine. New mounts are refused from the moment it decides.
    pub fn serve(&self, stop: &crossbeam_channel::Receiver<()>) {
        let started = Instant::now();
        loop {
            {
                let mut m = self.lock();
                if m.live.is_empty() && (m.ever || started.elapsed() >= DAEMON_IDLE_GRACE) {
                    m.closing = true;
                    break;
                }
            }
            crossbeam_channel::select! {
                recv(stop) -> _ => break,
                recv(self.ended_rx) -> _ => {}
                default(DAEMON_IDLE_GRACE.saturating_sub(started.elapsed()).max(STATUS_INTERVAL)) => {}
            }
        }
        let slots: Vec<_> = {
            let mut m = self.lock();
            m.closing = true;
            m.live.values().map(|s| (s.stop.clone(), s.done.clone())).collect()
        };
        let all_done = slots.into_iter().all(|(stop, done)| {
            let _ = stop.try_send(());
            matches!(done.recv_timeout(DAEMON_STOP_WAIT), Err(crossbeam_channel::RecvTimeoutError::Disconnected))
        });
        // A mount that did not end holds its repo's queue open, and the
        // engine would wait on it: the process's exit ends both.
        if all_done {
            self.host.stop_engine();
        }
    }
}

/// Raises the soft descriptor limit to the hard one: reads without a FUSE
/// open keep a file open per inode read (up to INODE_FILES_MAX), per mount.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!("raising the open-file limit: {e}");
        }
    }
}

/// `trove mountd`: a daemon on `options.data_dir` in this process, until
/// its last mount is gone or `stop` fires. Its first line on `ready` says
/// how it started: `listening`, `busy` (another daemon took the data dir
/// first: ask that one), or `error CODE MESSAGE`. Its exit code.
pub fn background(
    options: &DaemonOptions,
    mut ready: impl std::io::Write,
    stop: &crossbeam_channel::Receiver<()>,
) -> i32 {
    let mut say = |line: String| {
        let _ = writeln!(ready, "{line}");
        let _ = ready.flush();
    };
    let daemon = match Daemon::open(options) {
        Ok(d) => d,
        Err(MountError::DaemonRunning(pid)) => {
            say(format!("busy {pid}"));
            return 0;
        }
        Err(e) => {
            say(format!("error {} {e}", e.exit_code()));
            return e.exit_code();
        }
    };
    let listener = match control::listen(&daemon) {
        Ok(l) => l,
        Err(e) => {
            say(format!("error {} {e}", e.exit_code()));
            return e.exit_code();
        }
    };
    tracing::info!(data_dir = %daemon.data_dir().display(), shards = daemon.host.shards(), "mount daemon listening");
    say("listening".into());
    drop(ready);
    daemon.serve(stop);
    drop(listener);
    tracing::info!("mount daemon exiting: no mount left");
    0
}

/// `trove mount --foreground`: this process is the data dir's daemon and
/// serves `options` (and any mount others add to it) until the last one
/// is gone or `stop` fires. `tell` hears the mount's events. Its error if
/// it failed.
pub fn foreground(
    options: MountOptions,
    stop: &crossbeam_channel::Receiver<()>,
    tell: impl Fn(MountEvent) + Send + 'static,
) -> Result<(), MountError> {
    let daemon = Daemon::open(&DaemonOptions::of(&options))?;
    let listener = control::listen(&daemon)?;
    let failed = Arc::new(Mutex::new(None));
    let failed_in = failed.clone();
    let mut options = options;
    options.data_dir = daemon.data_dir().to_owned();
    daemon.add(options, move |o| match o {
        Outcome::Event(e) => tell(e),
        Outcome::Ended(Err(e)) => *failed_in.lock().unwrap_or_else(|p| p.into_inner()) = Some(e),
        Outcome::Ended(Ok(())) => {}
    })?;
    daemon.serve(stop);
    drop(listener);
    let failed = failed.lock().unwrap_or_else(|p| p.into_inner()).take();
    failed.map_or(Ok(()), Err)
}
