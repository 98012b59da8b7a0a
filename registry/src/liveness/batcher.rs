//! Every replica coalesces the heartbeats it receives and hands them to the leader in batches:
//! one request per few milliseconds carrying many ids, instead of one per heartbeat. Each caller
//! is answered only once the leader has recorded the batch its heartbeat rode in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::tracker::Tracker;
use crate::cluster::internal::{RenewReply, RenewRequest};
use crate::cluster::{Cluster, unix_now_ms};
use crate::metrics::liveness::HeartbeatMetrics;

/// Ids per batch at most; a burst beyond this goes out in several batches.
const MAX_BATCH_IDS: usize = 8192;
/// How long a batch may wait for a leader to appear before its callers are told to retry.
const LEADER_WAIT: Duration = Duration::from_millis(500);
const FORWARD_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, thiserror::Error)]
pub enum RenewError {
    #[error("no leader to record the heartbeat")]
    NoLeader,
    #[error("leader did not record the heartbeat: {0}")]
    Leader(String),
}

struct Waiting {
    nodes: Vec<String>,
    instances: Vec<String>,
    done: oneshot::Sender<Result<(), RenewError>>,
}

#[derive(Clone)]
pub struct RenewBatcher {
    queue: mpsc::Sender<Waiting>,
    metrics: HeartbeatMetrics,
}

impl RenewBatcher {
    pub fn start(cluster: Arc<Cluster>, tracker: Arc<Tracker>, metrics: HeartbeatMetrics) -> RenewBatcher {
        let (queue, incoming) = mpsc::channel(65536);
        tokio::spawn(collect(cluster, tracker, incoming, metrics.clone()));
        RenewBatcher { queue, metrics }
    }

    /// Resolves once the leader has recorded these heartbeats.
    pub async fn renew(&self, nodes: Vec<String>, instances: Vec<String>) -> Result<(), RenewError> {
        self.metrics.received(nodes.len(), instances.len());
        let (done, result) = oneshot::channel();
        self.queue
            .send(Waiting { nodes, instances, done })
            .await
            .map_err(|_| RenewError::Leader("replica shutting down".into()))?;
        result.await.map_err(|_| RenewError::Leader("batch dropped".into()))?
    }
}

async fn collect(
    cluster: Arc<Cluster>,
    tracker: Arc<Tracker>,
    mut incoming: mpsc::Receiver<Waiting>,
    metrics: HeartbeatMetrics,
) {
    let window = cluster.config.liveness.heartbeat_batch;
    while let Some(first) = incoming.recv().await {
        let mut batch = vec![first];
        let mut ids = batch[0].nodes.len() + batch[0].instances.len();
        let until = tokio::time::Instant::now() + window;
        while ids < MAX_BATCH_IDS {
            tokio::select! {
                next = incoming.recv() => match next {
                    Some(w) => {
                        ids += w.nodes.len() + w.instances.len();
                        batch.push(w);
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        metrics.batch(ids);
        // Deliver in the background: the next batch collects meanwhile.
        tokio::spawn(deliver(cluster.clone(), tracker.clone(), batch, metrics.clone()));
    }
}

async fn deliver(cluster: Arc<Cluster>, tracker: Arc<Tracker>, batch: Vec<Waiting>, metrics: HeartbeatMetrics) {
    let mut request = RenewRequest::default();
    for w in &batch {
        request.nodes.extend(w.nodes.iter().cloned());
        request.instances.extend(w.instances.iter().cloned());
    }
    let result = send(&cluster, &tracker, &request, &metrics).await;
    if let Err(e) = &result {
        metrics.failed();
        tracing::debug!(id = cluster.id, error = %e, heartbeats = batch.len(), "heartbeat batch not recorded");
    }
    for w in batch {
        let _ = w.done.send(result.clone());
    }
}

/// Records heartbeats on this replica if it leads and a quorum acknowledged it within the
/// lease (the same check for heartbeats received here and those forwarded by other replicas):
/// a leader cut off from its followers must not vouch for anyone.
pub fn record_if_leased(cluster: &Cluster, tracker: &Tracker, nodes: &[String], instances: &[String]) -> bool {
    cluster
        .lease_term()
        .is_some_and(|term| tracker.record(term, std::time::Instant::now(), unix_now_ms(), nodes, instances))
}

async fn send(
    cluster: &Cluster,
    tracker: &Tracker,
    request: &RenewRequest,
    metrics: &HeartbeatMetrics,
) -> Result<(), RenewError> {
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        match cluster.leader() {
            Some(l) if l.id == cluster.id => {
                // Leading without a recent quorum ack, or the book of a new term is not open
                // yet: wait a little below, then turn the agents away.
                let recorded = record_if_leased(cluster, tracker, &request.nodes, &request.instances);
                if recorded {
                    return Ok(());
                }
            }
            Some(l) => {
                metrics.forwarded(request.nodes.len() + request.instances.len());
                return match cluster.call_peer::<_, RenewReply>(&l.addr, "renew", request, FORWARD_TIMEOUT).await {
                    Ok(RenewReply::Recorded) => Ok(()),
                    Ok(RenewReply::NotLeader { .. }) => {
                        Err(RenewError::Leader(format!("replica {} is not leader", l.id)))
                    }
                    Err(e) => Err(RenewError::Leader(e.to_string())),
                };
            }
            None => {}
        }
        if Instant::now() >= deadline {
            return Err(match cluster.leader() {
                Some(l) if l.id == cluster.id && cluster.lease_term().is_some() => {
                    RenewError::Leader("this leader's liveness book for its term is not open yet".into())
                }
                Some(l) if l.id == cluster.id => RenewError::Leader("this leader holds no quorum lease".into()),
                _ => RenewError::NoLeader,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
