//! The leader's liveness duties: replicate coalesced heartbeats, expire the silent.
//! Both loops idle unless this replica leads; leadership is tracked from openraft's
//! leader-change callback.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::tracker::{Kind, Tracker};
use crate::cluster::Cluster;
use crate::cluster::types::TypeConfig;
use crate::state::Op;

/// Keeps the leader-change watch and the duty loops alive.
pub struct LeaderDuties {
    _watch: openraft::raft::WatchChangeHandle<TypeConfig>,
    loops: Vec<JoinHandle<()>>,
}

impl Drop for LeaderDuties {
    fn drop(&mut self) {
        self.loops.iter().for_each(JoinHandle::abort);
    }
}

pub fn start(cluster: Arc<Cluster>, tracker: Arc<Tracker>) -> LeaderDuties {
    let (on_start, on_stop) = (tracker.clone(), tracker.clone());
    let id = cluster.id;
    let watch = cluster.raft.on_leader_change(
        move |leader| {
            tracing::info!(id, ?leader, "became leader: liveness clocks restart now");
            on_start.start_leading();
            async {}
        },
        move |leader| {
            tracing::info!(id, ?leader, "stopped leading: liveness duties paused");
            on_stop.stop_leading();
            async {}
        },
    );
    let loops = vec![
        tokio::spawn(flush_renewals(cluster.clone(), tracker.clone())),
        tokio::spawn(sweep_expired(cluster, tracker)),
    ];
    LeaderDuties { _watch: watch, loops }
}

/// One `Renew` entry per interval carries every heartbeat received meanwhile.
async fn flush_renewals(cluster: Arc<Cluster>, tracker: Arc<Tracker>) {
    let mut tick = tokio::time::interval(cluster.config.liveness.renew_flush);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !tracker.is_leading() {
            continue;
        }
        let (nodes, instances) = tracker.take_pending();
        if nodes.is_empty() && instances.is_empty() {
            continue;
        }
        let count = nodes.len() + instances.len();
        let op = Op::Renew { nodes, instances };
        if let Err(e) = cluster.propose_if_leader(op.clone()).await {
            tracing::debug!(id = cluster.id, count, error = %e, "renewal not replicated; keeping it for the next flush");
            if let Op::Renew { nodes, instances } = op {
                tracker.restore_pending(nodes, instances);
            }
        }
    }
}

async fn sweep_expired(cluster: Arc<Cluster>, tracker: Arc<Tracker>) {
    let live = cluster.config.liveness.clone();
    let mut tick = tokio::time::interval(live.sweep);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !tracker.is_leading() {
            continue;
        }
        let (nodes, instances) = cluster.with_registry(|r| {
            let nodes = tracker.sweep(
                Kind::Node,
                r.node_records().filter(|n| n.alive).map(|n| (n.node_id.as_str(), n.last_seen_ms)),
                live.node_ttl,
            );
            let instances = tracker.sweep(
                Kind::Instance,
                r.instance_records().filter(|i| i.alive).map(|i| (i.instance_id.as_str(), i.last_seen_ms)),
                live.instance_ttl,
            );
            (nodes, instances)
        });
        if !nodes.is_empty() {
            let ids: Vec<&str> = nodes.iter().map(|(id, _)| id.as_str()).collect();
            tracing::info!(id = cluster.id, nodes = ?ids, "expiring silent nodes");
            if let Err(e) = cluster.propose_if_leader(Op::ExpireNodes { nodes }).await {
                tracing::warn!(id = cluster.id, error = %e, "node expiry not committed");
            }
        }
        if !instances.is_empty() {
            let ids: Vec<&str> = instances.iter().map(|(id, _)| id.as_str()).collect();
            tracing::info!(id = cluster.id, instances = ?ids, "expiring silent instances");
            if let Err(e) = cluster.propose_if_leader(Op::ExpireInstances { instances }).await {
                tracing::warn!(id = cluster.id, error = %e, "instance expiry not committed");
            }
        }
    }
}
