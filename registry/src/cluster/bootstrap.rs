//! Forming a fresh cluster exactly once, and telling a fresh start from a lost disk.
//!
//! A replica with an empty store never initialises a cluster on its own say-so. Only the replica
//! with the lowest id in the peer list does, and only after every other peer has answered that
//! it, too, is empty. If any peer already belongs to a cluster, this replica waits to be
//! contacted by that cluster's leader instead, so a replica whose data was wiped can never found
//! a second cluster next to the first. What the probes show also decides whether the empty
//! replica may vote at once (fresh cluster) or only after catching up (`rejoin.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::BasicNode;

use super::internal::ReplicaStatus;
use super::{Cluster, VoteStanding};

const PROBE_EVERY: Duration = Duration::from_millis(200);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Index of the last entry a fresh cluster writes by itself: the initial membership (0) and the
/// first leader's blank entry (1).
const LAST_BOOTSTRAP_INDEX: u64 = 1;

pub async fn run(cluster: Arc<Cluster>, peers: BTreeMap<u64, String>) {
    let lowest = peers.keys().next().copied();
    let mut last_log = Instant::now() - Duration::from_secs(60);
    loop {
        match cluster.rejoin.standing() {
            VoteStanding::Open if cluster.status().initialized => {
                tracing::info!(id = cluster.id, "store holds cluster state; no bootstrap needed");
                return;
            }
            // Catching up after a data loss: `rejoin::spawn_watch` takes it from here.
            VoteStanding::CatchingUp { .. } => return,
            VoteStanding::Open | VoteStanding::Undecided => {}
        }
        let statuses = probe_peers(&cluster, &peers).await;
        let answered: Vec<&ReplicaStatus> = statuses.values().flatten().collect();
        let all_answered = answered.len() == statuses.len();
        // A peer whose log goes beyond what a fresh cluster writes by itself holds history that
        // may include writes this replica acknowledged before its data was lost.
        if let Some(peer) = answered.iter().find(|s| s.last_log_index.unwrap_or(0) > LAST_BOOTSTRAP_INDEX) {
            if cluster.rejoin.votes_allowed() {
                // Took part in forming this cluster; it has simply moved on since.
                return;
            }
            let floor = answered.iter().filter_map(|s| s.committed).max().unwrap_or(0);
            if peer.voters.contains(&cluster.id) {
                tracing::error!(
                    id = cluster.id,
                    peer = peer.id,
                    last_log_index = ?peer.last_log_index,
                    floor,
                    "this replica has no data but the cluster lists it as a voter: its data was lost. It withholds \
                     its vote until it has caught up (see /v1/cluster)"
                );
            } else {
                tracing::info!(
                    id = cluster.id,
                    peer = peer.id,
                    floor,
                    "joining an existing cluster; votes once caught up"
                );
            }
            cluster.rejoin.data_lost(cluster.id, floor);
            return;
        }
        if all_answered {
            // Every peer is empty or holds only a fresh cluster's own entries: nothing was ever
            // acknowledged, so this replica's empty store has lost nothing.
            cluster.rejoin.fresh_cluster(cluster.id);
            if !cluster.rejoin.votes_allowed() {
                // Could not record the decision (see the log): stay withheld, try again.
                tokio::time::sleep(PROBE_EVERY).await;
                continue;
            }
            cluster.raft.runtime_config().elect(true);
            if answered.iter().any(|s| s.initialized) {
                tracing::info!(id = cluster.id, "a fresh cluster is forming; waiting for its leader");
                return;
            }
            if lowest == Some(cluster.id) {
                let members: BTreeMap<u64, BasicNode> =
                    peers.iter().map(|(id, addr)| (*id, BasicNode { addr: addr.clone() })).collect();
                match cluster.raft.initialize(members).await {
                    Ok(()) => tracing::info!(id = cluster.id, peers = ?peers, "initialised a new cluster"),
                    Err(e) => tracing::warn!(id = cluster.id, error = %e, "initialise refused"),
                }
                return;
            }
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            last_log = Instant::now();
            let missing: Vec<u64> = statuses.iter().filter(|(_, s)| s.is_none()).map(|(id, _)| *id).collect();
            if lowest == Some(cluster.id) {
                tracing::info!(id = cluster.id, waiting_for = ?missing, "fresh store: waiting for every peer before forming the cluster");
            } else {
                tracing::info!(id = cluster.id, waiting_for = ?missing, "fresh store: waiting for the cluster to form");
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
