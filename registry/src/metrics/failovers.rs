//! Node failovers, followed command by command as the log applies: a node declared dead, each of
//! its serving instances moved (or taken over by a warm standby), and the moment each
//! replacement is ready (its new node reports it `Running` and healthy). The one place that
//! follows them: [`LogMetrics`](super::liveness::LogMetrics) counts and times what
//! [`Failovers::follow`] reports (`plum_failover_duration_seconds`), and `GET /v1/failovers`
//! shows [`Failovers::recent`], the last [`HISTORY`] of them.
//!
//! Every replica applies the same log, so every replica follows the same failovers, timed by the
//! leader's clock (the entries' timestamps). Kept in memory: a replica knows the failovers it
//! applied since it started (one it learned from a snapshot is not among them). Only nodes that
//! run instances (or had some moved) are listed: a load tool's heartbeat-only nodes are not.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use plum_types::{MovedInstance, MovedInstanceState, NodeFailover};

use crate::state::{Command, InstanceReport, LeaseKind, Op, Placed, Registry as State};

/// Failovers kept for `GET /v1/failovers`; the oldest is dropped for a new one.
pub const HISTORY: usize = 50;
/// An instance not ready within this long after its node died is no longer followed (nothing
/// could run it, or it was removed in a way not seen here): the map stays small.
const FORGET_AFTER_MS: u64 = 3_600_000;
/// And never more than this many are followed at once.
const MAX_PENDING: usize = 100_000;

/// A node's death: the node and its last heartbeat the cluster recorded (where the failover's
/// time starts). Names one failover: a node revived and dead again is another.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Death {
    node_id: String,
    last_seen_ms: u64,
}

/// What one applied command changed, for the metrics.
#[derive(Debug, Default)]
pub struct Seen {
    /// Nodes the command declared dead.
    pub nodes_expired: u64,
    /// Service instances the command declared dead (not failovers: their node decides).
    pub instances_expired: u64,
    /// Instances given a new node because theirs died (standbys included).
    pub reschedules: u64,
    pub takeovers: u64,
    /// Replacements that became ready in this command: ms from their node's last heartbeat.
    pub ready_after_ms: Vec<u64>,
    /// Instances moved off a dead node whose replacement is not ready yet, after the command.
    pub pending: usize,
}

/// The failovers in progress and the most recent ones. One per replica, fed every applied
/// command under the registry's write lock (see [`crate::state::ApplyObserver`]).
#[derive(Default)]
pub struct Failovers {
    book: Mutex<Book>,
}

#[derive(Default)]
struct Book {
    /// Instances moved off a dead node, not ready yet -> the death they wait since. An instance
    /// moved again before it was ready (its new node died too) keeps its first.
    pending: HashMap<String, Death>,
    /// The most recent failovers, oldest first, at most [`HISTORY`].
    recent: VecDeque<NodeFailover>,
}

impl Failovers {
    /// Follows `command`, about to apply to `before`.
    pub fn follow(&self, command: &Command, before: &State) -> Seen {
        let mut seen = Seen::default();
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        book.follow(&command.op, command.now_ms, before, &mut seen);
        seen.pending = book.pending.len();
        seen
    }

    /// The most recent failovers, newest first.
    pub fn recent(&self) -> Vec<NodeFailover> {
        let book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        book.recent.iter().rev().cloned().collect()
    }
}

/// When `node` died: in the entry being applied (`dying`), or before (dead in the registry,
/// last heard from then). `None`: it is alive, or unknown, or no node at all.
fn death_of(node: &str, dying: &HashMap<&str, u64>, before: &State) -> Option<Death> {
    let last_seen_ms =
        dying.get(node).copied().or_else(|| before.node_record(node).filter(|n| !n.alive).map(|n| n.last_seen_ms))?;
    Some(Death { node_id: node.to_string(), last_seen_ms })
}

/// A failover's summary after one of its instances changed.
fn refresh(f: &mut NodeFailover, now_ms: u64) {
    f.in_progress = f.instances.iter().any(|i| i.state.pending());
    if f.in_progress {
        f.finished_ms = None;
        f.duration_ms = None;
    } else {
        if f.finished_ms.is_none() {
            f.finished_ms = Some(now_ms);
        }
        f.duration_ms = f.instances.iter().filter_map(|i| i.ready_ms).max().map(|r| r.saturating_sub(f.last_seen_ms));
    }
}

impl Book {
    fn follow(&mut self, op: &Op, now_ms: u64, before: &State, seen: &mut Seen) {
        match op {
            Op::ExpireNodes { nodes, moves, takeovers } => {
                // Nodes whose instances this entry moves or replaces.
                let homes: HashSet<&str> = (moves.iter().map(|m| m.instance_id.as_str()))
                    .chain(takeovers.iter().map(|t| t.replaces.as_str()))
                    .filter_map(|id| before.assignment_record(id).map(|a| a.node_id.as_str()))
                    .collect();
                // As `expire_one` decides: alive, and no newer heartbeat in the log.
                let mut dying: HashMap<&str, u64> = HashMap::new();
                for (id, at) in nodes {
                    if before.lease(LeaseKind::Node, id).is_some_and(|l| l.last_seen_ms <= *at)
                        && dying.insert(id.as_str(), *at).is_none()
                        // A node that never runs instances (a load tool's, one that only
                        // registers services) has no failover to show.
                        && (homes.contains(id.as_str()) || before.node_record(id).is_some_and(|n| n.can_run))
                    {
                        self.begin(id, *at, now_ms);
                    }
                }
                seen.nodes_expired += dying.len() as u64;
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
                    seen.takeovers += 1;
                    replaced.insert(t.replaces.as_str());
                    let Some(death) = death_of(&active.node_id, &dying, before) else { continue };
                    let after = now_ms.saturating_sub(death.last_seen_ms);
                    seen.ready_after_ms.push(after);
                    let taken = MovedInstance {
                        instance_id: t.replaces.clone(),
                        deployment_id: active.deployment_id.clone(),
                        from_node: active.node_id.clone(),
                        to_node: standby.node_id.clone(),
                        replacement_id: t.standby.clone(),
                        standby_takeover: true,
                        state: MovedInstanceState::Ready,
                        ready_ms: Some(now_ms),
                        duration_ms: Some(after),
                    };
                    self.record(&death, taken, now_ms);
                }
                self.moved(moves, now_ms, &dying, &replaced, before, seen);
            }
            Op::Reassign { moves } => self.moved(moves, now_ms, &HashMap::new(), &HashSet::new(), before, seen),
            Op::ReportInstance { report } => self.reported(report, now_ms, before, seen),
            Op::ExpireInstances { instances } => {
                seen.instances_expired += instances
                    .iter()
                    .filter(|(id, at)| before.lease(LeaseKind::Instance, id).is_some_and(|l| l.last_seen_ms <= *at))
                    .count() as u64;
            }
            // Instances removed before their replacement was ready: nothing more to wait for. A
            // stop that apply refuses (others depend on it) removes nothing: the same rule here.
            Op::DeleteDeployment { deployment_id, force }
                if !self.pending.is_empty() && !refused_stop(before, deployment_id, *force) =>
            {
                let gone: Vec<String> = self
                    .pending
                    .keys()
                    .filter(|id| before.assignment_record(id).is_some_and(|a| a.deployment_id == *deployment_id))
                    .cloned()
                    .collect();
                gone.iter().for_each(|id| self.abandon(id, now_ms));
            }
            Op::ScaleDeployment { deployment_id, replicas, remove, force, .. }
                if !(*replicas == 0 && refused_stop(before, deployment_id, *force)) =>
            {
                remove.iter().for_each(|id| self.abandon(id, now_ms))
            }
            Op::RolloutStep { remove: Some(id), .. } => self.abandon(id, now_ms),
            Op::Batch { ops } => ops.iter().for_each(|op| self.follow(op, now_ms, before, seen)),
            _ => {}
        }
    }

    /// A node declared dead: a failover of its own, finished at once unless instances move.
    fn begin(&mut self, node_id: &str, last_seen_ms: u64, now_ms: u64) {
        if self.recent.len() >= HISTORY {
            self.recent.pop_front();
        }
        self.recent.push_back(NodeFailover {
            node_id: node_id.to_string(),
            last_seen_ms,
            declared_dead_ms: now_ms,
            in_progress: false,
            finished_ms: Some(now_ms),
            duration_ms: None,
            instances: Vec::new(),
        });
    }

    /// Adds (or updates, when it moves again) an instance of `death`'s failover, if that one is
    /// still in the history.
    fn record(&mut self, death: &Death, instance: MovedInstance, now_ms: u64) {
        let Some(f) =
            self.recent.iter_mut().rev().find(|f| f.node_id == death.node_id && f.last_seen_ms == death.last_seen_ms)
        else {
            return;
        };
        match f.instances.iter_mut().find(|i| i.instance_id == instance.instance_id) {
            Some(known) => {
                known.to_node = instance.to_node;
                known.state = instance.state;
            }
            None => f.instances.push(instance),
        }
        refresh(f, now_ms);
    }

    /// Instances given new nodes: those that left a dead node (or were already waiting after
    /// one died) are rescheduled; active ones among them wait to be ready again.
    fn moved(
        &mut self,
        moves: &[Placed],
        now_ms: u64,
        dying: &HashMap<&str, u64>,
        replaced: &HashSet<&str>,
        before: &State,
        seen: &mut Seen,
    ) {
        for m in moves {
            let Some(a) = before.assignment_record(&m.instance_id) else { continue };
            if a.node_id == m.node_id {
                continue;
            }
            // Waiting since an earlier move keeps its first death.
            let death = self.pending.get(&m.instance_id).cloned().or_else(|| death_of(&a.node_id, dying, before));
            let Some(death) = death else { continue };
            if !m.node_id.is_empty() {
                seen.reschedules += 1;
            }
            // A standby, or an instance a standby replaced (it becomes one), serves nobody.
            if a.standby || replaced.contains(m.instance_id.as_str()) {
                continue;
            }
            let state =
                if m.node_id.is_empty() { MovedInstanceState::WaitingForNode } else { MovedInstanceState::Starting };
            let instance = MovedInstance {
                instance_id: m.instance_id.clone(),
                deployment_id: a.deployment_id.clone(),
                from_node: death.node_id.clone(),
                to_node: m.node_id.clone(),
                replacement_id: m.instance_id.clone(),
                standby_takeover: false,
                state,
                ready_ms: None,
                duration_ms: None,
            };
            self.record(&death, instance, now_ms);
            self.pending.insert(m.instance_id.clone(), death);
        }
        self.forget_old(now_ms);
    }

    /// A replacement reported ready by the node it is assigned to ends its failover.
    fn reported(&mut self, report: &InstanceReport, now_ms: u64, before: &State, seen: &mut Seen) {
        if report.phase != "Running" || !report.healthy {
            return;
        }
        let Some(a) = before.assignment_record(&report.instance_id) else { return };
        // As `report_instance` decides: a late report from the old node is not about this copy.
        if (!report.node_id.is_empty() && report.node_id != a.node_id) || a.standby {
            return;
        }
        if let Some(after) = self.settle(&report.instance_id, now_ms, MovedInstanceState::Ready) {
            seen.ready_after_ms.push(after);
        }
    }

    fn abandon(&mut self, instance_id: &str, now_ms: u64) {
        self.settle(instance_id, now_ms, MovedInstanceState::Abandoned);
    }

    /// Stops following `instance_id`; returns the time from its node's death, if it was followed.
    fn settle(&mut self, instance_id: &str, now_ms: u64, outcome: MovedInstanceState) -> Option<u64> {
        let death = self.pending.remove(instance_id)?;
        let after = now_ms.saturating_sub(death.last_seen_ms);
        let f =
            self.recent.iter_mut().rev().find(|f| f.node_id == death.node_id && f.last_seen_ms == death.last_seen_ms);
        if let Some(f) = f {
            if let Some(i) = f.instances.iter_mut().find(|i| i.instance_id == instance_id) {
                i.state = outcome;
                if outcome == MovedInstanceState::Ready {
                    i.ready_ms = Some(now_ms);
                    i.duration_ms = Some(after);
                }
            }
            refresh(f, now_ms);
        }
        Some(after)
    }

    /// Gives up on instances waiting too long, and on the oldest beyond [`MAX_PENDING`].
    fn forget_old(&mut self, now_ms: u64) {
        let too_old = |d: &Death| now_ms.saturating_sub(d.last_seen_ms) > FORGET_AFTER_MS;
        if self.pending.len() <= MAX_PENDING / 2 && !self.pending.values().any(too_old) {
            return;
        }
        let mut by_age: Vec<(u64, String)> = self.pending.iter().map(|(id, d)| (d.last_seen_ms, id.clone())).collect();
        by_age.sort_unstable();
        let excess = self.pending.len().saturating_sub(MAX_PENDING);
        for (i, (last_seen_ms, id)) in by_age.into_iter().enumerate() {
            if i >= excess && now_ms.saturating_sub(last_seen_ms) <= FORGET_AFTER_MS {
                break;
            }
            self.abandon(&id, now_ms);
        }
    }
}

/// Whether apply refuses this stop of a deployment (`state::deps::needed_by`, as apply decides).
fn refused_stop(before: &State, deployment_id: &str, force: bool) -> bool {
    !force && !crate::state::deps::needed_by(before, deployment_id).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::applied_log::Log;

    fn recent(log: &Log) -> Vec<NodeFailover> {
        log.metrics.failovers().recent()
    }

    #[test]
    fn a_failover_is_in_progress_until_every_replacement_is_ready() {
        let mut log = Log::new();
        for n in ["a", "b", "c"] {
            log.node(1_000, n);
        }
        log.deploy(1_000, "web", &[("web-0", "a"), ("web-1", "a")], &[]);
        log.expire(11_000, "a", 10_000, &[("web-0", "b"), ("web-1", "c")]);
        let f = &recent(&log)[0];
        assert_eq!((f.node_id.as_str(), f.last_seen_ms, f.declared_dead_ms), ("a", 10_000, 11_000));
        assert!(f.in_progress);
        assert_eq!((f.finished_ms, f.duration_ms), (None, None));
        let moved: Vec<_> =
            f.instances.iter().map(|i| (i.instance_id.as_str(), i.from_node.as_str(), i.to_node.as_str())).collect();
        assert_eq!(moved, [("web-0", "a", "b"), ("web-1", "a", "c")]);
        assert!(f.instances.iter().all(|i| i.state == MovedInstanceState::Starting && !i.standby_takeover));

        log.report(12_000, "web-0", "b", "Running", true);
        // A late report from the dead node is not about the new copy.
        log.report(12_100, "web-1", "a", "Running", true);
        let f = &recent(&log)[0];
        assert!(f.in_progress, "web-1 is not ready yet: {f:?}");
        assert_eq!(f.instances[0].state, MovedInstanceState::Ready);
        assert_eq!((f.instances[0].ready_ms, f.instances[0].duration_ms), (Some(12_000), Some(2_000)));
        assert_eq!(f.instances[1].state, MovedInstanceState::Starting);

        log.report(13_500, "web-1", "c", "Running", true);
        let f = &recent(&log)[0];
        assert!(!f.in_progress);
        assert_eq!((f.finished_ms, f.duration_ms), (Some(13_500), Some(3_500)));
        assert_eq!(f.instances[1].duration_ms, Some(3_500));
        // The histogram reads the same failovers.
        let text = log.text();
        assert!(text.contains("plum_failover_duration_seconds_count 2"), "{text}");
        assert!(text.contains("plum_failover_duration_seconds_sum 5.5"), "{text}");
    }

    #[test]
    fn a_standby_takeover_is_ready_in_the_entry_that_declares_the_node_dead() {
        // The replaced instance becomes the new standby, on `c`: not listed.
        let log = Log::standby_takes_over_from_a();
        let f = &recent(&log)[0];
        assert!(!f.in_progress);
        assert_eq!((f.finished_ms, f.duration_ms), (Some(3_000), Some(1_200)));
        assert_eq!(f.instances.len(), 1, "{f:?}");
        let i = &f.instances[0];
        assert!(i.standby_takeover);
        assert_eq!((i.instance_id.as_str(), i.replacement_id.as_str()), ("web-0", "web-standby-0"));
        assert_eq!((i.from_node.as_str(), i.to_node.as_str(), i.deployment_id.as_str()), ("a", "b", "web"));
        assert_eq!((i.state, i.ready_ms, i.duration_ms), (MovedInstanceState::Ready, Some(3_000), Some(1_200)));
    }

    #[test]
    fn an_instance_waits_for_a_node_then_moves_removed_ones_are_abandoned() {
        let mut log = Log::new();
        log.node(1_000, "a");
        log.deploy(1_000, "web", &[("web-0", "a")], &[]);
        log.deploy(1_000, "api", &[("api-0", "a")], &[]);
        log.expire(5_000, "a", 4_000, &[("web-0", ""), ("api-0", "")]);
        let f = &recent(&log)[0];
        assert!(f.instances.iter().all(|i| i.state == MovedInstanceState::WaitingForNode && i.to_node.is_empty()));
        log.node(6_000, "b");
        log.apply(7_000, Op::Reassign { moves: vec![Placed { instance_id: "web-0".into(), node_id: "b".into() }] });
        log.apply(7_500, Op::DeleteDeployment { deployment_id: "api".into(), force: false });
        let f = &recent(&log)[0];
        assert_eq!((f.instances[0].to_node.as_str(), f.instances[0].state), ("b", MovedInstanceState::Starting));
        assert_eq!(f.instances[1].state, MovedInstanceState::Abandoned);
        assert!(f.in_progress);
        log.report(9_000, "web-0", "b", "Running", true);
        let f = &recent(&log)[0];
        assert_eq!((f.in_progress, f.finished_ms, f.duration_ms), (false, Some(9_000), Some(5_000)));
        assert!(log.text().contains("plum_failover_pending_instances 0"));
    }

    #[test]
    fn the_history_keeps_the_most_recent_newest_first() {
        let mut log = Log::new();
        let total = HISTORY + 5;
        for n in 0..total {
            let at = 10_000 + n as u64 * 1_000;
            log.node(at, &format!("n{n}"));
            log.expire(at + 500, &format!("n{n}"), at, &[]);
        }
        let all = recent(&log);
        assert_eq!(all.len(), HISTORY);
        assert_eq!(all[0].node_id, format!("n{}", total - 1), "newest first");
        assert_eq!(all[HISTORY - 1].node_id, "n5", "the oldest five dropped");
        assert!(all.windows(2).all(|w| w[0].declared_dead_ms > w[1].declared_dead_ms));
        // A node with nothing to move: finished when declared dead, no duration.
        assert_eq!(
            (all[0].in_progress, all[0].finished_ms, all[0].duration_ms),
            (false, Some(all[0].declared_dead_ms), None)
        );
    }

    #[test]
    fn a_node_that_never_runs_instances_has_no_failover() {
        let mut log = Log::new();
        let op = Op::UpsertNode {
            node_id: "load-1".into(),
            ip: "10.0.0.9".into(),
            labels: Default::default(),
            can_run: false,
            ttl_ms: 1000,
            capacity: 0,
        };
        log.apply(1_000, op);
        log.expire(3_000, "load-1", 2_000, &[]);
        assert!(recent(&log).is_empty());
        assert!(log.text().contains(r#"plum_liveness_expiries_total{kind="node"} 1"#), "counted all the same");
    }

    #[test]
    fn a_revived_node_that_dies_again_is_another_failover() {
        let mut log = Log::new();
        log.node(1_000, "a");
        log.node(1_000, "b");
        log.deploy(1_000, "web", &[("web-0", "b")], &[]);
        log.expire(3_000, "a", 2_000, &[]);
        // An expiry that lost to a newer heartbeat is none.
        log.apply(4_000, Op::Renew { nodes: vec![("b".into(), 3_900)], instances: vec![] });
        log.expire(4_100, "b", 3_000, &[("web-0", "a")]);
        log.node(5_000, "a");
        log.expire(7_000, "a", 6_000, &[]);
        let nodes: Vec<_> = recent(&log).iter().map(|f| (f.node_id.clone(), f.last_seen_ms)).collect();
        assert_eq!(nodes, [("a".to_string(), 6_000), ("a".to_string(), 2_000)]);
    }
}
