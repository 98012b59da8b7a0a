//! Liveness: the heartbeats this replica received and passed on to the leader (`liveness::batcher`),
//! and what the replicated log says about deaths and their repair, followed command by command
//! as they apply ([`ApplyObserver`]): node and instance expiries, instances rescheduled off dead
//! nodes, warm-standby takeovers, and how long each failover took from the node's death (its
//! last heartbeat the cluster recorded) to a replacement ready (its agent reporting it
//! `Running` and healthy, or a ready standby taking over). Every replica applies the same log,
//! so every replica counts the same, from the leader's timestamps in the entries.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::{ApplyObserver, Command, InstanceReport, LeaseKind, Op, Placed, Registry as State};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `node` or `instance`.
    pub kind: &'static str,
}

const NODE: KindLabels = KindLabels { kind: "node" };
const INSTANCE: KindLabels = KindLabels { kind: "instance" };

/// Failover durations, in seconds: detection alone is a TTL (1 s for agents by default).
const FAILOVER_BUCKETS: [f64; 16] =
    [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0];

/// A failover not finished within this long is forgotten (its deployment was deleted, scaled
/// down, or nothing could run it): the map stays small.
const FORGET_AFTER_MS: u64 = 3_600_000;
/// And never more than this many wait at once.
const MAX_PENDING: usize = 100_000;

fn family_of_kinds() -> Family<KindLabels, Counter> {
    let family = Family::default();
    // Both series exist from the start, at 0.
    for kind in [NODE, INSTANCE] {
        let _ = family.get_or_create(&kind);
    }
    family
}

/// Heartbeats through this replica's renewal batcher.
#[derive(Clone)]
pub struct HeartbeatMetrics {
    received: Family<KindLabels, Counter>,
    forwarded: Counter,
    batch_size: Histogram,
    failed_batches: Counter,
}

impl Default for HeartbeatMetrics {
    fn default() -> Self {
        HeartbeatMetrics {
            received: family_of_kinds(),
            forwarded: Counter::default(),
            // 1 to 8192 ids (the batcher's maximum), doubling.
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            failed_batches: Counter::default(),
        }
    }
}

impl HeartbeatMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "plum_heartbeats_received",
            "Plain heartbeat renewals this replica received from nodes and instances (ids)",
            self.received.clone(),
        );
        registry.register(
            "plum_heartbeats_forwarded",
            "Heartbeat ids this replica forwarded to the leader in batches",
            self.forwarded.clone(),
        );
        registry.register(
            "plum_heartbeat_batch_size",
            "Heartbeat ids per batch this replica recorded (leading) or forwarded to the leader",
            self.batch_size.clone(),
        );
        registry.register(
            "plum_heartbeat_batches_failed",
            "Heartbeat batches the leader did not record (no leader, no quorum lease, unreachable)",
            self.failed_batches.clone(),
        );
    }

    pub fn received(&self, nodes: usize, instances: usize) {
        self.received.get_or_create(&NODE).inc_by(nodes as u64);
        self.received.get_or_create(&INSTANCE).inc_by(instances as u64);
    }

    pub fn batch(&self, ids: usize) {
        self.batch_size.observe(ids as f64);
    }

    pub fn forwarded(&self, ids: usize) {
        self.forwarded.inc_by(ids as u64);
    }

    pub fn failed(&self) {
        self.failed_batches.inc();
    }
}

/// What the log says about deaths and their repair.
pub struct LogMetrics {
    expiries: Family<KindLabels, Counter>,
    reschedules: Counter,
    takeovers: Counter,
    failover: Histogram,
    pending_gauge: Gauge,
    /// Instances moved off a dead node, not ready yet: instance id -> when their node died
    /// (unix ms, leader clock).
    pending: Mutex<HashMap<String, u64>>,
}

impl Default for LogMetrics {
    fn default() -> Self {
        LogMetrics {
            expiries: family_of_kinds(),
            reschedules: Counter::default(),
            takeovers: Counter::default(),
            failover: Histogram::new(FAILOVER_BUCKETS),
            pending_gauge: Gauge::default(),
            pending: Mutex::new(HashMap::new()),
        }
    }
}

/// When `node` died: in the entry being applied (`dying`), or before (dead in the registry,
/// last heard from then). `None`: it is alive, or unknown, or no node at all.
fn death_of(node: &str, dying: &HashMap<&str, u64>, before: &State) -> Option<u64> {
    dying.get(node).copied().or_else(|| before.node_record(node).filter(|n| !n.alive).map(|n| n.last_seen_ms))
}

fn seconds_between(from_ms: u64, to_ms: u64) -> f64 {
    to_ms.saturating_sub(from_ms) as f64 / 1000.0
}

impl LogMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "plum_liveness_expiries",
            "Nodes and instances declared dead (silent past their TTL) by the applied log",
            self.expiries.clone(),
        );
        registry.register(
            "plum_instance_reschedules",
            "Instances given a new node because theirs died, by the applied log",
            self.reschedules.clone(),
        );
        registry.register(
            "plum_standby_takeovers",
            "Warm standbys that took over an instance of a dead node, by the applied log",
            self.takeovers.clone(),
        );
        registry.register(
            "plum_failover_duration_seconds",
            "From a node's last recorded heartbeat to a replacement of one of its instances ready \
             (reported Running and healthy by its new node, or a ready standby taking over); leader clock. \
             Every replica observes the same failovers: aggregate with max, not sum",
            self.failover.clone(),
        );
        registry.register(
            "plum_failover_pending_instances",
            "Instances moved off a dead node whose replacement is not ready yet",
            self.pending_gauge.clone(),
        );
    }

    fn follow(&self, op: &Op, now_ms: u64, before: &State) {
        match op {
            Op::ExpireNodes { nodes, moves, takeovers } => {
                // As `expire_one` decides: alive, and no newer heartbeat in the log.
                let dying: HashMap<&str, u64> = nodes
                    .iter()
                    .filter(|(id, seen)| before.lease(LeaseKind::Node, id).is_some_and(|l| l.last_seen_ms <= *seen))
                    .map(|(id, seen)| (id.as_str(), *seen))
                    .collect();
                self.expiries.get_or_create(&NODE).inc_by(dying.len() as u64);
                let mut replaced = HashSet::new();
                for t in takeovers {
                    let (Some(standby), Some(active)) =
                        (before.assignment_record(&t.standby), before.assignment_record(&t.replaces))
                    else {
                        continue;
                    };
                    // As `take_over` decides.
                    if !standby.standby || active.standby {
                        continue;
                    }
                    self.takeovers.inc();
                    replaced.insert(t.replaces.as_str());
                    if let Some(died) = death_of(&active.node_id, &dying, before) {
                        self.failover.observe(seconds_between(died, now_ms));
                    }
                }
                self.moved(moves, now_ms, &dying, &replaced, before);
            }
            Op::Reassign { moves } => self.moved(moves, now_ms, &HashMap::new(), &HashSet::new(), before),
            Op::ReportInstance { report } => self.reported(report, now_ms, before),
            Op::ExpireInstances { instances } => {
                let expired = instances
                    .iter()
                    .filter(|(id, seen)| before.lease(LeaseKind::Instance, id).is_some_and(|l| l.last_seen_ms <= *seen))
                    .count();
                self.expiries.get_or_create(&INSTANCE).inc_by(expired as u64);
            }
            Op::Batch { ops } => ops.iter().for_each(|op| self.follow(op, now_ms, before)),
            _ => {}
        }
    }

    /// Instances given new nodes: those that left a dead node (or were already waiting after
    /// one died) are rescheduled; active ones among them wait to be ready again.
    fn moved(
        &self,
        moves: &[Placed],
        now_ms: u64,
        dying: &HashMap<&str, u64>,
        replaced: &HashSet<&str>,
        before: &State,
    ) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for m in moves {
            let Some(a) = before.assignment_record(&m.instance_id) else { continue };
            if a.node_id == m.node_id {
                continue;
            }
            // Waiting since an earlier move keeps its first death time.
            let died = pending.get(&m.instance_id).copied().or_else(|| death_of(&a.node_id, dying, before));
            let Some(died) = died else { continue };
            if !m.node_id.is_empty() {
                self.reschedules.inc();
            }
            // A standby, or an instance a standby replaced (it becomes one), serves nobody.
            if !a.standby && !replaced.contains(m.instance_id.as_str()) {
                pending.insert(m.instance_id.clone(), died);
            }
        }
        if pending.len() > MAX_PENDING / 2 || pending.values().any(|d| now_ms.saturating_sub(*d) > FORGET_AFTER_MS) {
            pending.retain(|_, died| now_ms.saturating_sub(*died) <= FORGET_AFTER_MS);
            while pending.len() > MAX_PENDING {
                let Some(oldest) = pending.iter().min_by_key(|(_, d)| **d).map(|(id, _)| id.clone()) else { break };
                pending.remove(&oldest);
            }
        }
        self.pending_gauge.set(pending.len() as i64);
    }

    /// A replacement reported ready by the node it is assigned to ends its failover.
    fn reported(&self, report: &InstanceReport, now_ms: u64, before: &State) {
        if report.phase != "Running" || !report.healthy {
            return;
        }
        let Some(a) = before.assignment_record(&report.instance_id) else { return };
        // As `report_instance` decides: a late report from the old node is not about this copy.
        if (!report.node_id.is_empty() && report.node_id != a.node_id) || a.standby {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(died) = pending.remove(&report.instance_id) {
            self.failover.observe(seconds_between(died, now_ms));
            self.pending_gauge.set(pending.len() as i64);
        }
    }
}

impl ApplyObserver for LogMetrics {
    fn applying(&self, command: &Command, before: &State) {
        self.follow(&command.op, command.now_ms, before);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use plum_raft_store::DataWrites;
    use plum_types::DeploymentRequest;

    use super::*;
    use crate::state::Takeover;

    /// A registry and the metrics following it, applied to as Raft would.
    struct Log {
        state: State,
        metrics: LogMetrics,
        index: u64,
    }

    impl Log {
        fn new() -> Log {
            Log { state: State::default(), metrics: LogMetrics::default(), index: 0 }
        }

        fn apply(&mut self, now_ms: u64, op: Op) {
            self.index += 1;
            let cmd = Command { now_ms, op };
            self.metrics.applying(&cmd, &self.state);
            self.state.apply(self.index, &cmd, &mut DataWrites::default());
        }

        fn node(&mut self, now_ms: u64, id: &str) {
            let op = Op::UpsertNode {
                node_id: id.into(),
                ip: "10.0.0.1".into(),
                labels: BTreeMap::new(),
                can_run: true,
                ttl_ms: 1000,
                capacity: 0,
            };
            self.apply(now_ms, op);
        }

        fn deploy(&mut self, now_ms: u64, id: &str, on: &[(&str, &str)], standby: &[(&str, &str)]) {
            let placed = |list: &[(&str, &str)]| {
                list.iter().map(|(i, n)| Placed { instance_id: i.to_string(), node_id: n.to_string() }).collect()
            };
            let spec = DeploymentRequest { name: id.into(), replicas: on.len() as u32, ..DeploymentRequest::default() };
            let op = Op::CreateDeployment {
                deployment_id: id.into(),
                spec: Box::new(spec),
                placements: placed(on),
                standby: placed(standby),
            };
            self.apply(now_ms, op);
        }

        fn report(&mut self, now_ms: u64, instance: &str, node: &str, phase: &str, healthy: bool) {
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

        fn text(&self) -> String {
            let mut registry = Registry::default();
            self.metrics.register(&mut registry);
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            text
        }
    }

    fn has(text: &str, line: &str) {
        assert!(text.lines().any(|l| l == line), "no line `{line}` in:\n{text}");
    }

    #[test]
    fn a_failover_lasts_from_the_nodes_last_heartbeat_to_the_replacement_ready() {
        let mut log = Log::new();
        log.node(1_000, "a");
        log.node(1_000, "b");
        log.deploy(1_000, "web", &[("web-0", "a")], &[]);
        log.report(2_000, "web-0", "a", "Running", true);
        // `a` was last heard from at 10 000, expired at 11 000, its instance moved to `b`.
        let moves = vec![Placed { instance_id: "web-0".into(), node_id: "b".into() }];
        log.apply(11_000, Op::ExpireNodes { nodes: vec![("a".into(), 10_000)], moves, takeovers: vec![] });
        has(&log.text(), "plum_failover_pending_instances 1");
        // Not ready yet; a late report from the old node is not about the new copy.
        log.report(11_500, "web-0", "b", "Starting", false);
        log.report(11_600, "web-0", "a", "Running", true);
        log.report(12_500, "web-0", "b", "Running", true);
        // Reported again: counted once.
        log.report(13_000, "web-0", "b", "Running", true);
        let text = log.text();
        has(&text, r#"plum_liveness_expiries_total{kind="node"} 1"#);
        has(&text, "plum_instance_reschedules_total 1");
        has(&text, "plum_failover_duration_seconds_count 1");
        has(&text, "plum_failover_duration_seconds_sum 2.5");
        has(&text, "plum_failover_pending_instances 0");
    }

    #[test]
    fn an_instance_that_waited_for_a_node_counts_from_the_first_death() {
        let mut log = Log::new();
        log.node(1_000, "a");
        log.deploy(1_000, "web", &[("web-0", "a")], &[]);
        // No node to go to: it waits (moved to no node), then one appears and takes it.
        let moves = vec![Placed { instance_id: "web-0".into(), node_id: String::new() }];
        log.apply(5_000, Op::ExpireNodes { nodes: vec![("a".into(), 4_000)], moves, takeovers: vec![] });
        log.node(6_000, "b");
        log.apply(7_000, Op::Reassign { moves: vec![Placed { instance_id: "web-0".into(), node_id: "b".into() }] });
        log.report(9_000, "web-0", "b", "Running", true);
        let text = log.text();
        has(&text, "plum_instance_reschedules_total 1");
        has(&text, "plum_failover_duration_seconds_sum 5.0");
    }

    #[test]
    fn a_standby_takeover_is_a_failover_ready_in_the_expiry_itself() {
        let mut log = Log::new();
        for n in ["a", "b", "c"] {
            log.node(1_000, n);
        }
        log.deploy(1_000, "web", &[("web-0", "a")], &[("web-standby-0", "b")]);
        log.report(2_000, "web-standby-0", "b", "Running", true);
        let takeovers = vec![Takeover { standby: "web-standby-0".into(), replaces: "web-0".into() }];
        // The replaced instance becomes the standby and moves: rescheduled, but no failover of its own.
        let moves = vec![Placed { instance_id: "web-0".into(), node_id: "c".into() }];
        log.apply(3_000, Op::ExpireNodes { nodes: vec![("a".into(), 1_800)], moves, takeovers });
        log.report(4_000, "web-0", "c", "Running", true);
        let text = log.text();
        has(&text, "plum_standby_takeovers_total 1");
        has(&text, "plum_instance_reschedules_total 1");
        has(&text, "plum_failover_duration_seconds_count 1");
        has(&text, "plum_failover_duration_seconds_sum 1.2");
        has(&text, "plum_failover_pending_instances 0");
    }

    #[test]
    fn an_expiry_that_lost_to_a_newer_heartbeat_counts_nothing() {
        let mut log = Log::new();
        log.node(1_000, "a");
        log.node(1_000, "b");
        log.deploy(1_000, "web", &[("web-0", "b")], &[]);
        log.apply(5_000, Op::Renew { nodes: vec![("a".into(), 4_900)], instances: vec![] });
        // Seen at 4 900 in the log; the verdict says 4 000: it loses.
        log.apply(5_100, Op::ExpireNodes { nodes: vec![("a".into(), 4_000)], moves: vec![], takeovers: vec![] });
        // Moving an instance between live nodes (spreading) is no reschedule either.
        log.node(5_200, "c");
        log.apply(5_300, Op::Reassign { moves: vec![Placed { instance_id: "web-0".into(), node_id: "c".into() }] });
        log.apply(5_400, Op::ExpireInstances { instances: vec![("nobody".into(), 1)] });
        let text = log.text();
        has(&text, r#"plum_liveness_expiries_total{kind="node"} 0"#);
        has(&text, r#"plum_liveness_expiries_total{kind="instance"} 0"#);
        has(&text, "plum_instance_reschedules_total 0");
        has(&text, "plum_failover_duration_seconds_count 0");
    }

    #[test]
    fn heartbeats_are_counted_by_kind() {
        let m = HeartbeatMetrics::default();
        m.received(2, 5);
        m.batch(7);
        m.forwarded(7);
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        has(&text, r#"plum_heartbeats_received_total{kind="node"} 2"#);
        has(&text, r#"plum_heartbeats_received_total{kind="instance"} 5"#);
        has(&text, "plum_heartbeats_forwarded_total 7");
        has(&text, "plum_heartbeat_batch_size_count 1");
    }
}
