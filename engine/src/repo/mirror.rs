//! What a repo's owner does: clone, check, fetch, each once at a time, and
//! the state machine around them.
//!
//! A clone runs `git clone --mirror` into the owner's `tmp/`, writes the
//! serving config, commit-graph and a multi-pack-index bitmap there, and
//! only then renames the directory into `mirrors/`: a mirror directory
//! exists only whole, which is what lets any shard serve it without asking.
//! A crash mid-clone leaves only `tmp/`, which startup wipes.
//!
//! Every job runs as a detached task with all its askers waiting on it, so
//! a client that hangs up never cancels a clone others are waiting for.
//! This module never speaks HTTP.

use crate::repo::git::Git;
use crate::repo::{Need, RepoError, RepoKey};
use crate::secret::Secret;
use crate::shard::Shard;
use crate::stats::bump;
use crate::ShardId;
use futures_channel::oneshot;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// First wait after a failed clone; doubles per failure up to the max.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Longest a ref check or a catalogue command may run.
pub(crate) const SHORT_GIT_TIMEOUT: Duration = Duration::from_secs(120);
/// A mirror read within this long is fetched in the background.
const RECENT_USE: Duration = Duration::from_secs(3600);

/// Config every mirror is served with.
const SERVING_CONFIG: &[(&str, &str)] = &[
    ("protocol.version", "2"),
    ("uploadpack.allowFilter", "true"),
    ("uploadpack.allowAnySHA1InWant", "true"),
    ("uploadpack.allowTipSHA1InWant", "true"),
    ("uploadpack.allowReachableSHA1InWant", "true"),
    ("gc.auto", "0"),
    ("core.commitGraph", "true"),
    ("fetch.writeCommitGraph", "true"),
    ("pack.writeBitmapHashCache", "true"),
    ("repack.writeBitmaps", "true"),
];

/// The config of a mirror of `key` cloned from `url`, as `clone --mirror`
/// with the serving config writes it.
fn mirror_config(key: &RepoKey, url: &str, object_format: &str) -> crate::repo::untrusted::ConfigFile {
    let mut c = crate::repo::untrusted::ConfigFile::repository(true, object_format);
    c.set("remote.origin.url", url).set("remote.origin.fetch", "+refs/*:refs/*").set("remote.origin.mirror", "true");
    for (k, v) in SERVING_CONFIG {
        c.set(k, v);
    }
    c.set("trove.key", &key.canonical());
    c
}

/// The owner's record of one repo.
pub struct RepoState {
    pub(crate) key: RepoKey,
    pub(crate) ready: bool,
    /// Set while a job runs: those waiting on it.
    waiters: Option<Vec<oneshot::Sender<Result<(), RepoError>>>>,
    checked_at: Option<Instant>,
    used_at: Instant,
    failures: u32,
    /// After a failed clone: not before then, and why.
    retry: Option<(Instant, RepoError)>,
    /// HEAD's commit after the last clone or fetch (None: not read yet).
    pub(crate) head: Option<String>,
    /// A hash of HEAD and every ref after the last clone or fetch (None:
    /// not read).
    refs: Option<u64>,
    /// A fetch moved a ref since the mirror was last packed for serving.
    pub(crate) changed_since_upkeep: bool,
    /// When the mirror was last packed for serving (clone, restore or
    /// upkeep); None for a mirror found at startup.
    pub(crate) upkept_at: Option<Instant>,
    /// Held by work that needs the mirror's files to hold still: its
    /// repack (upkeep.rs) and the tar of its mirror snapshot.
    pub(crate) housekeeping: Rc<glommio::sync::Semaphore>,
    pub(crate) snap: crate::repo::snapshot::SnapshotState,
    /// Responses shared by identical clone requests.
    pub(crate) packs: crate::repo::packcache::PackTable,
}

#[derive(Clone, Copy)]
enum Job {
    Clone,
    Fetch,
}

/// What a request to the owner does about a repo's job.
enum Step {
    /// The mirror already meets the need.
    Done,
    /// A job is running: wait for it.
    Join,
    Start(Job),
}

/// Where `key`'s mirror lives once published.
pub fn mirror_path(shard: &Shard, key: &RepoKey) -> PathBuf {
    mirror_path_in(&shard.layout().shard_dir(key.owner(shard.nr_shards())), key.hash())
}

fn mirror_path_in(shard_dir: &Path, hash: u128) -> PathBuf {
    shard_dir.join("mirrors").join(format!("{}.git", crate::key::hash_hex(hash)))
}

impl Shard {
    /// Makes `key`'s mirror meet `need`, on any shard: asks the owner.
    /// Returns the mirror's path, once the asker may read it: a private
    /// repo's needs `auth` to be accepted upstream (repo/access.rs). Every
    /// client-facing read of a mirror comes through here.
    pub async fn repo(self: &Rc<Self>, key: &RepoKey, auth: Option<Secret>, need: Need) -> Result<PathBuf, RepoError> {
        let path = mirror_path(self, key);
        // A published mirror is whole: serving it needs no one's leave but
        // the access check. (Its use reaches the owner through the Fresh
        // check that starts every clone and fetch.)
        if !(need == Need::Ready && path.exists()) {
            let owner = key.owner(self.nr_shards());
            let auth = auth.clone();
            if owner == self.id {
                self.owner_repo(key.clone(), auth, need).await?;
            } else {
                let key = key.clone();
                self.call(owner, move |reply| crate::shard::messages::ShardRequest::Repo { key, auth, need, reply })
                    .await
                    .map_err(|_| RepoError::ShardGone(owner))??;
            }
        }
        let private = crate::repo::access::is_private(&path);
        if private {
            self.reprobe_if_due(key, &path);
        }
        self.check_access(key, private, auth.as_ref()).await?;
        Ok(path)
    }

    /// (whole-run timeout, no-progress timeout) of an upstream fetch.
    fn upstream_deadlines(&self) -> (Duration, Duration) {
        (self.config().repo.clone_timeout, self.config().repo.upstream_timeout)
    }

    /// Runs `f` on `key`'s record (owner only), making it if needed.
    pub(crate) fn with_repo<T>(&self, key: &RepoKey, f: impl FnOnce(&mut RepoState) -> T) -> T {
        let path = mirror_path(self, key);
        let mut repos = self.repos.borrow_mut();
        if repos.len() >= crate::limits::REPO_STATES_MAX && !repos.contains_key(&key.hash()) {
            drop_dead_records(&mut repos);
        }
        let st = repos.entry(key.hash()).or_insert_with(|| RepoState::new(key.clone(), path.exists()));
        let out = f(st);
        self.stats().repo_states.store(repos.len() as u64, std::sync::atomic::Ordering::Relaxed);
        out
    }

    /// The owner's side of [`Shard::repo`].
    pub(crate) async fn owner_repo(
        self: &Rc<Self>,
        key: RepoKey,
        auth: Option<Secret>,
        need: Need,
    ) -> Result<(), RepoError> {
        let ttl = self.config().repo.refs_ttl;
        let (tx, rx) = oneshot::channel();
        let mut serve_stale = false;
        let step = self.with_repo(&key, |st| {
            st.used_at = Instant::now();
            if st.ready && need == Need::Ready {
                return Ok(Step::Done);
            }
            // A warm mirror whose refs check is slow is served as it is.
            serve_stale = st.ready && need == Need::Fresh;
            if let Some(w) = st.waiters.as_mut() {
                w.push(tx);
                return Ok(Step::Join);
            }
            let job = if !st.ready {
                if let Some((at, cause)) = &st.retry {
                    let now = Instant::now();
                    if *at > now {
                        // The upstream said it has no such repo: that is the
                        // answer until the record expires.
                        if let RepoError::UpstreamNotFound(_) = cause {
                            return Err(cause.clone());
                        }
                        return Err(RepoError::Backoff {
                            key: key.canonical(),
                            cause: cause.to_string(),
                            retry_in: *at - now,
                        });
                    }
                }
                Job::Clone
            } else if need == Need::Fetch || st.checked_at.is_none_or(|t| t.elapsed() >= ttl) {
                Job::Fetch
            } else {
                return Ok(Step::Done);
            };
            st.waiters = Some(vec![tx]);
            Ok(Step::Start(job))
        })?;
        match step {
            Step::Done => return Ok(()),
            Step::Join => {}
            Step::Start(job) => {
                let me = self.clone();
                let k = key.clone();
                glommio::spawn_local(async move { me.run_repo_job(k, auth, job, need).await }).detach();
            }
        }
        if serve_stale {
            let waited = futures_lite::future::or(async { Some(rx.await) }, async {
                glommio::timer::sleep(crate::limits::FRESH_WAIT_MAX).await;
                None
            })
            .await;
            return match waited {
                Some(r) => r.map_err(|_| RepoError::ShardGone(self.id))?,
                None => {
                    tracing::info!(repo = %key, "the upstream is slow to answer the refs check; serving the mirror as it is");
                    Ok(())
                }
            };
        }
        rx.await.map_err(|_| RepoError::ShardGone(self.id))?
    }

    async fn run_repo_job(self: Rc<Self>, key: RepoKey, auth: Option<Secret>, job: Job, need: Need) {
        let path = mirror_path(&self, &key);
        let result = match self.node.upstream_jobs.enter().await {
            Err(_) => {
                bump(&self.stats().upstream_jobs_refused, 1);
                Err(RepoError::Busy)
            }
            Ok(_permit) => match job {
                Job::Clone => self.make_mirror(&key, auth.as_ref(), &path).await,
                Job::Fetch => {
                    bump(&self.stats().upstream_fetches, 1);
                    fetch_mirror(&key, auth.as_ref(), &path, self.upstream_deadlines()).await
                }
            },
        };
        // A job ended by the node's stop (reaper.rs) says so, not what git said.
        let result = match result {
            Err(_) if self.node.is_stopping() => Err(RepoError::ShardGone(self.id)),
            r => r,
        };
        let stale_ok = matches!(job, Job::Fetch) && need != Need::Fetch;
        let (head, refs) = match result {
            Ok(()) => refs_state(&path).await.map_or((None, None), |(h, r)| (h, Some(r))),
            Err(_) => (None, None),
        };
        {
            let mut repos = self.repos.borrow_mut();
            let Some(st) = repos.get_mut(&key.hash()) else { return };
            if result.is_ok() {
                // Responses shared by identical requests stay valid while the
                // refs do: a freshness fetch that brought nothing (the common
                // case, every refs TTL) must not make the next clone run
                // upload-pack again.
                if refs.is_none() || refs != st.refs {
                    st.packs.clear();
                    st.changed_since_upkeep |= matches!(job, Job::Fetch);
                }
                st.head = head;
                st.refs = refs;
            }
            let reply = match (&result, job) {
                (Ok(()), Job::Clone) => {
                    // Cloned or restored, then indexed: packed for serving.
                    st.upkept_at = Some(Instant::now());
                    st.ready = true;
                    st.failures = 0;
                    st.retry = None;
                    st.checked_at = Some(Instant::now());
                    Ok(())
                }
                (Ok(()), Job::Fetch) => {
                    st.checked_at = Some(Instant::now());
                    Ok(())
                }
                (Err(e @ RepoError::Unauthorized(_)), Job::Clone) => {
                    // The asker's credentials, not the upstream, failed: the
                    // next asker (with good ones) must not wait out a backoff.
                    Err(e.clone())
                }
                (Err(e @ (RepoError::Busy | RepoError::ShardGone(_))), Job::Clone) => {
                    // The node, not the upstream, said no: no backoff.
                    Err(e.clone())
                }
                (Err(e), Job::Clone) => {
                    st.failures += 1;
                    let mut wait =
                        BACKOFF_MIN.saturating_mul(1 << st.failures.min(16).saturating_sub(1)).min(BACKOFF_MAX);
                    if let RepoError::UpstreamNotFound(_) = e {
                        wait = wait.max(crate::limits::UPSTREAM_NOT_FOUND_TTL);
                    }
                    st.retry = Some((Instant::now() + wait, e.clone()));
                    tracing::warn!(repo = %key, error = %e, retry_in = ?wait, "clone failed; the repo is Empty again");
                    Err(e.clone())
                }
                (Err(e), Job::Fetch) => {
                    // A cache keeps serving what it has when the upstream is down.
                    tracing::warn!(repo = %key, error = %e, "fetch failed; serving the mirror as it is");
                    if stale_ok {
                        Ok(())
                    } else {
                        Err(e.clone())
                    }
                }
            };
            for w in st.waiters.take().unwrap_or_default() {
                let _ = w.send(reply.clone());
            }
        }
        if matches!((&result, job), (Ok(()), Job::Clone)) {
            self.evict_mirrors().await;
        }
    }

    /// Makes the mirror: from the mirror snapshot in the tiers plus a
    /// fetch when there is one (a new node of a fleet), else by cloning.
    async fn make_mirror(self: &Rc<Self>, key: &RepoKey, auth: Option<&Secret>, path: &Path) -> Result<(), RepoError> {
        if self.remote.is_some() {
            let tmp = self.layout().tmp_path(self.id);
            let started = Instant::now();
            let restored = async {
                let Some(object_format) = self.restore_mirror(key, &tmp).await? else {
                    return Ok(false);
                };
                // The snapshot's own config never survives the restore: the
                // mirror gets the one a clone here would have.
                let url = self.config().repo.upstreams.url(key)?;
                let config = tmp.join("config");
                mirror_config(key, &url, object_format)
                    .write(&config)
                    .map_err(|e| RepoError::Io(format!("writing {}: {e}", config.display())))?;
                bump(&self.stats().upstream_fetches, 1);
                fetch_mirror(key, auth, &tmp, self.upstream_deadlines()).await?;
                index_mirror(&tmp).await?;
                publish(&tmp, path)?;
                Ok::<bool, RepoError>(true)
            }
            .await;
            match restored {
                Ok(true) => {
                    tracing::info!(repo = %key, elapsed = ?started.elapsed(), "mirror restored from its snapshot");
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(repo = %key, error = %e, "restoring the mirror snapshot failed; cloning"),
            }
            let _ = std::fs::remove_dir_all(&tmp);
        }
        self.clone_mirror(key, auth, path).await
    }

    async fn clone_mirror(&self, key: &RepoKey, auth: Option<&Secret>, path: &Path) -> Result<(), RepoError> {
        let url = self.config().repo.upstreams.url(key)?;
        let timeout = self.config().repo.clone_timeout;
        let tmp = self.layout().tmp_path(self.id);
        let started = Instant::now();
        tracing::info!(repo = %key, "cloning mirror");
        bump(&self.stats().upstream_clones, 1);
        let mut args: Vec<String> = vec!["clone".into(), "--mirror".into(), "--quiet".into()];
        for (k, v) in SERVING_CONFIG.iter().copied().chain([("trove.key", key.canonical().as_str())]) {
            args.push("-c".into());
            args.push(format!("{k}={v}"));
        }
        let url_for_check = url.clone();
        args.extend(["--".into(), url, tmp.to_string_lossy().into_owned()]);
        let no_progress = self.config().repo.upstream_timeout;
        let out = Git::new(args).auth(auth).upstream(no_progress).run(Vec::new(), timeout).await;
        let result = async {
            let out = out?;
            if !out.ok() {
                return Err(upstream_error(key, "git clone --mirror", &out.stderr, no_progress));
            }
            if crate::repo::access::mark_if_private(&url_for_check, &tmp, auth, no_progress).await? {
                tracing::info!(repo = %key, "the upstream refuses anonymous reads: the mirror is private");
            }
            index_mirror(&tmp).await?;
            publish(&tmp, path)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        } else {
            tracing::info!(repo = %key, elapsed = ?started.elapsed(), "mirror ready");
        }
        result
    }

    /// Finds the mirrors in this shard's directory (startup): they are
    /// Ready. A mirror whose owner changed with the shard count moves to
    /// its owner's directory.
    pub(crate) async fn discover_mirrors(&self) {
        let dir = self.layout().shard_dir(self.id).join("mirrors");
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            let out = Git::new(["config", "--get", "trove.key"]).dir(&p).run(Vec::new(), SHORT_GIT_TIMEOUT).await;
            let key = match out.ok().filter(|o| o.ok()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()) {
                Some(k) => RepoKey::parse_canonical(&k),
                None => Err(RepoError::BadName(p.display().to_string())),
            };
            let Ok(key) = key else {
                tracing::warn!(path = %p.display(), "not a trove mirror; leaving it alone");
                continue;
            };
            let owner: ShardId = key.owner(self.nr_shards());
            let want = mirror_path_in(&self.layout().shard_dir(owner), key.hash());
            if want != p {
                if let Err(e) = publish(&p, &want) {
                    tracing::warn!(repo = %key, error = %e, "could not move mirror to its new owner");
                }
            }
            if owner == self.id {
                let mut st = RepoState::new(key, true);
                st.used_at = crate::repo::evict::used_at_from_disk(&want);
                self.repos.borrow_mut().insert(st.key.hash(), st);
            }
        }
        let n = self.repos.borrow().len();
        if n > 0 {
            tracing::info!(shard = self.id, mirrors = n, "found mirrors");
        }
    }

    /// Fetches the mirrors used recently (background, every fetch interval),
    /// and drops the shared clone responses of the others: kept until the
    /// mirror changes, an idle repo's would otherwise hold disk for good.
    pub(crate) async fn fetch_recent_mirrors(self: &Rc<Self>) {
        {
            let mut repos = self.repos.borrow_mut();
            drop_dead_records(&mut repos);
            self.stats().repo_states.store(repos.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        for st in self.repos.borrow_mut().values_mut() {
            if st.waiters.is_none() && st.used_at.elapsed() >= RECENT_USE {
                st.packs.clear();
            }
        }
        let recent: Vec<RepoKey> = self
            .repos
            .borrow()
            .values()
            .filter(|s| s.ready && s.waiters.is_none() && s.used_at.elapsed() < RECENT_USE)
            // A private repo is fetched with a client's credentials, when one asks.
            .filter(|s| !crate::repo::access::is_private(&mirror_path(self, &s.key)))
            .map(|s| s.key.clone())
            .collect();
        for key in recent {
            if let Err(e) = self.owner_repo(key.clone(), None, Need::Fetch).await {
                tracing::debug!(repo = %key, error = %e, "background fetch failed");
            }
        }
    }
}

/// Drops the records of repos that never became Ready, have no job
/// running and whose retry time (backoff, or a remembered not-found) has
/// passed: what a client naming made-up repos leaves behind.
fn drop_dead_records(repos: &mut std::collections::HashMap<u128, RepoState>) {
    let now = Instant::now();
    repos.retain(|_, st| st.ready || st.waiters.is_some() || st.retry.as_ref().is_some_and(|(at, _)| *at > now));
}

impl RepoState {
    /// When the owner last saw the mirror used.
    pub(crate) fn used_at(&self) -> Instant {
        self.used_at
    }

    /// Makes a Ready mirror with no job in flight Empty again, as its
    /// directory is about to be unpublished (evict.rs); false, and nothing
    /// changed, otherwise.
    pub(crate) fn forget_mirror(&mut self) -> bool {
        if !self.ready || self.waiters.is_some() {
            return false;
        }
        self.ready = false;
        self.checked_at = None;
        self.head = None;
        self.refs = None;
        self.packs.clear();
        true
    }

    pub(crate) fn new(key: RepoKey, ready: bool) -> Self {
        Self {
            key,
            ready,
            waiters: None,
            checked_at: None,
            used_at: Instant::now(),
            failures: 0,
            retry: None,
            head: None,
            refs: None,
            changed_since_upkeep: false,
            upkept_at: None,
            housekeeping: Rc::new(glommio::sync::Semaphore::new(1)),
            snap: Default::default(),
            packs: Default::default(),
        }
    }
}

async fn fetch_mirror(
    key: &RepoKey,
    auth: Option<&Secret>,
    path: &Path,
    (timeout, no_progress): (Duration, Duration),
) -> Result<(), RepoError> {
    let out = Git::new(["fetch", "--prune", "--quiet", "origin"])
        .dir(path)
        .auth(auth)
        .upstream(no_progress)
        .run(Vec::new(), timeout)
        .await?;
    if !out.ok() {
        return Err(upstream_error(key, "git fetch", &out.stderr, no_progress));
    }
    Ok(())
}

/// What each of `names` (refs, or object expressions like `<sha>^{commit}`)
/// resolves to in `dir`, in order; None where it does not. One process for
/// all of them. Names must not hold whitespace (the caller validates).
///
/// Its memory grows with the names (a request may name 10^6 wants):
/// [`RESOLVE_BYTES_PER_NAME`] bounds what it holds at once for each.
pub async fn resolve(dir: &Path, names: &[String]) -> Result<Vec<Option<String>>, RepoError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut input = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum());
    for n in names {
        input.extend_from_slice(n.as_bytes());
        input.push(b'\n');
    }
    let out = Git::new(["cat-file", "--batch-check=%(objectname)"]).dir(dir).run(input, SHORT_GIT_TIMEOUT).await?;
    if !out.ok() {
        return Err(RepoError::Git { what: "git cat-file --batch-check".into(), stderr: out.stderr });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut found = Vec::with_capacity(names.len());
    for l in text.lines() {
        found.push((!l.ends_with(" missing") && !l.ends_with(" ambiguous")).then(|| l.trim().to_owned()));
    }
    if found.len() != names.len() {
        return Err(RepoError::Git { what: "git cat-file --batch-check".into(), stderr: "short output".into() });
    }
    Ok(found)
}

/// The most [`resolve`] (and `Shard::resolve_fetching`, which holds one
/// answer at a time) holds at once for each name of 40 hex digits, beyond
/// the name: its input line (41), cat-file's output line (at most `<name>
/// missing`, 49) in a buffer that grows by doubling (98), the answer (a
/// 24-byte slot and a 40-byte id in a 48-byte allocation) and the list of
/// names missing (8, doubling: 16). A caller that resolves names a client
/// sent charges this to its budget.
pub const RESOLVE_BYTES_PER_NAME: u64 = 41 + 98 + 24 + 48 + 16;

/// What HEAD points to in `dir` (None for a repo with no commits) and a
/// hash of HEAD and every ref with what it points to, in one process.
async fn refs_state(dir: &Path) -> Result<(Option<String>, u64), RepoError> {
    let out = Git::new(["show-ref", "--head"]).dir(dir).run(Vec::new(), SHORT_GIT_TIMEOUT).await?;
    // Exit 1: no refs at all (an empty repo), which is a state too.
    if !out.ok() && out.status.code() != Some(1) {
        return Err(RepoError::Git { what: "git show-ref".into(), stderr: out.stderr });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let head = text.lines().find_map(|l| l.strip_suffix(" HEAD")).map(str::to_owned);
    Ok((head, xxhash_rust::xxh3::xxh3_64(&out.stdout)))
}

/// The commit HEAD names in `dir`; None for a repo with no commits.
pub async fn head_of(dir: &Path) -> Result<Option<String>, RepoError> {
    let out =
        Git::new(["rev-parse", "--verify", "-q", "HEAD^{commit}"]).dir(dir).run(Vec::new(), SHORT_GIT_TIMEOUT).await?;
    Ok(out.ok().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

/// Commit-graph and a multi-pack-index bitmap: what makes serving fast.
async fn index_mirror(dir: &Path) -> Result<(), RepoError> {
    for args in [&["commit-graph", "write", "--reachable"][..], &["multi-pack-index", "write", "--bitmap"][..]] {
        let out = Git::new(args.iter().copied()).dir(dir).run(Vec::new(), SHORT_GIT_TIMEOUT * 10).await?;
        if !out.ok() {
            return Err(RepoError::Git { what: format!("git {}", args.join(" ")), stderr: out.stderr });
        }
    }
    Ok(())
}

/// Renames the whole directory `from` to `to`, then syncs the parent.
fn publish(from: &Path, to: &Path) -> Result<(), RepoError> {
    let io = |e: std::io::Error| RepoError::Io(format!("publishing {}: {e}", to.display()));
    let parent = to.parent().expect("mirror paths have a parent");
    std::fs::create_dir_all(parent).map_err(io)?;
    std::fs::rename(from, to).map_err(io)?;
    std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(io)
}

fn upstream_error(key: &RepoKey, what: &str, stderr: &str, no_progress: Duration) -> RepoError {
    let s = stderr.to_ascii_lowercase();
    // curl's low-speed abort (http.lowSpeedTime) and connect timeouts: the
    // same no-progress bound the watchdog keeps, hit first.
    if s.contains("operation too slow") || s.contains("timed out") {
        return RepoError::Stalled(what.to_owned(), no_progress);
    }
    if let Some(status) = crate::repo::git::redirect_status(stderr) {
        return RepoError::Redirected { key: key.canonical(), what: what.to_owned(), status };
    }
    if s.contains("not found") || s.contains("does not appear to be a git repository") || s.contains("does not exist") {
        return RepoError::UpstreamNotFound(key.canonical());
    }
    if s.contains("authentication failed") || s.contains("could not read username") {
        return RepoError::Unauthorized(key.canonical());
    }
    RepoError::Git { what: what.to_owned(), stderr: stderr.trim().lines().last().unwrap_or("").to_owned() }
}
