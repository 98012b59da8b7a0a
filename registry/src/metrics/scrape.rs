//! Gauges read at each scrape rather than kept: Raft's term, role and indexes (from openraft's
//! metrics, through `Cluster::raft_sample`), and from this replica's view of the registry the
//! live and dead nodes and instances, and each deployment's desired, running and ready
//! instances. A reading is taken under the locks briefly, then encoded without them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::cluster::Cluster;
use crate::cluster::sample::{ROLES, RaftSample};
use crate::state::Registry as State;

/// The agent's phase of an instance that runs.
const RUNNING: &str = "Running";

/// One deployment's instances (warm standbys apart).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentCounts {
    pub desired: u64,
    /// Active instances their agent reports running.
    pub running: u64,
    /// Of those, the ones that passed readiness.
    pub ready: u64,
    /// Warm standbys running and ready.
    pub standby_ready: u64,
}

/// Everything the scrape-time gauges show, read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub raft: RaftSample,
    pub nodes_live: u64,
    pub nodes_dead: u64,
    pub instances_live: u64,
    pub instances_dead: u64,
    pub rescheduling_paused: bool,
    pub deployments: BTreeMap<String, DeploymentCounts>,
}

impl Reading {
    pub fn of(state: &State, raft: RaftSample) -> Reading {
        let (nodes_live, nodes_dead) = split(state.node_records().map(|n| n.alive));
        let (instances_live, instances_dead) = split(state.instance_records().map(|i| i.alive));
        let mut deployments: BTreeMap<String, DeploymentCounts> = state
            .deployment_records()
            .map(|d| {
                (
                    d.deployment_id.clone(),
                    DeploymentCounts { desired: u64::from(d.spec.replicas), ..Default::default() },
                )
            })
            .collect();
        for a in state.assignment_records() {
            let Some(d) = deployments.get_mut(&a.deployment_id) else { continue };
            let running = a.phase == RUNNING;
            if a.standby {
                d.standby_ready += u64::from(running && a.healthy);
            } else {
                d.running += u64::from(running);
                d.ready += u64::from(running && a.healthy);
            }
        }
        Reading {
            raft,
            nodes_live,
            nodes_dead,
            instances_live,
            instances_dead,
            rescheduling_paused: state.reschedule_pause().is_some(),
            deployments,
        }
    }

    pub fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let r = &self.raft;
        gauge(&mut e, "plum_raft_term", "The Raft term this replica is in.", r.term)?;
        let roles = ROLES.iter().map(|role| ([("role", *role)], u64::from(*role == r.role)));
        gauges(&mut e, "plum_raft_role", "1 for the Raft role this replica has now, 0 for the others.", roles)?;
        let has_leader = "1 while this replica knows a leader.";
        gauge(&mut e, "plum_raft_has_leader", has_leader, u64::from(r.leader.is_some()))?;
        if let Some(leader) = r.leader {
            gauge(&mut e, "plum_raft_leader_id", "The id of the leader this replica knows.", leader)?;
        }
        gauge(&mut e, "plum_raft_last_log_index", "The last index in this replica's Raft log.", r.last_log_index)?;
        gauge(&mut e, "plum_raft_commit_index", "The commit index this replica knows.", r.committed)?;
        gauge(&mut e, "plum_raft_applied_index", "The last index applied to this replica's state.", r.applied)?;
        let snapshot = "The last log index this replica's snapshot covers.";
        gauge(&mut e, "plum_raft_snapshot_index", snapshot, r.snapshot)?;
        gauge(&mut e, "plum_raft_voters", "Voters in the membership this replica knows.", r.voters as u64)?;

        let nodes = [([("state", "live")], self.nodes_live), ([("state", "dead")], self.nodes_dead)];
        gauges(&mut e, "plum_nodes", "Nodes known to the registry, live or declared dead.", nodes)?;
        let instances = [([("state", "live")], self.instances_live), ([("state", "dead")], self.instances_dead)];
        gauges(&mut e, "plum_instances", "Registered service instances, live or declared dead.", instances)?;
        let paused = "1 while rescheduling is paused after a mass loss of nodes.";
        gauge(&mut e, "plum_rescheduling_paused", paused, u64::from(self.rescheduling_paused))?;

        let per = |pick: fn(&DeploymentCounts) -> u64| {
            self.deployments.iter().map(move |(id, c)| ([("deployment", id.as_str())], pick(c)))
        };
        gauges(&mut e, "plum_deployment_desired_instances", "Instances a deployment asks for.", per(|c| c.desired))?;
        let running = "Active instances of a deployment their agents report running.";
        gauges(&mut e, "plum_deployment_running_instances", running, per(|c| c.running))?;
        let ready = "Active instances of a deployment running and ready.";
        gauges(&mut e, "plum_deployment_ready_instances", ready, per(|c| c.ready))?;
        let standby = "Warm standbys of a deployment running and ready.";
        gauges(&mut e, "plum_deployment_standby_ready_instances", standby, per(|c| c.standby_ready))?;
        Ok(())
    }
}

/// (true, false) counts.
fn split(flags: impl Iterator<Item = bool>) -> (u64, u64) {
    flags.fold((0, 0), |(yes, no), f| if f { (yes + 1, no) } else { (yes, no + 1) })
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    ConstGauge::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn gauges<L: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Reads the cluster at each scrape.
pub struct ClusterCollector {
    cluster: Arc<Cluster>,
}

impl ClusterCollector {
    pub fn new(cluster: Arc<Cluster>) -> ClusterCollector {
        ClusterCollector { cluster }
    }
}

impl fmt::Debug for ClusterCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterCollector(replica {})", self.cluster.id)
    }
}

impl Collector for ClusterCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        // Raft's metrics first, then the registry's lock: never both at once.
        let raft = self.cluster.raft_sample();
        let reading = self.cluster.with_registry(|r| Reading::of(r, raft));
        reading.encode(encoder)
    }
}

#[cfg(test)]
mod tests {

    use plum_raft_store::DataWrites;
    use plum_types::DeploymentRequest;
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::state::{Command, InstanceReport, Op, Placed};

    #[derive(Debug)]
    struct Fixed(Reading);

    impl Collector for Fixed {
        fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
            self.0.encode(encoder)
        }
    }

    #[test]
    fn a_reading_counts_nodes_and_deployment_instances() {
        let mut state = State::default();
        let mut index = 0;
        let mut apply = |state: &mut State, op: Op| {
            index += 1;
            state.apply(index, &Command { now_ms: 1_000, op }, &mut DataWrites::default());
        };
        for n in ["a", "b"] {
            apply(&mut state, Op::test_node(n, 0));
        }
        apply(&mut state, Op::ExpireNodes { nodes: vec![("b".into(), 1_000)], moves: vec![], takeovers: vec![] });
        let spec = DeploymentRequest { name: "web \"x\"".into(), replicas: 3, ..DeploymentRequest::default() };
        let placed = |i: &str| Placed { instance_id: i.into(), node_id: "a".into() };
        let op = Op::CreateDeployment {
            deployment_id: "web \"x\"".into(),
            spec: Box::new(spec),
            placements: vec![placed("w0"), placed("w1"), placed("w2")],
            standby: vec![placed("s0")],
        };
        apply(&mut state, op);
        for (id, healthy) in [("w0", true), ("w1", false), ("s0", true)] {
            let report = InstanceReport {
                instance_id: id.into(),
                node_id: "a".into(),
                phase: "Running".into(),
                port: 1,
                healthy,
                exit_code: None,
            };
            apply(&mut state, Op::ReportInstance { report });
        }
        let raft = RaftSample {
            term: 7,
            role: "follower",
            leader: Some(2),
            last_log_index: 40,
            committed: 39,
            applied: 38,
            snapshot: 0,
            voters: 3,
        };
        let reading = Reading::of(&state, raft);
        let counts = &reading.deployments["web \"x\""];
        assert_eq!(*counts, DeploymentCounts { desired: 3, running: 2, ready: 1, standby_ready: 1 });
        assert_eq!((reading.nodes_live, reading.nodes_dead), (1, 1));

        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(reading)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "plum_raft_term 7",
            r#"plum_raft_role{role="follower"} 1"#,
            r#"plum_raft_role{role="leader"} 0"#,
            "plum_raft_leader_id 2",
            "plum_raft_commit_index 39",
            r#"plum_nodes{state="dead"} 1"#,
            // Operator-made names are escaped, never trusted as text.
            r#"plum_deployment_ready_instances{deployment="web \"x\""} 1"#,
            r#"plum_deployment_desired_instances{deployment="web \"x\""} 3"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no line `{line}` in:\n{text}");
        }
    }
}
