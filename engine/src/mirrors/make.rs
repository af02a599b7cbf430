//! A new mirror: restored from its snapshot in the tiers plus a fetch when
//! there is one (a new node of a fleet), else cloned.
//!
//! A clone runs `git clone --mirror` into the owner's `tmp/`, writes the
//! serving config, commit-graph and a multi-pack-index bitmap there, and
//! only then renames the directory into `mirrors/`: a mirror directory
//! exists only whole, which is what lets any shard serve it without asking.
//! A crash mid-clone leaves only `tmp/`, which startup wipes.

use super::service::{Cloning, Mirrors, MirrorsNode};
use crate::repo::git::Git;
use crate::repo::plumbing::{fetch_mirror, index_mirror, publish, upstream_error};
use crate::repo::{RepoError, RepoKey};
use crate::secret::Secret;
use crate::stats::bump;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

impl Mirrors {
    /// Makes the mirror: from the mirror snapshot in the tiers plus a
    /// fetch when there is one (a new node of a fleet), else by cloning.
    pub(super) async fn make_mirror(
        self: &Rc<Self>,
        key: &RepoKey,
        auth: Option<&Secret>,
        path: &Path,
    ) -> Result<(), RepoError> {
        if self.objects.remote().is_some() {
            let tmp = self.shard.layout().tmp_path(self.shard.id);
            let started = Instant::now();
            let restored = async {
                let Some(object_format) = self.restore_mirror(key, &tmp).await? else {
                    return Ok(false);
                };
                // The snapshot's own config never survives the restore: the
                // mirror gets the one a clone here would have.
                let url = self.config().upstreams.url(key)?;
                let config = tmp.join("config");
                mirror_config(key, &url, object_format)
                    .write(&config)
                    .map_err(|e| RepoError::Io(format!("writing {}: {e}", config.display())))?;
                bump(&self.shard.stats().upstream_fetches, 1);
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
        let url = self.config().upstreams.url(key)?;
        let timeout = self.config().clone_timeout;
        let tmp = self.shard.layout().tmp_path(self.shard.id);
        let started = Instant::now();
        tracing::info!(repo = %key, "cloning mirror");
        bump(&self.shard.stats().upstream_clones, 1);
        let mut args: Vec<String> = vec!["clone".into(), "--mirror".into(), "--quiet".into()];
        for (k, v) in SERVING_CONFIG.iter().copied().chain([("trove.key", key.canonical().as_str())]) {
            args.push("-c".into());
            args.push(format!("{k}={v}"));
        }
        let url_for_check = url.clone();
        args.extend(["--".into(), url, tmp.to_string_lossy().into_owned()]);
        let no_progress = self.config().upstream_timeout;
        let cloning = self.cloning(key, auth);
        let git = Git::new(args).auth(auth).upstream(no_progress).progress(cloning.bytes.clone());
        let out = git.run(Vec::new(), timeout).await;
        drop(cloning);
        let result = async {
            let out = out?;
            if !out.ok() {
                return Err(upstream_error(key, "git clone --mirror", &out.stderr, no_progress));
            }
            if super::access::mark_if_private(&url_for_check, &tmp, auth, no_progress).await? {
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

    /// Registers the clone of `key` as under way (for `GET .../progress`)
    /// until the guard is dropped.
    fn cloning(&self, key: &RepoKey, auth: Option<&Secret>) -> CloningGuard {
        let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let entry =
            Cloning { bytes: bytes.clone(), started: Instant::now(), auth: auth.map(super::service::auth_hash) };
        let node = self.node.clone();
        node.cloning.lock().unwrap_or_else(|p| p.into_inner()).insert(key.hash(), Arc::new(entry));
        CloningGuard { node, repo: key.hash(), bytes }
    }

    /// (whole-run timeout, no-progress timeout) of an upstream fetch.
    pub(super) fn upstream_deadlines(&self) -> (Duration, Duration) {
        (self.config().clone_timeout, self.config().upstream_timeout)
    }
}

/// A clone's entry in `MirrorsNode::cloning`, removed when dropped.
struct CloningGuard {
    node: Arc<MirrorsNode>,
    repo: u128,
    bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl Drop for CloningGuard {
    fn drop(&mut self) {
        self.node.cloning.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.repo);
    }
}
