//! Forming a fresh cluster exactly once.
//!
//! A replica with an empty store never initialises a cluster on its own say-so. Only the replica
//! with the lowest id in the peer list does, and only after every other peer has answered that
//! it, too, is empty. If any peer already belongs to a cluster, this replica waits to be
//! contacted by that cluster's leader instead, so a replica whose data was wiped can never found
//! a second cluster next to the first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::BasicNode;

use super::Cluster;
use super::internal::ReplicaStatus;

const PROBE_EVERY: Duration = Duration::from_millis(200);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Index of the last entry a fresh cluster writes by itself: the initial membership (0) and the
/// first leader's blank entry (1).
const LAST_BOOTSTRAP_INDEX: u64 = 1;

pub async fn run(cluster: Arc<Cluster>, peers: BTreeMap<u64, String>) {
    if cluster.status().initialized {
        tracing::info!(id = cluster.id, "store holds cluster state; no bootstrap needed");
        return;
    }
    let lowest = peers.keys().next().copied();
    let mut last_log = Instant::now() - Duration::from_secs(60);
    loop {
        if cluster.status().initialized {
            tracing::info!(id = cluster.id, "joined the cluster");
            return;
        }
        let statuses = probe_peers(&cluster, &peers).await;
        let existing: Vec<&ReplicaStatus> = statuses.values().flatten().filter(|s| s.initialized).collect();
        if let Some(peer) = existing.first() {
            // A fresh cluster's log holds only its bootstrap entries until this replica has
            // answered the bootstrapping peer; a longer log listing this replica as a voter
            // means a cluster that ran with this replica's data, now lost.
            if peer.voters.contains(&cluster.id) && peer.last_log_index.unwrap_or(0) > LAST_BOOTSTRAP_INDEX {
                tracing::error!(
                    id = cluster.id,
                    peer = peer.id,
                    last_log_index = ?peer.last_log_index,
                    "this replica has no data but the cluster lists it as a voter: its data was lost. It rejoins as \
                     an empty voter, which is unsafe if another replica fails before it has caught up. Safer: \
                     remove it (DELETE /v1/cluster/members/ID), start it empty, add it back as a learner, promote it"
                );
            } else {
                tracing::info!(
                    id = cluster.id,
                    peer = peer.id,
                    "a cluster exists; waiting for its leader to contact this replica"
                );
            }
            return;
        }
        let missing: Vec<u64> = statuses.iter().filter(|(_, s)| s.is_none()).map(|(id, _)| *id).collect();
        if lowest == Some(cluster.id) && missing.is_empty() {
            let members: BTreeMap<u64, BasicNode> =
                peers.iter().map(|(id, addr)| (*id, BasicNode { addr: addr.clone() })).collect();
            match cluster.raft.initialize(members).await {
                Ok(()) => tracing::info!(id = cluster.id, peers = ?peers, "initialised a new cluster"),
                Err(e) => tracing::warn!(id = cluster.id, error = %e, "initialise refused"),
            }
            return;
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            last_log = Instant::now();
            if lowest == Some(cluster.id) {
                tracing::info!(id = cluster.id, waiting_for = ?missing, "fresh store: waiting for every peer before forming the cluster");
            } else {
                tracing::info!(id = cluster.id, "fresh store: waiting for the cluster to form");
            }
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// Status of every other peer; `None` for those that did not answer.
async fn probe_peers(cluster: &Cluster, peers: &BTreeMap<u64, String>) -> BTreeMap<u64, Option<ReplicaStatus>> {
    let probes = peers.iter().filter(|(id, _)| **id != cluster.id).map(|(id, addr)| async move {
        let status = cluster.call_peer::<_, ReplicaStatus>(addr, "status", &(), PROBE_TIMEOUT).await.ok();
        (*id, status)
    });
    futures::future::join_all(probes).await.into_iter().collect()
}
