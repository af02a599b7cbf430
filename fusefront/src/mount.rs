//! One mount's life inside the mount daemon: mount, prepare, serve,
//! unmount. The daemon's host (`crate::host`) holds what mounts share (the
//! engine, the blob cache, each repo's hydration); this owns what is the
//! mount's alone (its FUSE session and queues, its overlay, its gate,
//! counters and record), and never outlives its thread.
//!
//! 1. The mountpoint is checked and the commit's tree index asked of the
//!    node at once, on its own thread: fetching it, checking it and
//!    building the inode table overlap everything that follows.
//! 2. The repo's hydration is leased from the daemon (started on the
//!    shard that owns the repo if no other mount of it runs), the overlay
//!    opened and the FUSE session mounted: the directory is a mount from
//!    then on, and what touches it early waits at the readiness gate.
//!    Once the table is built the gate opens and [`MountEvent::Ready`] is
//!    reported; or the gate fails (EIO for every waiter), the record says
//!    why, and the mount ends with a [`MountError`] and its exit code.
//! 3. It serves until `stop` fires (`trove umount`, the daemon stopping,
//!    or its asker leaving before ready) or the filesystem is unmounted
//!    from outside; then it unmounts (lazily if busy) and removes its
//!    record.

use crate::fs::{FsOptions, Job, MountCounters, TroveFs};
use crate::gate::Gate;
use crate::host::Host;
use crate::limits::*;
use crate::status::MountRecord;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trove_engine::hydrate::NodeHealth;

pub use crate::options::{MountError, MountOptions, ReadPath, Revision, Transport};

/// What a mount tells whoever asked for it, before it ends.
#[derive(Debug)]
pub enum MountEvent {
    /// Something worth saying while it prepares (a node cloning a repo
    /// new to it, a daemon keeping its own settings).
    Progress(String),
    /// The tree is served: its record, and how long it took.
    Ready(Box<MountRecord>, Duration),
}

/// Mounts `options` on `host`, serves until `stop` fires or the mount
/// goes away, unmounts. `events` hears its progress and its readiness.
pub(crate) fn run(
    host: &Host,
    options: MountOptions,
    stop: crossbeam_channel::Receiver<()>,
    events: &dyn Fn(MountEvent),
) -> Result<(), MountError> {
    let started = Instant::now();
    let mountpoint = check_mountpoint(&options.mountpoint, events)?;
    // A failed mount's record here (kept for its reason) is history now.
    MountRecord::remove(&mountpoint);
    // The tree index first, on its own thread: fetching, decoding and
    // building it overlaps the hydration lease, the overlay and the FUSE
    // mount below, and this thread stays free for a stop while a slow
    // node answers (a node that never saw the repo clones it first).
    tracing::info!(repo = %options.repo, node = %options.node, "fetching the tree index");
    let (prepared_tx, prepared_rx) = crossbeam_channel::bounded(1);
    let prep_options = options.clone();
    std::thread::Builder::new()
        .name("trove-prepare".into())
        .spawn(move || {
            let _ = prepared_tx.send(crate::tree_fetch::prepare(&prep_options));
        })
        .expect("spawning the prepare thread");
    let mut options = options;
    options.data_dir = host.data_dir.clone();
    let store = host.store.clone();
    if options.read_path == ReadPath::Passthrough {
        // A passthrough backing file must be the blob's own file.
        store.give_every_blob_its_file();
    }
    if options.shards != host.shards() || options.cache_capacity_bytes != store.capacity_bytes() {
        events(MountEvent::Progress(format!(
            "this data dir's mount daemon keeps the {} shards and {} bytes of cache its first mount set; unmount \
             every mount on it to change them",
            host.shards(),
            store.capacity_bytes()
        )));
    }
    let lease = host.lease(&options)?;
    let hydrator = lease.hydrator.clone();
    let (shards, owner) = (host.shards(), lease.owner);

    let record = Arc::new(Mutex::new(MountRecord {
        pid: std::process::id(),
        repo: options.repo.clone(),
        commit: String::new(),
        mountpoint: mountpoint.clone(),
        node: options.node.clone(),
        data_dir: options.data_dir.clone(),
        state: "preparing".into(),
        started_ms: trove_engine::now_ms(),
        shards: shards as u32,
        owner_shard: u32::from(owner),
        cache_capacity_bytes: store.capacity_bytes(),
        ..Default::default()
    }));
    // One deadline for the whole preparation: the gate's waiters, and the
    // wait for the index below.
    let gate = Arc::new(Gate::new(options.ready_timeout));
    let counters = Arc::new(MountCounters::default());
    let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Job>();
    let workers: Vec<_> = (0..COMPLETION_THREADS)
        .map(|i| {
            let rx = jobs_rx.clone();
            std::thread::Builder::new()
                .name(format!("trove-open-{i}"))
                .spawn(move || rx.iter().for_each(|job| job()))
                .expect("spawning a completion thread")
        })
        .collect();
    drop(jobs_rx);

    // The overlay: what this mountpoint's earlier mounts wrote.
    let ring = prepare_ring(&options);
    let overlay_dir = trove_engine::overlay::dir_for(&options.data_dir, &mountpoint);
    let overlay = trove_engine::overlay::Overlay::open(&overlay_dir)
        .and_then(crate::fs::Layered::new)
        .map_err(|e| MountError::Overlay(e.to_string()))?;
    let layered = Some(Arc::new(overlay));
    {
        let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
        r.writable = layered.is_some();
        r.overlay_dir = overlay_dir.clone();
    }
    let fs = TroveFs::new(
        gate.clone(),
        hydrator.clone(),
        jobs_tx,
        counters.clone(),
        FsOptions {
            prefetch: options.prefetch,
            read_path: options.read_path,
            data_dir: options.data_dir.clone(),
            ring: ring.is_some(),
        },
        layered.clone(),
    );
    let fs_shared = fs.shared();
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(format!("trove:{}", options.repo)),
        fuser::MountOption::Subtype("trove".into()),
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::DefaultPermissions,
    ];
    if options.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    config.n_threads = Some(FUSE_THREADS);
    config.clone_fd = true;
    let mut session = fuser::Session::new(fs, &mountpoint, &config)
        .map_err(|e| MountError::Fuse(format!("{}: {e}", mountpoint.display())))?;
    let mut unmounter = session.unmount_callable();
    // The queues register before fuser's loop starts: until they are all
    // in, the kernel holds requests (FORGETs aside, which fuser's loop
    // takes once it runs).
    let mut transport = Transport::DevFuse;
    let queues = match ring {
        Some(prepared) if counters.ring_offered.load(Ordering::Relaxed) => {
            let (running, outcome) = prepared.start(std::os::fd::AsFd::as_fd(&session), fs_shared.clone());
            match outcome {
                Ok(()) => transport = Transport::IoUring,
                Err(e) => tracing::warn!("the kernel refused FUSE over io_uring ({e}); serving over /dev/fuse"),
            }
            Some(running)
        }
        Some(_) => {
            tracing::warn!("the kernel did not take FUSE over io_uring at INIT; serving over /dev/fuse");
            None
        }
        None => None,
    };
    record.lock().unwrap_or_else(|p| p.into_inner()).transport = transport.name().into();
    let (ended_tx, ended_rx) = crossbeam_channel::bounded::<()>(1);
    let session_thread = std::thread::Builder::new()
        .name("trove-fuse".into())
        .spawn(move || {
            if let Err(e) = session.run() {
                tracing::warn!("the FUSE session ended: {e}");
            }
            let _ = ended_tx.send(());
        })
        .expect("spawning the FUSE session thread");
    let _ = record.lock().map(|r| r.write());

    // Meanwhile the node's clone of a repo new to it is watched: each
    // progress is said, and moves the gate's deadline (--ready-timeout
    // then counts from the last progress).
    let ticks = crossbeam_channel::tick(PROGRESS_POLL);
    let mut received: Option<u64> = None;
    let prepared = loop {
        crossbeam_channel::select! {
            recv(prepared_rx) -> r => {
                break r.unwrap_or_else(|_| Err(MountError::BadIndex("preparing stopped".into())))
            }
            recv(stop) -> _ => break Err(MountError::Interrupted),
            recv(ticks) -> _ => {
                if let Some((bytes, seconds)) = crate::tree_fetch::clone_progress(&options) {
                    if received.is_none_or(|before| bytes > before) {
                        gate.extend();
                        events(MountEvent::Progress(format!(
                            "the node is cloning {} (new to it): {:.1} MB received in {seconds:.0} s",
                            options.repo,
                            bytes as f64 / 1e6
                        )));
                        received = Some(bytes);
                    }
                }
            }
            // A node that stalls or trickles the index (or a clone that
            // stopped moving): the thread is left to itself, the mount
            // fails now. Progress moves the deadline, so it is taken anew
            // each time round.
            recv(crossbeam_channel::at(gate.deadline())) -> _ => break Err(MountError::Unreachable {
                node: options.node.clone(),
                reason: format!(
                    "it did not send the tree index within {:?} (--ready-timeout) of its last progress; a node new \
                     to a large repo clones it first: run the mount again once it has, or raise --ready-timeout",
                    options.ready_timeout
                ),
            }),
        }
    };
    // The overlay holds changes over one base: another is refused.
    let prepared = prepared.and_then(|t| match &layered {
        Some(l) => l
            .overlay
            .bind(&options.repo, &trove_engine::tree::oid_hex(&t.commit), &mountpoint)
            .map(|()| t)
            .map_err(|e| MountError::Overlay(e.to_string())),
        None => Ok(t),
    });
    let table = match prepared {
        Ok(t) => t,
        Err(e) => {
            gate.fail(e.to_string());
            {
                let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
                r.state = "failed".into();
                r.reason = Some(e.to_string());
                let _ = r.write();
            }
            unmount(&mut unmounter, &mountpoint);
            let _ = ended_rx.recv_timeout(Duration::from_secs(5));
            let _ = session_thread.join();
            if let Some(q) = queues {
                q.join(RING_JOIN_WAIT);
            }
            // A failure's record stays, with its reason, for `trove mounts`;
            // a mount stopped on purpose leaves none.
            if matches!(e, MountError::Interrupted) {
                MountRecord::remove(&mountpoint);
            }
            return Err(e);
        }
    };
    {
        let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
        r.commit = trove_engine::tree::oid_hex(&table.commit);
        r.files = table.files;
        r.state = "ready".into();
    }
    // The walk order prefetch follows, made here rather than on the first
    // read's serving thread (a tree of millions of entries takes a while);
    // then what --prehydrate fetches in the background, in that order.
    let (walk_table, walk_hydrator, walk_record) = (table.clone(), hydrator.clone(), record.clone());
    let budget = options.prehydrate_bytes;
    let _ = std::thread::Builder::new().name("trove-walk".into()).spawn(move || {
        let shared_walk = fs_shared.prepare_walk(&walk_table);
        if budget == 0 {
            return;
        }
        let own_walk;
        let walk = match shared_walk {
            Some(w) => w,
            None => {
                own_walk = crate::walk_order::WalkOrder::of(&walk_table);
                &own_walk
            }
        };
        let blobs = crate::prehydrate::plan(&walk_table, walk, walk_hydrator.store(), budget);
        let bytes: u64 = blobs.iter().map(|(_, size)| size).sum();
        tracing::info!(files = blobs.len(), bytes, budget, "prehydrating small files in the background");
        {
            let mut r = walk_record.lock().unwrap_or_else(|p| p.into_inner());
            (r.prehydrate_blobs, r.prehydrate_bytes) = (blobs.len() as u64, bytes);
        }
        walk_hydrator.prehydrate(blobs);
    });
    gate.open(table);
    let ready = {
        let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
        fill(&mut r, host, &counters, hydrator.health(), options.read_path, layered.as_deref());
        // On disk before "ready" is said: whoever saw it and asks `trove
        // mounts` must find it ready too.
        let _ = r.write();
        r.clone()
    };
    events(MountEvent::Ready(Box::new(ready), started.elapsed()));

    // Serve: refresh the record until told to stop or unmounted.
    let ended_outside = loop {
        {
            let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
            fill(&mut r, host, &counters, hydrator.health(), options.read_path, layered.as_deref());
            let _ = r.write();
        }
        crossbeam_channel::select! {
            recv(stop) -> _ => break false,
            recv(ended_rx) -> _ => break true,
            default(STATUS_INTERVAL) => {}
        }
    };
    if let Ok(mut r) = record.lock() {
        r.state = "stopping".into();
        let _ = r.write();
    }
    if !ended_outside {
        unmount(&mut unmounter, &mountpoint);
        let _ = ended_rx.recv_timeout(Duration::from_secs(5));
    }
    drop(hydrator);
    // The queues end with the connection. A mount detached lazily while
    // busy keeps its connection until its last user leaves: then they
    // end on their own, as fuser's loop does (or with the daemon).
    let connection_gone = ended_outside || session_thread.is_finished();
    if let Some(q) = queues.filter(|_| connection_gone) {
        q.join(RING_JOIN_WAIT);
    }
    if connection_gone {
        let _ = session_thread.join();
    }
    drop(workers);
    MountRecord::remove(&mountpoint);
    // Last: the repo's hydration ends here if no other mount shows it.
    drop(lease);
    Ok(())
}

/// The io_uring queues, made before the session if the mount asked for
/// that transport and the kernel has it on; else None, and why is said.
fn prepare_ring(options: &MountOptions) -> Option<crate::ring::Prepared> {
    use crate::ring::{kernel_enabled, prepare, ENABLE_PARAM};
    let asked = options.transport == Transport::IoUring;
    if options.transport == Transport::DevFuse {
        return None;
    }
    if options.read_path == ReadPath::Passthrough {
        tracing::info!("passthrough reads are served over /dev/fuse (a backing file is registered there)");
        return None;
    }
    if !kernel_enabled() {
        if !asked {
            tracing::debug!("FUSE over io_uring is off in this kernel ({ENABLE_PARAM}); serving over /dev/fuse");
            return None;
        }
        tracing::warn!(
            "FUSE over io_uring is off in this kernel ({ENABLE_PARAM} is not 1); serving over /dev/fuse. As root, \
             `echo 1 > {ENABLE_PARAM}` turns it on"
        );
        return None;
    }
    match prepare(RING_DEPTH, READ_MAX_BYTES as usize) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!("setting up the io_uring queues failed ({e}); serving over /dev/fuse");
            None
        }
    }
}

/// Copies the live counters into the record.
fn fill(
    r: &mut MountRecord,
    host: &Host,
    counters: &MountCounters,
    health: &NodeHealth,
    read_path: ReadPath,
    layered: Option<&crate::fs::Layered>,
) {
    if let Some(l) = layered {
        r.overlay_bytes = l.overlay.contents.disk_bytes();
    }
    r.daemon_mounts = host.mounts_served();
    let store = &host.store;
    let c = &store.counters;
    r.hydrated_blobs = c.landed_blobs.load(Ordering::Relaxed);
    r.hydrated_bytes = c.landed_bytes.load(Ordering::Relaxed);
    r.evicted_blobs = c.evicted_blobs.load(Ordering::Relaxed);
    (r.local_blobs, r.local_bytes) = store.usage();
    r.errors = counters.errors.load(Ordering::Relaxed);
    // The node answered again since the last look: its outage's error is
    // history (the count keeps it).
    let recoveries = health.recoveries();
    if counters.recoveries_seen.swap(recoveries, Ordering::Relaxed) != recoveries {
        *counters.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
    r.node_down = health.is_down();
    r.last_error = counters.last_error.lock().ok().and_then(|e| e.clone());
    r.passthrough = counters.passthrough.load(Ordering::Relaxed);
    r.read_path = counters.read_path(read_path).into();
    r.updated_ms = trove_engine::now_ms();
}

/// Unmounts; a busy mount is detached lazily (it goes once its last user
/// leaves; until then they get ENOTCONN once this process is gone).
fn unmount(unmounter: &mut fuser::SessionUnmounter, mountpoint: &std::path::Path) {
    if let Err(e) = unmounter.unmount() {
        tracing::warn!("unmounting {} failed ({e}); detaching it lazily", mountpoint.display());
        let _ = rustix::mount::unmount(mountpoint, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Whether an access failed because the mount's daemon is gone: ENOTCONN
/// for good, or while the kernel tears a dead daemon's io_uring queues
/// down, ECONNABORTED (a request the queue held when it stopped) or
/// ECANCELED (one handed to the ring as its task died).
fn is_dead_daemon_errno(errno: i32) -> bool {
    use rustix::io::Errno;
    [Errno::NOTCONN, Errno::CONNABORTED, Errno::CANCELED].iter().any(|n| n.raw_os_error() == errno)
}

/// The mountpoint, absolute; it must be an empty directory and not a
/// mount already. A trove mount left dead there (its daemon killed: every
/// access ENOTCONN) is detached first, and its overlay comes back with
/// this mount.
fn check_mountpoint(path: &std::path::Path, events: &dyn Fn(MountEvent)) -> Result<PathBuf, MountError> {
    let dead = |e: &std::io::Error| e.raw_os_error().is_some_and(is_dead_daemon_errno);
    let abs = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if dead(&e) => return detach_dead(path, events),
        Err(e) => {
            return Err(MountError::Mountpoint(format!(
                "the mountpoint {} is not usable ({e}); create an empty directory there",
                path.display()
            )))
        }
    };
    let mut entries = match std::fs::read_dir(&abs) {
        Ok(entries) => entries,
        Err(e) if dead(&e) => return detach_dead(path, events),
        Err(e) => {
            return Err(MountError::Mountpoint(format!(
                "the mountpoint {} is not a readable directory ({e})",
                abs.display()
            )))
        }
    };
    if entries.next().is_some() {
        return Err(MountError::Mountpoint(format!(
            "the mountpoint {} is not empty; mount on an empty directory so nothing is hidden",
            abs.display()
        )));
    }
    if crate::status::mounted_points().contains(&abs) {
        return Err(MountError::Mountpoint(format!("{} is already a trove mount", abs.display())));
    }
    Ok(abs)
}

/// Detaches the dead trove mount on `path` (refusing any other dead
/// mount), then checks the directory under it.
fn detach_dead(path: &std::path::Path, events: &dyn Fn(MountEvent)) -> Result<PathBuf, MountError> {
    let dead = lexical_absolute(path);
    if !crate::status::mounted_points().contains(&dead) {
        return Err(MountError::Mountpoint(format!(
            "{} is a dead mount, not trove's; unmount it (umount -l) first",
            path.display()
        )));
    }
    rustix::mount::unmount(&dead, rustix::mount::UnmountFlags::DETACH)
        .map_err(|e| MountError::Mountpoint(format!("detaching the dead mount on {}: {e}", dead.display())))?;
    events(MountEvent::Progress(format!(
        "detached the dead mount on {} (its daemon was killed); what it wrote comes back",
        dead.display()
    )));
    check_mountpoint(&dead, events)
}

/// `path` made absolute without touching it (a dead mount cannot be
/// stat'd): its parent resolved, `.` and `..` taken lexically after that.
pub fn lexical_absolute(path: &std::path::Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
    };
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    match (out.parent().and_then(|p| std::fs::canonicalize(p).ok()), out.file_name()) {
        (Some(parent), Some(name)) => parent.join(name),
        _ => out,
    }
}
