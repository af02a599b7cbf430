//! Snapshots, bundles and a cold node's start, as a repo's owner runs them.
//!
//! A working-tree snapshot is stored in the tiers as
//! `git-snapshot/<repo>@<commit>`: its name is derived from its content,
//! the commit fixing every byte of the tree. A small pointer object,
//! `git-snapshot/<repo>`, names the newest snapshot and the newest HEAD the
//! fleet has seen, so a node with an empty disk finds both in S3.
//!
//! The owner decides: serve the stored snapshot; start a build when there
//! is none (one build, followed by every request meanwhile); rebuild in the
//! background when HEAD moved and the snapshot is older than
//! `--snapshot-interval`, never when HEAD did not move. After each build a
//! mirror snapshot (the bare repo) goes to the remote tier, and a node
//! whose mirror is cold restores from it instead of cloning, once the cold
//! serves it is answering have finished. This module never speaks HTTP.

use crate::key::ObjectKey;
use crate::repo::archive::{self, TreeSnapshotJob};
use crate::repo::build::Build;
use crate::repo::git::Git;
use crate::repo::lease::{FleetStep, Lease};
use crate::repo::mirror::{head_of, mirror_path, SHORT_GIT_TIMEOUT};
use crate::repo::{off_shard, Need, RepoError, RepoKey};
use crate::secret::Secret;
use crate::shard::messages::ShardRequest;
use crate::shard::Shard;
use crate::stats::bump;
use futures_lite::StreamExt;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const SNAPSHOT_NAMESPACE: &str = "git-snapshot";
pub const BUNDLE_NAMESPACE: &str = "git-bundle";
pub const MIRROR_NAMESPACE: &str = "git-mirror";

/// Whether `ns` holds the git face's objects, which only the git face may
/// read or write: through the object API a client could replace a snapshot
/// others restore, or read a private repo's without its access check.
pub fn is_reserved_namespace(ns: &str) -> bool {
    [
        SNAPSHOT_NAMESPACE,
        BUNDLE_NAMESPACE,
        MIRROR_NAMESPACE,
        crate::repo::lease::LEASE_NAMESPACE,
        crate::tree::build::TREE_NAMESPACE,
    ]
    .contains(&ns)
}

/// Largest pointer object read.
const POINTER_MAX_BYTES: u64 = 64 * 1024;
/// Longest a mirror restore waits for the cold serves it would compete with.
const COLD_SERVE_WAIT_MAX: Duration = Duration::from_secs(600);

/// The newest snapshot of a repo, as stored in the tiers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pointer {
    pub commit: String,
    pub built_ms: u64,
    /// The newest HEAD a node has seen, to advertise a bundle on the cold
    /// path, when no mirror is at hand to ask.
    pub head: String,
    /// The repo's mirror is private (repo/access.rs): a cold node checks
    /// the client's credentials before serving the snapshot.
    #[serde(default)]
    pub private: bool,
    /// Length of the stored snapshot's sealed file, so a cold node asks S3
    /// for its tail and its first range at once. Hostile input like the
    /// rest: only a hint, which S3's Content-Range must confirm.
    #[serde(default)]
    pub file_len: Option<u64>,
}

impl Pointer {
    /// A pointer read from the tiers is hostile input (any node, or anyone
    /// with the bucket's keys, may have written it): its ids go into
    /// object names and response headers, so both must be full object ids.
    /// None when they are not.
    fn checked(self) -> Option<Pointer> {
        let commit = parse_sha(&self.commit)?;
        let head = parse_sha(&self.head)?;
        Some(Pointer { commit, head, ..self })
    }
}

/// Counts the cold serves of a repo in flight (any shard); the mirror
/// restore waits for them.
#[derive(Debug)]
pub struct ColdServe(Arc<AtomicUsize>);

impl ColdServe {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for ColdServe {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the owner says about a repo's snapshot.
pub enum SnapshotAnswer {
    /// Stored in the tiers. `head` is the mirror's HEAD when known (a bundle
    /// from `commit` to it is on offer when they differ). `cold` is held
    /// while a cold node serves it.
    /// `private`: only for clients the upstream accepts (repo/access.rs).
    /// `file_len`: the stored file's length, as the pointer says.
    Stored {
        commit: String,
        object: ObjectKey,
        head: Option<String>,
        cold: Option<ColdServe>,
        private: bool,
        file_len: Option<u64>,
    },
    /// Being built: follow it.
    Building { build: Arc<Build>, head: Option<String>, private: bool },
}

/// What the owner's record of a repo holds about snapshots.
#[derive(Debug, Default)]
pub struct SnapshotState {
    pointer: Option<Pointer>,
    pointer_loaded: bool,
    building: Option<Arc<Build>>,
    /// Requests waiting while the fleet decides who builds (lease.rs).
    deciding: Option<Vec<futures_channel::oneshot::Sender<()>>>,
    cold_serves: Arc<AtomicUsize>,
}

/// The object-key form of a repo name (keys hold no `/`).
pub(crate) fn object_name(key: &RepoKey) -> String {
    key.canonical().replace('/', ":")
}

pub fn snapshot_object(key: &RepoKey, commit: &str) -> ObjectKey {
    ObjectKey::new(SNAPSHOT_NAMESPACE, &format!("{}@{commit}", object_name(key))).expect("repo names make valid keys")
}

fn pointer_object(key: &RepoKey) -> ObjectKey {
    ObjectKey::new(SNAPSHOT_NAMESPACE, &object_name(key)).expect("repo names make valid keys")
}

fn mirror_object(key: &RepoKey) -> ObjectKey {
    ObjectKey::new(MIRROR_NAMESPACE, &object_name(key)).expect("repo names make valid keys")
}

pub fn bundle_object(key: &RepoKey, base: &str, head: &str) -> ObjectKey {
    ObjectKey::new(BUNDLE_NAMESPACE, &format!("{}@{base}..{head}", object_name(key)))
        .expect("repo names make valid keys")
}

/// A full object id: 40 (SHA-1) or 64 (SHA-256) hex digits, lowercased.
pub fn parse_sha(s: &str) -> Option<String> {
    ((s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// What a bundle request gets.
pub enum BundleAnswer {
    /// The base is HEAD: nothing to send.
    UpToDate,
    /// Stored in the tiers under this name.
    Stored(ObjectKey),
}

impl Shard {
    /// The snapshot of `key`'s default branch, on any shard: asks the
    /// owner. `stale` names a commit whose stored snapshot was not found
    /// (evicted, lost): the owner forgets it and builds again.
    pub async fn snapshot(
        self: &Rc<Self>,
        key: &RepoKey,
        auth: Option<Secret>,
        stale: Option<String>,
    ) -> Result<SnapshotAnswer, RepoError> {
        let owner = key.owner(self.nr_shards());
        if owner == self.id {
            return self.owner_snapshot(key.clone(), auth, stale).await;
        }
        let key = key.clone();
        self.call(owner, move |reply| ShardRequest::Snapshot { key, auth, stale, reply })
            .await
            .map_err(|_| RepoError::ShardGone(owner))?
    }

    /// The owner's side of [`Shard::snapshot`].
    pub(crate) async fn owner_snapshot(
        self: &Rc<Self>,
        key: RepoKey,
        auth: Option<Secret>,
        stale: Option<String>,
    ) -> Result<SnapshotAnswer, RepoError> {
        self.owner_snapshot_after(key, auth, stale, false).await
    }

    /// [`Shard::owner_snapshot`]; `decided`: once more, after the fleet's
    /// decision, which must have left a snapshot or a build.
    async fn owner_snapshot_after(
        self: &Rc<Self>,
        key: RepoKey,
        auth: Option<Secret>,
        stale: Option<String>,
        decided: bool,
    ) -> Result<SnapshotAnswer, RepoError> {
        let hash = key.hash();
        let (loaded, ready) = self.with_repo(&key, |st| {
            if let (Some(s), Some(p)) = (&stale, &st.snap.pointer) {
                if *s == p.commit {
                    st.snap.pointer = None;
                }
            }
            (st.snap.pointer_loaded, st.ready)
        });
        if !loaded {
            let pointer = self.read_pointer(&key).await;

            self.with_repo(&key, |st| {
                st.snap.pointer_loaded = true;
                if st.snap.pointer.is_none() && stale.as_deref() != pointer.as_ref().map(|p| p.commit.as_str()) {
                    st.snap.pointer = pointer;
                }
            });
        }
        let has_snapshot = self.with_repo(&key, |st| st.snap.pointer.is_some() || st.snap.building.is_some());
        // A cold serve counts from here, before the warm-up below can start:
        // the mirror's restore waits for it.
        let mut cold = None;
        if ready {
            self.owner_repo(key.clone(), auth.clone(), Need::Fresh).await?;
        } else if has_snapshot {
            // Cold: serve what the tiers have at once; warm the mirror behind.
            cold = Some(self.with_repo(&key, |st| ColdServe::new(&st.snap.cold_serves)));
            let me = self.clone();
            let k = key.clone();
            // The asker's credentials: a private repo's mirror needs them.
            let warm_auth = auth.clone();
            glommio::spawn_local(async move {
                if let Err(e) = me.owner_repo(k.clone(), warm_auth, Need::Ready).await {
                    tracing::warn!(repo = %k, error = %e, "warming the mirror failed; the next request retries");
                }
            })
            .detach();
        } else {
            self.owner_repo(key.clone(), auth.clone(), Need::Ready).await?;
        }
        // HEAD as of the last clone or fetch; read from disk only when not
        // known yet (a mirror found at startup).
        let (ready, known) = self.with_repo(&key, |st| (st.ready, st.head.clone()));
        let mirror_head = match (ready, known) {
            (false, _) => None,
            (true, Some(h)) => Some(h),
            (true, None) => {
                let h = head_of(&mirror_path(self, &key)).await?;
                self.with_repo(&key, |st| st.head.clone_from(&h));
                h
            }
        };
        // glommio runs a spawned task at once: nothing is spawned while the
        // repos are borrowed.
        let mut decide = None;
        let next = 'b: {
            let mut repos = self.repos.borrow_mut();
            let st = repos.get_mut(&hash).expect("the entry was made above");
            let head = mirror_head.clone().or_else(|| st.snap.pointer.as_ref().map(|p| p.head.clone()));
            let private = crate::repo::access::is_private(&mirror_path(self, &key))
                || st.snap.pointer.as_ref().is_some_and(|p| p.private);
            if let Some(p) = st.snap.pointer.clone() {
                if let Some(h) = &mirror_head {
                    let age = Duration::from_millis(crate::now_ms().saturating_sub(p.built_ms));
                    let idle = st.snap.building.is_none() && st.snap.deciding.is_none();
                    if *h != p.commit && idle && age >= self.config().repo.snapshot_interval {
                        tracing::info!(repo = %key, from = %p.commit, to = %h, "HEAD moved: rebuilding the snapshot");
                        st.snap.deciding = Some(Vec::new());
                        decide = Some(h.clone());
                    } else if *h != p.head {
                        // Tell the fleet (and a future cold node) where HEAD is.
                        let updated = Pointer { head: h.clone(), ..p.clone() };
                        st.snap.pointer = Some(updated.clone());
                        let (me, k) = (self.clone(), key.clone());
                        glommio::spawn_local(async move { me.write_pointer(&k, &updated).await }).detach();
                    }
                }
                break 'b Ok(SnapshotAnswer::Stored {
                    file_len: p.file_len,
                    object: snapshot_object(&key, &p.commit),
                    commit: p.commit,
                    head,
                    cold,
                    private,
                });
            }
            if let Some(b) = &st.snap.building {
                break 'b Ok(SnapshotAnswer::Building { build: b.clone(), head, private });
            }
            if decided {
                return Err(RepoError::Io("the snapshot build could not start; see the node's log".into()));
            }
            let commit = mirror_head.ok_or_else(|| RepoError::NoCommits(key.canonical()))?;
            // Who builds is the fleet's decision (lease.rs), made once per
            // repo here and waited for by every request meanwhile.
            let (tx, rx) = futures_channel::oneshot::channel();
            match st.snap.deciding.as_mut() {
                Some(w) => w.push(tx),
                None => {
                    st.snap.deciding = Some(vec![tx]);
                    decide = Some(commit);
                }
            }
            Err(rx)
        };
        if let Some(commit) = decide {
            glommio::spawn_local(self.clone().decide_build(key.clone(), commit)).detach();
        }
        match next {
            Ok(answer) => return Ok(answer),
            Err(rx) => {
                let _ = rx.await;
            }
        }
        Box::pin(self.owner_snapshot_after(key, auth, None, true)).await
    }

    /// Builds `commit`'s snapshot here, or takes the one another node of
    /// the fleet built, then wakes the requests that waited.
    async fn decide_build(self: Rc<Self>, key: RepoKey, commit: String) {
        let step = self.fleet_build(&key, &commit).await;
        let private = crate::repo::access::is_private(&mirror_path(&self, &key));
        let (waiters, started) = self.with_repo(&key, |st| {
            let started = match step {
                FleetStep::Landed => {
                    st.snap.pointer = Some(Pointer {
                        commit: commit.clone(),
                        built_ms: crate::now_ms(),
                        head: commit,
                        private,
                        file_len: None,
                    });
                    None
                }
                FleetStep::Build(lease) if st.snap.building.is_none() => {
                    match new_build(self.layout(), self.id, commit) {
                        Ok(build) => {
                            st.snap.building = Some(build.clone());
                            Some((build, lease))
                        }
                        Err(e) => {
                            tracing::warn!(repo = %key, error = %e, "could not start the snapshot build");
                            None
                        }
                    }
                }
                FleetStep::Build(_) => None,
            };
            (st.snap.deciding.take().unwrap_or_default(), started)
        });
        if let Some((build, lease)) = started {
            glommio::spawn_local(self.clone().run_build(key.clone(), build, lease)).detach();
        }
        for w in waiters {
            let _ = w.send(());
        }
    }

    async fn run_build(self: Rc<Self>, key: RepoKey, build: Arc<Build>, lease: Option<Lease>) {
        let built = async { self.build_and_store(&key, &build).await };
        let stored = match &lease {
            // The lease is renewed for as long as the build runs.
            Some(l) => {
                futures_lite::future::or(built, async {
                    l.keep().await;
                    false
                })
                .await
            }
            None => built.await,
        };
        if let Some(l) = lease {
            l.release().await;
        }
        if stored && self.remote.is_some() {
            self.upload_mirror_snapshot(&key).await;
        }
    }

    /// Builds and stores the snapshot; true when it is stored.
    async fn build_and_store(self: &Rc<Self>, key: &RepoKey, build: &Arc<Build>) -> bool {
        let key = key.clone();
        let started = Instant::now();
        let job = match self.config().repo.upstreams.url(&key) {
            Ok(origin_url) => TreeSnapshotJob {
                mirror: mirror_path(self, &key),
                work: self.layout().tmp_path(self.id),
                out: build.path.clone(),
                origin_url,
                commit: build.commit.clone(),
                zstd_workers: zstd_workers(),
            },
            Err(e) => {
                self.build_failed(&key, build, e.to_string());
                return false;
            }
        };
        let b = build.clone();
        let made = off_shard("trove-snapshot", move || archive::make_tree_snapshot(&job, &*b)).await;
        let len = match made {
            Ok(Ok(len)) => len,
            Ok(Err(e)) => {
                self.build_failed(&key, build, e.to_string());
                return false;
            }
            Err(e) => {
                self.build_failed(&key, build, e.to_string());
                return false;
            }
        };
        build.mark_done(len);
        bump(&self.stats().snapshot_builds, 1);
        tracing::info!(repo = %key, commit = %build.commit, bytes = len, elapsed = ?started.elapsed(), "snapshot built");
        let object = snapshot_object(&key, &build.commit);
        let stored = self.put_file(&object, &build.path, true).await;
        let pointer = Pointer {
            commit: build.commit.clone(),
            built_ms: crate::now_ms(),
            head: build.commit.clone(),
            private: crate::repo::access::is_private(&mirror_path(self, &key)),
            file_len: Some(crate::store::format::sealed_len(object.namespace().len(), object.key().len(), len)),
        };
        match &stored {
            Ok(()) => self.write_pointer(&key, &pointer).await,
            Err(e) => tracing::warn!(repo = %key, error = %e, "storing the snapshot failed; it will be built again"),
        }
        self.with_repo(&key, |st| {
            st.snap.building = None;
            if stored.is_ok() {
                st.snap.pointer = Some(pointer);
            }
        });
        let _ = std::fs::remove_file(&build.path);
        stored.is_ok()
    }

    fn build_failed(&self, key: &RepoKey, build: &Build, why: String) {
        build.mark_failed();
        tracing::warn!(repo = %key, error = %why, "snapshot build failed; the next request retries");
        let _ = std::fs::remove_file(&build.path);
        self.with_repo(key, |st| st.snap.building = None);
    }

    async fn read_pointer(self: &Rc<Self>, key: &RepoKey) -> Option<Pointer> {
        match self.read_bytes(&pointer_object(key), POINTER_MAX_BYTES).await {
            Ok(Some(b)) => match serde_json::from_slice::<Pointer>(&b).map(Pointer::checked) {
                Ok(Some(p)) => Some(p),
                Ok(None) => {
                    tracing::warn!(repo = %key, "the snapshot pointer names no valid commit; ignoring it (building from the mirror)");
                    None
                }
                Err(e) => {
                    tracing::warn!(repo = %key, error = %e, "unreadable snapshot pointer; ignoring it");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(repo = %key, error = %e, "could not read the snapshot pointer; building from the mirror");
                None
            }
        }
    }

    async fn write_pointer(self: &Rc<Self>, key: &RepoKey, p: &Pointer) {
        let bytes = serde_json::to_vec(p).expect("a pointer serializes");
        if let Err(e) = self.put_bytes(&pointer_object(key), &bytes).await {
            tracing::warn!(repo = %key, error = %e, "could not store the snapshot pointer");
        }
    }

    /// Puts the bare mirror, as tar.zst, in the remote tier for new nodes.
    async fn upload_mirror_snapshot(self: &Rc<Self>, key: &RepoKey) {
        let mirror = mirror_path(self, key);
        let out = self.layout().tmp_path(self.id).with_extension("tar.zst");
        let o = out.clone();
        // A repack deletes the packs it rolls up: not while they are archived.
        let housekeeping = self.with_repo(key, |st| st.housekeeping.clone());
        let permit = housekeeping.acquire_permit(1).await;
        let made = off_shard("trove-mirror-snap", move || {
            archive::make_mirror_snapshot(&mirror, &o, zstd_workers(), &archive::NoProgress)
        })
        .await;
        drop(permit);
        let result = match made {
            Ok(Ok(_)) => self.put_file(&mirror_object(key), &out, false).await.map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let _ = std::fs::remove_file(&out);
        match result {
            Ok(()) => tracing::info!(repo = %key, "mirror snapshot uploaded"),
            Err(e) => tracing::warn!(repo = %key, error = %e, "mirror snapshot upload failed"),
        }
    }

    /// Restores `key`'s mirror into `dir` from the mirror snapshot in the
    /// tiers, keeping only the repo's data (`untrusted::mirror_entry`): the
    /// caller writes its config. Returns the object format the snapshot's
    /// config named, or None when there is no snapshot. Waits first for the
    /// repo's cold serves, so the restore does not compete with them for the
    /// disk.
    pub(crate) async fn restore_mirror(
        self: &Rc<Self>,
        key: &RepoKey,
        dir: &Path,
    ) -> Result<Option<&'static str>, RepoError> {
        let cold = self.with_repo(key, |st| st.snap.cold_serves.clone());
        let waited = Instant::now();
        while cold.load(Ordering::Acquire) > 0 && waited.elapsed() < COLD_SERVE_WAIT_MAX {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        let found = self.open_object(&mirror_object(key)).await.map_err(|e| RepoError::Io(e.to_string()))?;
        let Some((obj, _)) = found else { return Ok(None) };
        let len = obj.meta.data_len;
        std::fs::create_dir_all(dir).map_err(|e| RepoError::Io(format!("creating {}: {e}", dir.display())))?;
        // The shard streams the bytes; a thread unpacks them.
        let (mut tx, rx) = futures_channel::mpsc::channel::<bytes::Bytes>(8);
        let d = dir.to_owned();
        let unpack = off_shard("trove-mirror-restore", move || {
            super::unpack::unpack_safely(archive::ChannelReader::new(rx), &d, 1, super::untrusted::mirror_entry)
        });
        let feed = async {
            let mut stream = std::pin::pin!(self.stream_object(obj, 0, len));
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| RepoError::Io(e.to_string()))?;
                let b = bytes::Bytes::copy_from_slice(bytes::Buf::chunk(&chunk));
                if futures_lite::future::poll_fn(|cx| tx.poll_ready(cx)).await.is_err() || tx.start_send(b).is_err() {
                    break; // the unpacker stopped; its error says why
                }
            }
            tx.close_channel();
            Ok::<(), RepoError>(())
        };
        let (fed, unpacked) = futures_lite::future::zip(feed, unpack).await;
        fed?;
        let unpacked = unpacked?.map_err(|e| RepoError::Io(format!("unpacking the mirror snapshot: {e}")))?;
        let config = unpacked.captured.iter().find(|(p, _)| p == Path::new("config")).map(|(_, c)| c.as_slice());
        let format = super::untrusted::object_format(config.unwrap_or_default())
            .ok_or_else(|| RepoError::Io("the mirror snapshot names an unknown object format".into()))?;
        bump(&self.stats().mirror_restores, 1);
        Ok(Some(format))
    }

    /// A bundle of HEAD ^`base` from `key`'s mirror, stored in the tiers.
    pub async fn bundle(
        self: &Rc<Self>,
        key: &RepoKey,
        auth: Option<Secret>,
        base: &str,
    ) -> Result<BundleAnswer, RepoError> {
        let mirror = self.repo(key, auth.clone(), Need::Fresh).await?;
        // Maybe newer than the mirror: fetch once before saying 404.
        let names = [format!("{base}^{{commit}}")];
        if self.resolve_fetching(key, auth, &mirror, &names).await?.ids[0].is_none() {
            return Err(RepoError::UnknownCommit(base.to_owned()));
        }
        let head = head_of(&mirror).await?.ok_or_else(|| RepoError::NoCommits(key.canonical()))?;
        if head == base {
            return Ok(BundleAnswer::UpToDate);
        }
        let object = bundle_object(key, base, &head);
        if self.open_object(&object).await.map_err(|e| RepoError::Io(e.to_string()))?.is_some() {
            return Ok(BundleAnswer::Stored(object));
        }
        // A fetch may move HEAD meanwhile: the bundle is named after the
        // head it really holds (list-heads), not the one read above.
        let tmp = self.layout().tmp_path(self.id).with_extension("bundle");
        let tmp_s = tmp.to_string_lossy().into_owned();
        let out = Git::new(["bundle", "create", "--quiet", &tmp_s, "HEAD", &format!("^{base}")])
            .dir(&mirror)
            .run(Vec::new(), SHORT_GIT_TIMEOUT * 10)
            .await?;
        if !out.ok() {
            let _ = std::fs::remove_file(&tmp);
            if out.stderr.contains("empty bundle") {
                // base is ahead of HEAD: the client has everything.
                return Ok(BundleAnswer::UpToDate);
            }
            return Err(RepoError::Git { what: "git bundle create".into(), stderr: out.stderr });
        }
        let heads = Git::new(["bundle", "list-heads", &tmp_s]).dir(&mirror).run(Vec::new(), SHORT_GIT_TIMEOUT).await?;
        let bundled = String::from_utf8_lossy(&heads.stdout).split_whitespace().next().unwrap_or("").to_owned();
        let object = bundle_object(key, base, if bundled.is_empty() { &head } else { &bundled });
        let stored = self.put_file(&object, &tmp, true).await;
        let _ = std::fs::remove_file(&tmp);
        stored.map_err(|e| RepoError::Io(e.to_string()))?;
        bump(&self.stats().bundle_builds, 1);
        Ok(BundleAnswer::Stored(object))
    }
}

/// Compression threads per build: every core (the build is short and the
/// client is waiting on it).
fn zstd_workers() -> u32 {
    std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1)
}

/// A snapshot file to build `commit` into, in the shard's tmp dir.
fn new_build(layout: &crate::store::Layout, shard: crate::ShardId, commit: String) -> Result<Arc<Build>, RepoError> {
    let path = layout.tmp_path(shard).with_extension("tar.zst");
    Build::create(commit, path).map(Arc::new).map_err(|e| RepoError::Io(format!("creating a snapshot file: {e}")))
}
