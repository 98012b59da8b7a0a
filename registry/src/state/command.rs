//! Commands in the Raft log and their results.

use std::collections::BTreeMap;
use std::fmt;

use plum_types::{DeploymentRequest, HealthReport, KvType};
use serde::{Deserialize, Serialize};

use super::records::{EndpointRecord, KvRecord, TokenRecord};

/// One entry of the registry's log: an operation and the leader's clock when it was proposed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Unix milliseconds, stamped by the leader. The only time `apply` ever sees.
    pub now_ms: u64,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvWrite {
    pub key: String,
    pub value: String,
    pub kind: KvType,
}

/// An instance and the node the leader's scheduler chose for it (empty: none could take it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    pub instance_id: String,
    pub node_id: String,
}

/// A warm standby taking over from an instance on a dead node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Takeover {
    pub standby: String,
    pub replaces: String,
}

/// What an agent reports of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceReport {
    pub instance_id: String,
    /// Empty: from an agent that does not say (Plum's Go agent).
    #[serde(default)]
    pub node_id: String,
    pub phase: String,
    pub port: u16,
    pub healthy: bool,
    pub exit_code: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Register a node or change what is known of it (address, labels, capability, TTL);
    /// revives it.
    UpsertNode {
        node_id: String,
        ip: String,
        labels: BTreeMap<String, String>,
        can_run: bool,
        /// The TTL it declared, already bounded; 0: the controller's default.
        #[serde(default)]
        ttl_ms: u64,
        /// Instances its agent accepts at most; 0: no limit.
        #[serde(default)]
        capacity: u32,
    },
    /// Coalesced heartbeats: `(id, unix ms seen)` for nodes and for instances.
    Renew {
        nodes: Vec<(String, u64)>,
        instances: Vec<(String, u64)>,
    },
    /// The leader's verdict: these were last seen at the given time and have expired. A newer
    /// renewal in the log since then wins.
    ExpireNodes {
        nodes: Vec<(String, u64)>,
        /// The dead nodes' instances, placed elsewhere by the leader: in the same entry, so
        /// the moment a node is dead its work has a new home.
        #[serde(default)]
        moves: Vec<Placed>,
        /// Warm standbys that take over a dead node's instances in this entry: they become
        /// active (their endpoints enter discovery) and the instances they replace become the
        /// new standbys (moved by `moves`).
        #[serde(default)]
        takeovers: Vec<Takeover>,
    },
    ExpireInstances {
        instances: Vec<(String, u64)>,
    },
    DeleteNode {
        node_id: String,
    },
    /// Register an instance, or add to it: endpoints merge by (service, ip, port, protocol)
    /// with those already registered, unless `replace` asks for exactly this set.
    RegisterInstance {
        instance_id: String,
        node_id: String,
        ip: String,
        endpoints: Vec<EndpointRecord>,
        #[serde(default)]
        ttl_ms: u64,
        #[serde(default)]
        replace: bool,
        /// Declared upstream services; empty: keep the instance's.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        upstreams: Vec<String>,
    },
    /// An instance heartbeat that changes something: endpoint health, or its declared TTL.
    SetHealth {
        instance_id: String,
        reports: Vec<HealthReport>,
        #[serde(default)]
        ttl_ms: Option<u64>,
    },
    DeregisterInstance {
        instance_id: String,
    },
    /// Garbage collection: forget instances dead since the given time (the leader's verdict
    /// after the retention period). One that came back meanwhile stays.
    ForgetInstances {
        instances: Vec<(String, u64)>,
    },
    /// A deployment and its instances, ids and nodes chosen by the leader before proposing.
    /// Creating an id that exists changes nothing (a retried create).
    CreateDeployment {
        deployment_id: String,
        /// Boxed: it is large, and every other command is small.
        spec: Box<DeploymentRequest>,
        placements: Vec<Placed>,
        /// Warm standby instances, placed like the others.
        #[serde(default)]
        standby: Vec<Placed>,
    },
    /// Refused (`Needed`) while other deployments need its service, unless `force`.
    DeleteDeployment {
        deployment_id: String,
        #[serde(default)]
        force: bool,
    },
    /// Instances moved to new nodes (they were waiting for one, or their node is dead).
    Reassign {
        moves: Vec<Placed>,
    },
    ReportInstance {
        report: InstanceReport,
    },
    /// A new spec (what runs) for a deployment: starts a rolling update to it. `in_place`: only
    /// what the controller alone reads changed (`dependsOn`, `rollOnConfigChange`): the spec
    /// is replaced, nothing restarts.
    UpdateDeployment {
        deployment_id: String,
        spec: Box<DeploymentRequest>,
        #[serde(default)]
        in_place: bool,
    },
    /// Replicas added (placed by the leader) or removed (ids chosen by the leader).
    /// Scaling to 0 (a stop) is refused like a delete unless `force`.
    ScaleDeployment {
        deployment_id: String,
        replicas: u32,
        add: Vec<Placed>,
        remove: Vec<String>,
        #[serde(default)]
        force: bool,
    },
    /// One step of a rolling update: stop an instance of an older generation and/or start one
    /// of the current generation. `outcome`, when set, ends the update (`Done` or why it failed).
    RolloutStep {
        deployment_id: String,
        remove: Option<String>,
        add: Option<Placed>,
        outcome: Option<String>,
        /// The added instance is a warm standby (standbys are replaced last).
        #[serde(default)]
        add_standby: bool,
    },
    /// Clients serving `.0` discovered `.1` (reported with `clientService`): observed edges of
    /// the topology, stamped with the entry's time.
    ObserveEdges {
        edges: Vec<(String, String)>,
    },
    /// A config key the deployment references changed: roll it (`rollOnConfigChange`).
    RollConfig {
        deployment_id: String,
    },
    /// Pause rescheduling after a mass loss of nodes (`Some`), or resume it (`None`).
    SetReschedulePause {
        pause: Option<plum_types::ReschedulePause>,
    },
    KvPut {
        ns: String,
        write: KvWrite,
        expect_version: Option<u64>,
        request_id: Option<String>,
    },
    KvDelete {
        ns: String,
        key: String,
        expect_version: Option<u64>,
    },
    KvBatch {
        ns: String,
        writes: Vec<KvWrite>,
    },
    /// A client token (its hash). `bootstrap`: the admin token written next to the cluster
    /// secret, recorded only if no bootstrap token ever was. Otherwise an id that exists
    /// changes nothing (a retried create).
    CreateToken {
        token: TokenRecord,
        #[serde(default)]
        bootstrap: bool,
    },
    RevokeToken {
        id: String,
    },
    /// Several registrations and health changes in one entry (the batch API calls, and
    /// registrations coalesced by `cluster::coalesce`), applied in order as if proposed one
    /// after another. Holds only `UpsertNode`, `RegisterInstance` and `SetHealth` (see
    /// `Op::check`).
    Batch {
        ops: Vec<Op>,
    },
}

#[cfg(test)]
impl Op {
    /// Tests' node `id` at 10.0.0.1 that runs work: no labels, the default capacity, `ttl_ms`.
    pub fn test_node(id: &str, ttl_ms: u64) -> Op {
        Op::UpsertNode {
            node_id: id.into(),
            ip: "10.0.0.1".into(),
            labels: Default::default(),
            can_run: true,
            ttl_ms,
            capacity: 0,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.op {
            Op::UpsertNode { node_id, .. } => write!(f, "upsert-node {node_id}"),
            Op::Renew { nodes, instances } => write!(f, "renew {} nodes {} instances", nodes.len(), instances.len()),
            Op::ExpireNodes { nodes, moves, .. } => {
                write!(f, "expire {} nodes, move {} instances", nodes.len(), moves.len())
            }
            Op::ExpireInstances { instances } => write!(f, "expire {} instances", instances.len()),
            Op::DeleteNode { node_id } => write!(f, "delete-node {node_id}"),
            Op::RegisterInstance { instance_id, .. } => write!(f, "register {instance_id}"),
            Op::SetHealth { instance_id, .. } => write!(f, "set-health {instance_id}"),
            Op::DeregisterInstance { instance_id } => write!(f, "deregister {instance_id}"),
            Op::ForgetInstances { instances } => write!(f, "forget {} dead instances", instances.len()),
            Op::CreateDeployment { deployment_id, placements, .. } => {
                write!(f, "create-deployment {deployment_id} ({} instances)", placements.len())
            }
            Op::DeleteDeployment { deployment_id, .. } => write!(f, "delete-deployment {deployment_id}"),
            Op::Reassign { moves } => write!(f, "reassign {} instances", moves.len()),
            Op::ReportInstance { report } => write!(f, "report {} {}", report.instance_id, report.phase),
            Op::SetReschedulePause { pause } => write!(f, "reschedule-paused {}", pause.is_some()),
            Op::UpdateDeployment { deployment_id, .. } => write!(f, "update-deployment {deployment_id}"),
            Op::ScaleDeployment { deployment_id, replicas, .. } => write!(f, "scale {deployment_id} to {replicas}"),
            Op::RollConfig { deployment_id } => write!(f, "roll-config {deployment_id}"),
            Op::ObserveEdges { edges } => write!(f, "observe {} edges", edges.len()),
            Op::RolloutStep { deployment_id, .. } => write!(f, "rollout-step {deployment_id}"),
            Op::KvPut { ns, write, .. } => write!(f, "kv-put {ns}/{}", write.key),
            Op::KvDelete { ns, key, .. } => write!(f, "kv-delete {ns}/{key}"),
            Op::KvBatch { ns, writes } => write!(f, "kv-batch {ns} ({} keys)", writes.len()),
            Op::CreateToken { token, bootstrap } => {
                write!(f, "create-token {} ({}{})", token.id, token.role, if *bootstrap { ", bootstrap" } else { "" })
            }
            Op::RevokeToken { id } => write!(f, "revoke-token {id}"),
            Op::Batch { ops } => write!(f, "batch of {} ops", ops.len()),
        }
    }
}

/// What applying a command produced, returned to the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CommandResult {
    #[default]
    Done,
    /// The node still has instances registered on it.
    NodeBusy {
        instances: Vec<String>,
    },
    KvWritten {
        record: KvRecord,
    },
    /// Compare-and-set failed; `current` is the key's version (0: absent).
    KvConflict {
        current: u64,
    },
    /// How many records a renewal or expiry actually changed.
    Changed {
        count: usize,
    },
    /// The deployment with this id (new, or the one a first attempt created).
    Deployment {
        deployment_id: String,
    },
    NotFound,
    /// Refused for now (e.g. a rolling update is in progress).
    Busy {
        reason: String,
    },
    /// Refused: the request is not acceptable against the current state (a dependency cycle).
    Invalid {
        reason: String,
    },
    /// Refused: these deployments declare a dependency on the service this would stop.
    Needed {
        service: String,
        by: Vec<String>,
    },
}
