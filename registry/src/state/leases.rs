//! What the leader's liveness tracker learns from applied commands: which records hold a
//! heartbeat lease now, with which TTL. The tracker lives outside the state machine; apply
//! stays deterministic and only reports.

use super::command::Op;
use super::view::Registry;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeaseKind {
    Node,
    Instance,
}

/// A live record's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Declared TTL; 0: the controller's default for the kind.
    pub ttl_ms: u64,
    /// Leader time of the last heartbeat the log holds.
    pub last_seen_ms: u64,
}

/// Told of every lease a command created, changed or ended.
pub trait LeaseObserver: Send + Sync {
    /// `lease`: `None` when the record is no longer alive (expired, deleted, forgotten).
    /// `heard_from`: the command is news from the record itself (a registration, a heartbeat
    /// that changed something, a revival), so its clock restarts; other commands (a refused
    /// delete, an expiry that lost to a newer heartbeat) leave the clock alone.
    fn lease_changed(&self, kind: LeaseKind, id: &str, lease: Option<Lease>, heard_from: bool);
}

impl Registry {
    /// The lease of a live record; `None` when dead or unknown.
    pub fn lease(&self, kind: LeaseKind, id: &str) -> Option<Lease> {
        match kind {
            LeaseKind::Node => {
                self.nodes.get(id).filter(|n| n.alive).map(|n| Lease { ttl_ms: n.ttl_ms, last_seen_ms: n.last_seen_ms })
            }
            LeaseKind::Instance => self
                .instances
                .get(id)
                .filter(|i| i.alive)
                .map(|i| Lease { ttl_ms: i.ttl_ms, last_seen_ms: i.last_seen_ms }),
        }
    }

    /// Every live lease: what a new leader starts tracking.
    pub fn leases(&self) -> impl Iterator<Item = (LeaseKind, &str, Lease)> {
        let nodes =
            self.nodes.values().filter(|n| n.alive).map(|n| {
                (LeaseKind::Node, n.node_id.as_str(), Lease { ttl_ms: n.ttl_ms, last_seen_ms: n.last_seen_ms })
            });
        let instances = self.instances.values().filter(|i| i.alive).map(|i| {
            (LeaseKind::Instance, i.instance_id.as_str(), Lease { ttl_ms: i.ttl_ms, last_seen_ms: i.last_seen_ms })
        });
        nodes.chain(instances)
    }
}

impl Op {
    /// Whether the command is news from the records it names (see [`LeaseObserver`]).
    pub fn heard_from(&self) -> bool {
        match self {
            Op::Batch { ops } => ops.iter().all(Op::heard_from),
            op => matches!(
                op,
                Op::UpsertNode { .. } | Op::RegisterInstance { .. } | Op::SetHealth { .. } | Op::Renew { .. }
            ),
        }
    }

    /// Records whose lease this command may change. Renewals are left out: the leader recorded
    /// them before proposing; the ones that revive a dead record are found by
    /// [`Op::revivals`].
    pub fn lease_ids(&self) -> Vec<(LeaseKind, &str)> {
        fn each(kind: LeaseKind, list: &[(String, u64)]) -> Vec<(LeaseKind, &str)> {
            list.iter().map(|(id, _)| (kind, id.as_str())).collect()
        }
        match self {
            Op::UpsertNode { node_id, .. } | Op::DeleteNode { node_id } => vec![(LeaseKind::Node, node_id)],
            Op::ExpireNodes { nodes, .. } => each(LeaseKind::Node, nodes),
            Op::RegisterInstance { instance_id, .. }
            | Op::SetHealth { instance_id, .. }
            | Op::DeregisterInstance { instance_id } => vec![(LeaseKind::Instance, instance_id)],
            Op::ExpireInstances { instances } | Op::ForgetInstances { instances } => {
                each(LeaseKind::Instance, instances)
            }
            Op::Batch { ops } => ops.iter().flat_map(Op::lease_ids).collect(),
            Op::Renew { .. }
            | Op::KvPut { .. }
            | Op::KvDelete { .. }
            | Op::KvBatch { .. }
            | Op::CreateDeployment { .. }
            | Op::DeleteDeployment { .. }
            | Op::Reassign { .. }
            | Op::ReportInstance { .. }
            | Op::SetReschedulePause { .. }
            | Op::UpdateDeployment { .. }
            | Op::ScaleDeployment { .. }
            | Op::RolloutStep { .. }
            | Op::RollConfig { .. }
            | Op::ObserveEdges { .. }
            | Op::CreateToken { .. }
            | Op::RevokeToken { .. } => Vec::new(),
        }
    }

    /// The records a renewal is about to bring back from the dead (checked before applying).
    pub fn revivals<'a>(&'a self, registry: &Registry) -> Vec<(LeaseKind, &'a str)> {
        let Op::Renew { nodes, instances } = self else { return Vec::new() };
        let dead = |kind, id: &str| registry.lease(kind, id).is_none();
        let nodes = nodes.iter().map(|(id, _)| (LeaseKind::Node, id.as_str()));
        let instances = instances.iter().map(|(id, _)| (LeaseKind::Instance, id.as_str()));
        nodes.chain(instances).filter(|(kind, id)| dead(*kind, id)).collect()
    }
}
