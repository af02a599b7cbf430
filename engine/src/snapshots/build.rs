//! A snapshot build on a repo's owner, and the mirror snapshot uploaded
//! after it. The archive is made off the shard (`repo::archive`); the
//! build's file is followed by the requests that wait for it
//! (`repo::build`).

use super::lease::Lease;
use super::pointer::Pointer;
use super::service::Snapshots;
use crate::repo::archive::{self, TreeSnapshotJob};
use crate::repo::build::Build;
use crate::repo::names::{mirror_object, snapshot_object};
use crate::repo::{off_shard, RepoError, RepoKey};
use crate::stats::bump;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

impl Snapshots {
    pub(super) async fn run_build(self: Rc<Self>, key: RepoKey, build: Arc<Build>, lease: Option<Lease>) {
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
        if stored && self.objects.remote().is_some() {
            self.upload_mirror_snapshot(&key).await;
        }
    }

    /// Builds and stores the snapshot; true when it is stored.
    async fn build_and_store(self: &Rc<Self>, key: &RepoKey, build: &Arc<Build>) -> bool {
        let key = key.clone();
        let started = Instant::now();
        let job = match self.shard.config().repo.upstreams.url(&key) {
            Ok(origin_url) => TreeSnapshotJob {
                mirror: self.mirrors.mirror_path(&key),
                work: self.shard.layout().tmp_path(self.shard.id),
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
        bump(&self.shard.stats().snapshot_builds, 1);
        tracing::info!(repo = %key, commit = %build.commit, bytes = len, elapsed = ?started.elapsed(), "snapshot built");
        let object = snapshot_object(&key, &build.commit);
        let stored = self.objects.put_file(&object, &build.path, true).await;
        let pointer = Pointer {
            commit: build.commit.clone(),
            built_ms: crate::clock::now_ms(),
            head: build.commit.clone(),
            private: crate::mirrors::is_private(&self.mirrors.mirror_path(&key)),
            file_len: Some(crate::store::format::sealed_len(object.namespace().len(), object.key().len(), len)),
        };
        match &stored {
            Ok(()) => self.write_pointer(&key, &pointer).await,
            Err(e) => tracing::warn!(repo = %key, error = %e, "storing the snapshot failed; it will be built again"),
        }
        self.with_state(&key, |st| {
            st.building = None;
            if stored.is_ok() {
                st.pointer = Some(pointer);
            }
        });
        let _ = std::fs::remove_file(&build.path);
        stored.is_ok()
    }

    fn build_failed(&self, key: &RepoKey, build: &Build, why: String) {
        build.mark_failed();
        tracing::warn!(repo = %key, error = %why, "snapshot build failed; the next request retries");
        let _ = std::fs::remove_file(&build.path);
        self.with_state(key, |st| st.building = None);
    }

    /// Puts the bare mirror, as tar.zst, in the remote tier for new nodes.
    async fn upload_mirror_snapshot(self: &Rc<Self>, key: &RepoKey) {
        let mirror = self.mirrors.mirror_path(key);
        let out = self.shard.layout().tmp_path(self.shard.id).with_extension("tar.zst");
        let o = out.clone();
        // A repack deletes the packs it rolls up: not while they are archived.
        let housekeeping = self.mirrors.housekeeping(key);
        let permit = housekeeping.acquire_permit(1).await;
        let made = off_shard("trove-mirror-snap", move || {
            archive::make_mirror_snapshot(&mirror, &o, zstd_workers(), &archive::NoProgress)
        })
        .await;
        drop(permit);
        let result = match made {
            Ok(Ok(_)) => self.objects.put_file(&mirror_object(key), &out, false).await.map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let _ = std::fs::remove_file(&out);
        match result {
            Ok(()) => tracing::info!(repo = %key, "mirror snapshot uploaded"),
            Err(e) => tracing::warn!(repo = %key, error = %e, "mirror snapshot upload failed"),
        }
    }
}

/// Compression threads per build: every core (the build is short and the
/// client is waiting on it).
pub(super) fn zstd_workers() -> u32 {
    std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1)
}

/// A snapshot file to build `commit` into, in the shard's tmp dir.
pub(super) fn new_build(
    layout: &crate::store::Layout,
    shard: crate::key::ShardId,
    commit: String,
) -> Result<Arc<Build>, RepoError> {
    let path = layout.tmp_path(shard).with_extension("tar.zst");
    Build::create(commit, path).map(Arc::new).map_err(|e| RepoError::Io(format!("creating a snapshot file: {e}")))
}
