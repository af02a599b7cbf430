//! The state machine's steps on a repo's owner: clone, check, fetch,
//! each once at a time for every asker.
//!
//! Every job runs as a detached task with all its askers waiting on it, so
//! a client that hangs up never cancels a clone others are waiting for.
//! This module never speaks HTTP.

use super::events::MirrorEvent;
use super::messages::MirrorMsg;
use super::service::Mirrors;
use crate::repo::plumbing::{fetch_mirror, refs_state};
use crate::repo::{Need, RepoError, RepoKey};
use crate::secret::Secret;
use crate::stats::bump;
use futures_channel::oneshot;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// First wait after a failed clone; doubles per failure up to the max.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

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

impl Mirrors {
    /// Makes `key`'s mirror meet `need`, on any shard: asks the owner.
    /// Returns the mirror's path, once the asker may read it: a private
    /// repo's needs `auth` to be accepted upstream (access.rs). Every
    /// client-facing read of a mirror comes through here.
    pub async fn repo(self: &Rc<Self>, key: &RepoKey, auth: Option<Secret>, need: Need) -> Result<PathBuf, RepoError> {
        let path = self.mirror_path(key);
        // A published mirror is whole: serving it needs no one's leave but
        // the access check. (Its use reaches the owner through the Fresh
        // check that starts every clone and fetch.)
        if !(need == Need::Ready && path.exists()) {
            let owner = key.owner(self.shard.nr_shards());
            let auth = auth.clone();
            if owner == self.shard.id {
                self.ensure(key.clone(), auth, need).await?;
            } else {
                let key = key.clone();
                self.port
                    .call(owner, move |reply| MirrorMsg::Ensure { key, auth, need, reply })
                    .await
                    .map_err(|_| RepoError::ShardGone(owner))??;
            }
        }
        let private = super::access::is_private(&path);
        if private {
            self.reprobe_if_due(key, &path);
        }
        self.check_access(key, private, auth.as_ref()).await?;
        Ok(path)
    }

    /// The owner's side of [`Mirrors::repo`].
    pub async fn ensure(self: &Rc<Self>, key: RepoKey, auth: Option<Secret>, need: Need) -> Result<(), RepoError> {
        let ttl = self.config().refs_ttl;
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
                Some(r) => r.map_err(|_| RepoError::ShardGone(self.shard.id))?,
                None => {
                    tracing::info!(repo = %key, "the upstream is slow to answer the refs check; serving the mirror as it is");
                    Ok(())
                }
            };
        }
        rx.await.map_err(|_| RepoError::ShardGone(self.shard.id))?
    }

    async fn run_repo_job(self: Rc<Self>, key: RepoKey, auth: Option<Secret>, job: Job, need: Need) {
        let path = self.mirror_path(&key);
        let result = match self.node.upstream_jobs.enter().await {
            Err(_) => {
                bump(&self.shard.stats().upstream_jobs_refused, 1);
                Err(RepoError::Busy)
            }
            Ok(_permit) => match job {
                Job::Clone => self.make_mirror(&key, auth.as_ref(), &path).await,
                Job::Fetch => {
                    bump(&self.shard.stats().upstream_fetches, 1);
                    fetch_mirror(&key, auth.as_ref(), &path, self.upstream_deadlines()).await
                }
            },
        };
        // A job ended by the node's stop (reaper.rs) says so, not what git said.
        let result = match result {
            Err(_) if self.shard.node.is_stopping() => Err(RepoError::ShardGone(self.shard.id)),
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
                    self.tell(key.hash(), MirrorEvent::RefsChanged);
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
}
