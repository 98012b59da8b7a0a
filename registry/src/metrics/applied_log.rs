//! Tests' log: a registry and the metrics following it, applied to as Raft would, with helpers
//! for the entries failovers are made of.

use plum_raft_store::DataWrites;
use plum_types::DeploymentRequest;
use prometheus_client::registry::Registry;

use super::liveness::LogMetrics;
use crate::state::{ApplyObserver, Command, InstanceReport, Op, Placed, Registry as State, Takeover};

#[derive(Default)]
pub struct Log {
    pub state: State,
    pub metrics: LogMetrics,
    index: u64,
}

impl Log {
    pub fn new() -> Log {
        Log::default()
    }

    pub fn apply(&mut self, now_ms: u64, op: Op) {
        self.index += 1;
        let cmd = Command { now_ms, op };
        self.metrics.applying(&cmd, &self.state);
        self.state.apply(self.index, &cmd, &mut DataWrites::default());
    }

    /// A node that runs instances, with a 1 s TTL.
    pub fn node(&mut self, now_ms: u64, id: &str) {
        self.apply(now_ms, Op::test_node(id, 1000));
    }

    /// Deployment `id` with instances `on` and warm standbys `standby` (instance, node).
    pub fn deploy(&mut self, now_ms: u64, id: &str, on: &[(&str, &str)], standby: &[(&str, &str)]) {
        let spec = DeploymentRequest { name: id.into(), replicas: on.len() as u32, ..DeploymentRequest::default() };
        let op = Op::CreateDeployment {
            deployment_id: id.into(),
            spec: Box::new(spec),
            placements: placed(on),
            standby: placed(standby),
        };
        self.apply(now_ms, op);
    }

    pub fn report(&mut self, now_ms: u64, instance: &str, node: &str, phase: &str, healthy: bool) {
        let report = InstanceReport {
            instance_id: instance.into(),
            node_id: node.into(),
            phase: phase.into(),
            port: 8080,
            healthy,
            exit_code: None,
        };
        self.apply(now_ms, Op::ReportInstance { report });
    }

    /// Node `node`, last heard from at `last_seen_ms`, declared dead at `now_ms`, its instances
    /// moved as `moves` says (instance, node; an empty node: waiting for one).
    pub fn expire(&mut self, now_ms: u64, node: &str, last_seen_ms: u64, moves: &[(&str, &str)]) {
        let op = Op::ExpireNodes { nodes: vec![(node.into(), last_seen_ms)], moves: placed(moves), takeovers: vec![] };
        self.apply(now_ms, op);
    }

    /// Nodes a, b and c; `web-0` on a with a ready warm standby `web-standby-0` on b; a, last
    /// heard from at 1,800, declared dead at 3,000: the standby takes over and the replaced
    /// instance becomes the new standby, moved to c.
    pub fn standby_takes_over_from_a() -> Log {
        let mut log = Log::new();
        for n in ["a", "b", "c"] {
            log.node(1_000, n);
        }
        log.deploy(1_000, "web", &[("web-0", "a")], &[("web-standby-0", "b")]);
        log.report(2_000, "web-standby-0", "b", "Running", true);
        let takeovers = vec![Takeover { standby: "web-standby-0".into(), replaces: "web-0".into() }];
        let moves = placed(&[("web-0", "c")]);
        log.apply(3_000, Op::ExpireNodes { nodes: vec![("a".into(), 1_800)], moves, takeovers });
        log
    }

    /// The metrics as `/metrics` shows them.
    pub fn text(&self) -> String {
        let mut registry = Registry::default();
        self.metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }
}

pub fn placed(list: &[(&str, &str)]) -> Vec<Placed> {
    list.iter().map(|(i, n)| Placed { instance_id: i.to_string(), node_id: n.to_string() }).collect()
}
