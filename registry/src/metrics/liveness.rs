//! Liveness: the heartbeats this replica received and passed on to the leader (`liveness::batcher`),
//! and what the replicated log says about deaths and their repair, followed command by command
//! as they apply ([`ApplyObserver`], [`super::failovers`]): node and instance expiries, instances rescheduled off dead
//! nodes, warm-standby takeovers, and how long each failover took from the node's death (its
//! last heartbeat the cluster recorded) to a replacement ready (its agent reporting it
//! `Running` and healthy, or a ready standby taking over). Every replica applies the same log,
//! so every replica counts the same, from the leader's timestamps in the entries.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::failovers::Failovers;
use crate::state::{ApplyObserver, Command, Registry as State};

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

/// What the log says about deaths and their repair: counted and timed from what
/// [`Failovers`] follows (it also keeps the recent failovers for `GET /v1/failovers`).
pub struct LogMetrics {
    expiries: Family<KindLabels, Counter>,
    reschedules: Counter,
    takeovers: Counter,
    failover: Histogram,
    pending_gauge: Gauge,
    failovers: Failovers,
}

impl Default for LogMetrics {
    fn default() -> Self {
        LogMetrics {
            expiries: family_of_kinds(),
            reschedules: Counter::default(),
            takeovers: Counter::default(),
            failover: Histogram::new(FAILOVER_BUCKETS),
            pending_gauge: Gauge::default(),
            failovers: Failovers::default(),
        }
    }
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

    /// The node failovers followed so far (`GET /v1/failovers`).
    pub fn failovers(&self) -> &Failovers {
        &self.failovers
    }
}

impl ApplyObserver for LogMetrics {
    fn applying(&self, command: &Command, before: &State) {
        let seen = self.failovers.follow(command, before);
        if seen.nodes_expired > 0 {
            self.expiries.get_or_create(&NODE).inc_by(seen.nodes_expired);
        }
        if seen.instances_expired > 0 {
            self.expiries.get_or_create(&INSTANCE).inc_by(seen.instances_expired);
        }
        self.reschedules.inc_by(seen.reschedules);
        self.takeovers.inc_by(seen.takeovers);
        for ms in seen.ready_after_ms {
            self.failover.observe(ms as f64 / 1000.0);
        }
        self.pending_gauge.set(seen.pending as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::applied_log::Log;
    use crate::state::{Op, Placed};

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
        // The replaced instance becomes the standby and moves: rescheduled, but no failover of its own.
        let mut log = Log::standby_takes_over_from_a();
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
