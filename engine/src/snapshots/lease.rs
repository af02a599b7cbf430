//! One snapshot build per commit for the whole fleet, claimed through S3.
//!
//! Nodes that share a bucket would each build the same snapshot. Before a
//! build, a node looks for the snapshot in S3 (it landed: serve it), then
//! claims the build by creating a lease object with `If-None-Match: *`.
//! Exactly one create succeeds; that node looks for the snapshot once more
//! (a builder that just finished has stored it and then deleted its
//! lease), then builds, renews its lease every
//! third of `--snapshot-lease` while it does, stores the snapshot, then
//! deletes the lease. Every other node waits, looking every
//! `SNAPSHOT_LEASE_POLL` for the snapshot (then it serves it from S3) or
//! for the lease to be gone or expired (then it claims the build itself).
//!
//! A lease that expired is never overwritten: its successor is the next
//! *generation* (`…@commit.N+1`), created with the same condition, so of
//! two nodes that both saw it expire only one takes over. The only
//! primitive used is the conditional create: SeaweedFS 4.x honours it (20
//! concurrent creates of one name: one 200, nineteen 412, in six rounds of
//! six), as AWS S3 and MinIO do.
//!
//! A lease is read as hostile input: one that does not parse, or whose
//! expiry lies further ahead than any live node would set it (a poisoned
//! object, a skewed clock), counts as expired. S3 failing while a node
//! decides makes it build by itself: a duplicate build is waste, not harm.
//! Expiry uses wall clocks, so nodes' clocks must agree to well within a
//! lease. This module never builds anything itself.

use super::service::Snapshots;
use crate::limits::{SNAPSHOT_LEASE_GENERATIONS, SNAPSHOT_LEASE_MAX_BYTES, SNAPSHOT_LEASE_POLL};
use crate::remote::RemoteTier;
use crate::repo::names::{lease_key, snapshot_object};
use crate::repo::RepoKey;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::rc::Rc;
use std::time::Duration;

/// What a node does about a snapshot it lacks.
pub enum FleetStep {
    /// Build it: this node holds the lease (or there is no fleet to ask).
    Build(Option<Lease>),
    /// Another node's build is in S3: serve that.
    Landed,
}

/// A build claimed for the fleet.
pub struct Lease {
    name: String,
    remote: Rc<RemoteTier>,
    ttl: Duration,
    node: String,
}

/// A lease object's body.
#[derive(Serialize, Deserialize)]
struct LeaseBody {
    /// Who holds it, for the operator reading the bucket.
    node: String,
    /// Wall-clock milliseconds after which it is void.
    expires_ms: u64,
}

enum Claim {
    Won(Lease),
    /// A live lease of this generation is another node's.
    Held {
        generation: u32,
        by: String,
    },
}

impl Snapshots {
    /// Decides who builds `key`'s snapshot of `commit`, waiting while
    /// another node holds a live lease on it.
    pub(super) async fn fleet_build(self: &Rc<Self>, key: &RepoKey, commit: &str) -> FleetStep {
        let Some(remote) = self.objects.remote().cloned() else { return FleetStep::Build(None) };
        let object = snapshot_object(key, commit).hash();
        let ttl = self.shard.config().repo.snapshot_lease;
        let node = format!("pid {} shard {}", std::process::id(), self.shard.id);
        let mut generation = 0;
        let mut waiting = false;
        loop {
            let step = async {
                if remote.exists(object).await? {
                    return Ok(None);
                }
                claim(&remote, key, commit, generation, ttl, &node).await.map(Some)
            };
            match step.await {
                Ok(None) => {
                    if waiting {
                        tracing::info!(repo = %key, %commit, "another node's snapshot landed in S3; serving it");
                    }
                    return FleetStep::Landed;
                }
                Ok(Some(Claim::Won(lease))) => {
                    // A builder stores its snapshot before it deletes its
                    // lease: a lease won just after that delete must not
                    // build again what has landed since the look above.
                    match remote.exists(object).await {
                        Ok(true) => {
                            lease.release().await;
                            return FleetStep::Landed;
                        }
                        Ok(false) => return FleetStep::Build(Some(lease)),
                        Err(e) => {
                            tracing::warn!(repo = %key, error = %e, "S3 failed while claiming the snapshot build; building here");
                            return FleetStep::Build(Some(lease));
                        }
                    }
                }
                Ok(Some(Claim::Held { generation: g, by })) => {
                    if !waiting {
                        tracing::info!(repo = %key, %commit, holder = %by, "another node is building this snapshot; waiting for it");
                        waiting = true;
                    }
                    generation = g;
                    glommio::timer::sleep(SNAPSHOT_LEASE_POLL).await;
                }
                Err(Some(e)) => {
                    tracing::warn!(repo = %key, error = %e, "S3 failed while claiming the snapshot build; building here");
                    return FleetStep::Build(None);
                }
                Err(None) => {
                    tracing::warn!(repo = %key, "too many expired build leases; building here");
                    return FleetStep::Build(None);
                }
            }
        }
    }
}

/// Claims the build from generation `from` on: creates the first
/// generation that is free, passing over expired ones, or names the live
/// one. `Err(None)`: every generation was taken.
async fn claim(
    remote: &Rc<RemoteTier>,
    key: &RepoKey,
    commit: &str,
    from: u32,
    ttl: Duration,
    node: &str,
) -> Result<Claim, Option<crate::remote::RemoteError>> {
    let (mut generation, mut freed) = (from, 0);
    while generation < SNAPSHOT_LEASE_GENERATIONS && freed < 3 {
        let name = remote.lease_name(lease_key(key, commit, generation).hash());
        let lease = Lease { name, remote: remote.clone(), ttl, node: node.to_owned() };
        if remote.create_raw(&lease.name, lease.body()).await? {
            return Ok(Claim::Won(lease));
        }
        match remote.get_raw(&lease.name, SNAPSHOT_LEASE_MAX_BYTES).await? {
            // Deleted between the two requests (its build ended): this
            // generation is free again.
            None => freed += 1,
            Some(raw) => match live(&raw, ttl) {
                Some(by) => return Ok(Claim::Held { generation, by }),
                None => generation += 1,
            },
        }
    }
    Err(None)
}

/// The holder of a lease still in force, or None: expired, or not a
/// lease a live node would write.
fn live(raw: &[u8], ttl: Duration) -> Option<String> {
    let body: LeaseBody = serde_json::from_slice(raw).ok()?;
    let now = crate::clock::now_ms();
    let latest = now.saturating_add(2 * ttl.as_millis() as u64);
    if body.expires_ms > latest {
        tracing::warn!(
            expires_ms = body.expires_ms,
            "a build lease in S3 expires later than any node sets one; ignoring it"
        );
        return None;
    }
    let printable = body.node.len() <= 128 && body.node.chars().all(|c| !c.is_control());
    (body.expires_ms > now && printable).then_some(body.node)
}

impl Lease {
    fn body(&self) -> Bytes {
        let expires_ms = crate::clock::now_ms().saturating_add(self.ttl.as_millis() as u64);
        Bytes::from(serde_json::to_vec(&LeaseBody { node: self.node.clone(), expires_ms }).expect("serializes"))
    }

    /// Renews the lease every third of its life; never returns.
    pub async fn keep(&self) {
        loop {
            glommio::timer::sleep(self.ttl / 3).await;
            if let Err(e) = self.remote.put_raw(&self.name, self.body()).await {
                tracing::warn!(error = %e, "renewing the snapshot build lease failed; another node may build too");
            }
        }
    }

    /// Gives the lease up: the build ended (its snapshot is in S3 when it
    /// succeeded, so waiters find that first).
    pub async fn release(self) {
        if let Err(e) = self.remote.delete_raw(&self.name).await {
            tracing::warn!(error = %e, "deleting the snapshot build lease failed; it expires by itself");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_sane_unexpired_lease_is_live() {
        let ttl = Duration::from_secs(60);
        let at = |ms: u64| format!(r#"{{"node":"n1","expires_ms":{ms}}}"#).into_bytes();
        let now = crate::clock::now_ms();
        assert_eq!(live(&at(now + 30_000), ttl).as_deref(), Some("n1"));
        assert_eq!(live(&at(now.saturating_sub(1)), ttl), None, "expired");
        assert_eq!(live(&at(u64::MAX), ttl), None, "poisoned: would block builds for ever");
        assert_eq!(live(b"not json", ttl), None);
        assert_eq!(live(br#"{"node":"a\u0007b","expires_ms":1}"#, ttl), None);
    }
}
