//! What a repo's owner answers about its snapshot: the stored one, the
//! build in flight, or a build to start once the fleet has decided who
//! builds (lease.rs).

use super::answer::SnapshotAnswer;
use super::lease::FleetStep;
use super::messages::SnapshotMsg;
use super::pointer::Pointer;
use super::service::Snapshots;
use crate::repo::names::snapshot_object;
use crate::repo::{Need, RepoError, RepoKey};
use crate::secret::Secret;
use std::rc::Rc;
use std::time::Duration;

impl Snapshots {
    /// The snapshot of `key`'s default branch, on any shard: asks the
    /// owner. `stale` names a commit whose stored snapshot was not found
    /// (evicted, lost): the owner forgets it and builds again.
    pub async fn snapshot(
        self: &Rc<Self>,
        key: &RepoKey,
        auth: Option<Secret>,
        stale: Option<String>,
    ) -> Result<SnapshotAnswer, RepoError> {
        let owner = key.owner(self.shard.nr_shards());
        if owner == self.shard.id {
            return self.owner_snapshot(key.clone(), auth, stale).await;
        }
        let key = key.clone();
        self.port
            .call(owner, move |reply| SnapshotMsg::Snapshot { key, auth, stale, reply })
            .await
            .map_err(|_| RepoError::ShardGone(owner))?
    }

    /// The owner's side of [`Snapshots::snapshot`].
    pub(super) async fn owner_snapshot(
        self: &Rc<Self>,
        key: RepoKey,
        auth: Option<Secret>,
        stale: Option<String>,
    ) -> Result<SnapshotAnswer, RepoError> {
        self.owner_snapshot_after(key, auth, stale, false).await
    }

    /// [`Snapshots::owner_snapshot`]; `decided`: once more, after the fleet's
    /// decision, which must have left a snapshot or a build.
    async fn owner_snapshot_after(
        self: &Rc<Self>,
        key: RepoKey,
        auth: Option<Secret>,
        stale: Option<String>,
        decided: bool,
    ) -> Result<SnapshotAnswer, RepoError> {
        let hash = key.hash();
        let loaded = self.with_state(&key, |st| {
            if let (Some(s), Some(p)) = (&stale, &st.pointer) {
                if *s == p.commit {
                    st.pointer = None;
                }
            }
            st.pointer_loaded
        });
        let ready = self.mirrors.is_ready(&key);
        if !loaded {
            let pointer = self.read_pointer(&key).await;

            self.with_state(&key, |st| {
                st.pointer_loaded = true;
                if st.pointer.is_none() && stale.as_deref() != pointer.as_ref().map(|p| p.commit.as_str()) {
                    st.pointer = pointer;
                }
            });
        }
        let has_snapshot = self.with_state(&key, |st| st.pointer.is_some() || st.building.is_some());
        // A cold serve counts from here, before the warm-up below can start:
        // the mirror's restore waits for it.
        let mut cold = None;
        if ready {
            self.mirrors.ensure(key.clone(), auth.clone(), Need::Fresh).await?;
        } else if has_snapshot {
            // Cold: serve what the tiers have at once; warm the mirror behind.
            cold = Some(self.mirrors.cold_serve(&key));
            let me = self.mirrors.clone();
            let k = key.clone();
            // The asker's credentials: a private repo's mirror needs them.
            let warm_auth = auth.clone();
            glommio::spawn_local(async move {
                if let Err(e) = me.ensure(k.clone(), warm_auth, Need::Ready).await {
                    tracing::warn!(repo = %k, error = %e, "warming the mirror failed; the next request retries");
                }
            })
            .detach();
        } else {
            self.mirrors.ensure(key.clone(), auth.clone(), Need::Ready).await?;
        }
        // HEAD as of the last clone or fetch, when the mirror is Ready.
        let mirror_head = self.mirrors.ready_head(&key).await?;
        // glommio runs a spawned task at once: nothing that borrows the
        // states is spawned while they are borrowed.
        let mut decide = None;
        let next = 'b: {
            let mut states = self.states.borrow_mut();
            let st = states.entry(hash).or_default();
            let head = mirror_head.clone().or_else(|| st.pointer.as_ref().map(|p| p.head.clone()));
            let private = crate::mirrors::is_private(&self.mirrors.mirror_path(&key))
                || st.pointer.as_ref().is_some_and(|p| p.private);
            if let Some(p) = st.pointer.clone() {
                if let Some(h) = &mirror_head {
                    let age = Duration::from_millis(crate::clock::now_ms().saturating_sub(p.built_ms));
                    let idle = st.building.is_none() && st.deciding.is_none();
                    if *h != p.commit && idle && age >= self.shard.config().repo.snapshot_interval {
                        tracing::info!(repo = %key, from = %p.commit, to = %h, "HEAD moved: rebuilding the snapshot");
                        st.deciding = Some(Vec::new());
                        decide = Some(h.clone());
                    } else if *h != p.head {
                        // Tell the fleet (and a future cold node) where HEAD is.
                        let updated = Pointer { head: h.clone(), ..p.clone() };
                        st.pointer = Some(updated.clone());
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
            if let Some(b) = &st.building {
                break 'b Ok(SnapshotAnswer::Building { build: b.clone(), head, private });
            }
            if decided {
                return Err(RepoError::Io("the snapshot build could not start; see the node's log".into()));
            }
            let commit = mirror_head.ok_or_else(|| RepoError::NoCommits(key.canonical()))?;
            // Who builds is the fleet's decision (lease.rs), made once per
            // repo here and waited for by every request meanwhile.
            let (tx, rx) = futures_channel::oneshot::channel();
            match st.deciding.as_mut() {
                Some(w) => w.push(tx),
                None => {
                    st.deciding = Some(vec![tx]);
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
        let private = crate::mirrors::is_private(&self.mirrors.mirror_path(&key));
        let (waiters, started) = self.with_state(&key, |st| {
            let started = match step {
                FleetStep::Landed => {
                    st.pointer = Some(Pointer {
                        commit: commit.clone(),
                        built_ms: crate::clock::now_ms(),
                        head: commit,
                        private,
                        file_len: None,
                    });
                    None
                }
                FleetStep::Build(lease) if st.building.is_none() => {
                    match super::build::new_build(self.shard.layout(), self.shard.id, commit) {
                        Ok(build) => {
                            st.building = Some(build.clone());
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
            (st.deciding.take().unwrap_or_default(), started)
        });
        if let Some((build, lease)) = started {
            glommio::spawn_local(self.clone().run_build(key.clone(), build, lease)).detach();
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}
