//! Placement: which node runs an instance. Runs on the leader, before proposing, so that apply
//! only records decisions (it stays deterministic).
//!
//! A node is a candidate when it is alive, its agent declared it can run work (nodes that only
//! heartbeat, such as load tools, never are), it carries every label the deployment asks for,
//! it has room (below the capacity its agent declared), and it is not being taken out. Among
//! candidates the scheduler spreads: fewest instances of
//! this deployment first, then fewest instances in all, then node id (so the choice is stable).

use std::collections::{BTreeMap, BTreeSet};

use crate::state::{Placed, Registry, Takeover, deps};

/// Instances per node, counted once for a whole batch of decisions.
pub struct Scheduler<'a> {
    registry: &'a Registry,
    /// Nodes that must not receive work (dying ones).
    excluded: BTreeSet<String>,
    total: BTreeMap<String, usize>,
    per_deployment: BTreeMap<(String, String), usize>,
}

impl<'a> Scheduler<'a> {
    pub fn new(registry: &'a Registry, excluded: BTreeSet<String>) -> Scheduler<'a> {
        let mut total = BTreeMap::new();
        let mut per_deployment = BTreeMap::new();
        for a in registry.assignment_records().filter(|a| !a.node_id.is_empty()) {
            *total.entry(a.node_id.clone()).or_insert(0) += 1;
            *per_deployment.entry((a.deployment_id.clone(), a.node_id.clone())).or_insert(0) += 1;
        }
        Scheduler { registry, excluded, total, per_deployment }
    }

    /// Chooses a node for one more instance of `deployment_id` that wants `labels`; empty when
    /// no node can take it. Counts the choice for the decisions that follow.
    pub fn place(&mut self, deployment_id: &str, labels: &BTreeMap<String, String>) -> String {
        let Some(node) = self.best_node(deployment_id, labels) else { return String::new() };
        self.count(deployment_id, &node);
        node
    }

    /// The candidate that spreads best, and how many instances of `deployment_id` it runs.
    fn best_node(&self, deployment_id: &str, labels: &BTreeMap<String, String>) -> Option<String> {
        self.registry
            .node_records()
            .filter(|n| n.alive && n.can_run && !self.excluded.contains(&n.node_id))
            .filter(|n| n.capacity == 0 || self.total.get(&n.node_id).copied().unwrap_or(0) < n.capacity as usize)
            .filter(|n| labels.iter().all(|(k, v)| n.labels.get(k) == Some(v)))
            .min_by_key(|n| {
                (
                    self.mine(deployment_id, &n.node_id),
                    self.total.get(&n.node_id).copied().unwrap_or(0),
                    n.node_id.clone(),
                )
            })
            .map(|n| n.node_id.clone())
    }

    fn mine(&self, deployment_id: &str, node_id: &str) -> usize {
        self.per_deployment.get(&(deployment_id.to_string(), node_id.to_string())).copied().unwrap_or(0)
    }

    fn count(&mut self, deployment_id: &str, node_id: &str) {
        *self.total.entry(node_id.to_string()).or_insert(0) += 1;
        *self.per_deployment.entry((deployment_id.to_string(), node_id.to_string())).or_insert(0) += 1;
    }

    /// Warm standbys that share a node with an active instance of their deployment move to a
    /// node that runs none of it, when there is one: a standby dies with the node it shares,
    /// so there it could not take over. A standby carries no traffic, so moving it costs
    /// nothing; the condition is false once it moved, so nothing moves back and forth.
    pub fn spread_standbys(&mut self) -> Vec<Placed> {
        let registry = self.registry;
        // (deployment, node) pairs with an active instance, gathered once: this runs every
        // second on the leader, over every assignment.
        let active: BTreeSet<(&str, &str)> = registry
            .assignment_records()
            .filter(|a| !a.standby)
            .map(|a| (a.deployment_id.as_str(), a.node_id.as_str()))
            .collect();
        let mut moves = Vec::new();
        for s in registry.assignment_records().filter(|a| a.standby && !a.node_id.is_empty()) {
            if !active.contains(&(s.deployment_id.as_str(), s.node_id.as_str())) {
                continue;
            }
            let Some(d) = registry.deployment_record(&s.deployment_id) else { continue };
            let Some(node_id) = self.best_node(&s.deployment_id, &d.spec.placement.labels) else { continue };
            if self.mine(&s.deployment_id, &node_id) == 0 {
                self.release(&s.deployment_id, &s.node_id);
                self.count(&s.deployment_id, &node_id);
                moves.push(Placed { instance_id: s.instance_id.clone(), node_id });
            }
        }
        moves
    }

    /// Takes an instance off its node in the counts (it is about to move).
    fn release(&mut self, deployment_id: &str, node_id: &str) {
        if let Some(c) = self.total.get_mut(node_id) {
            *c = c.saturating_sub(1);
        }
        if let Some(c) = self.per_deployment.get_mut(&(deployment_id.to_string(), node_id.to_string())) {
            *c = c.saturating_sub(1);
        }
    }

    /// Warm standbys that take over the active instances on the `dying` nodes: one per
    /// instance, of the same deployment, on a live node, ready (running and healthy).
    pub fn takeovers(&self, dying: &BTreeSet<String>) -> Vec<Takeover> {
        let r = self.registry;
        let live = |node: &str| !dying.contains(node) && r.node_record(node).is_some_and(|n| n.alive);
        let mut used: BTreeSet<&str> = BTreeSet::new();
        let mut out = Vec::new();
        for a in r.assignment_records().filter(|a| !a.standby && dying.contains(&a.node_id)) {
            let standby = r.assignment_records().find(|s| {
                s.standby
                    && s.deployment_id == a.deployment_id
                    && s.phase == "Running"
                    && s.healthy
                    && live(&s.node_id)
                    && !used.contains(s.instance_id.as_str())
            });
            if let Some(s) = standby {
                used.insert(&s.instance_id);
                out.push(Takeover { standby: s.instance_id.clone(), replaces: a.instance_id.clone() });
            }
        }
        out
    }

    /// New homes for every instance assigned to a node in `from` (with `from` excluded), and
    /// for every instance still waiting for a node whose deployment's dependencies hold (at
    /// `now_ms`, the leader's clock: how long it has waited decides a `timeoutMs`). An
    /// instance moved off a dead node is not gated: gating applies at first start only. Only
    /// real moves are returned.
    pub fn moves_off(&mut self, from: &BTreeSet<String>, now_ms: u64) -> Vec<Placed> {
        self.excluded.extend(from.iter().cloned());
        let registry = self.registry;
        let mut moves = Vec::new();
        for a in registry.assignment_records().filter(|a| a.node_id.is_empty() || from.contains(&a.node_id)) {
            let Some(d) = registry.deployment_record(&a.deployment_id) else { continue };
            if a.node_id.is_empty() && !deps::unmet(registry, &d.spec, now_ms.saturating_sub(a.updated_ms)).is_empty() {
                continue;
            }
            self.release(&a.deployment_id, &a.node_id);
            let node_id = self.place(&a.deployment_id, &d.spec.placement.labels);
            if node_id != a.node_id {
                moves.push(Placed { instance_id: a.instance_id.clone(), node_id });
            }
        }
        moves
    }
}

#[cfg(test)]
mod tests {
    use plum_raft_store::DataWrites;
    use plum_types::{DeploymentRequest, Placement};

    use super::*;
    use crate::state::{Command, Op};

    fn apply(r: &mut Registry, op: Op) {
        let index = r.applied_index() + 1;
        r.apply(index, &Command { now_ms: 1_000, op }, &mut DataWrites::default());
    }

    fn node(r: &mut Registry, id: &str, can_run: bool, zone: &str) {
        node_with_capacity(r, id, can_run, zone, 0);
    }

    fn node_with_capacity(r: &mut Registry, id: &str, can_run: bool, zone: &str, capacity: u32) {
        let labels = BTreeMap::from([("zone".to_string(), zone.to_string())]);
        apply(r, Op::UpsertNode { node_id: id.into(), ip: "10.0.0.1".into(), labels, can_run, ttl_ms: 0, capacity });
    }

    #[test]
    fn a_full_node_takes_no_more() {
        let mut r = Registry::default();
        node_with_capacity(&mut r, "small", true, "x", 1);
        node_with_capacity(&mut r, "big", true, "x", 2);
        assert_eq!(nodes_of(&deploy(&mut r, "web", None, 4)), vec!["big", "small", "big", ""]);
    }

    fn deploy(r: &mut Registry, id: &str, zone: Option<&str>, count: usize) -> Vec<Placed> {
        let labels: BTreeMap<String, String> = zone.map(|z| ("zone".to_string(), z.to_string())).into_iter().collect();
        let mut s = Scheduler::new(r, BTreeSet::new());
        let placements: Vec<Placed> =
            (0..count).map(|i| Placed { instance_id: format!("{id}-{i}"), node_id: s.place(id, &labels) }).collect();
        let spec =
            DeploymentRequest { name: id.into(), placement: Placement { labels }, ..DeploymentRequest::default() };
        apply(
            r,
            Op::CreateDeployment {
                deployment_id: id.into(),
                spec: Box::new(spec),
                placements: placements.clone(),
                standby: Vec::new(),
            },
        );
        placements
    }

    fn nodes_of(p: &[Placed]) -> Vec<&str> {
        p.iter().map(|p| p.node_id.as_str()).collect()
    }

    #[test]
    fn replicas_spread_over_nodes_that_can_run_and_match_the_labels() {
        let mut r = Registry::default();
        node(&mut r, "a", true, "x");
        node(&mut r, "b", true, "x");
        node(&mut r, "c", true, "y");
        node(&mut r, "loadtool", false, "x");
        assert_eq!(nodes_of(&deploy(&mut r, "web", Some("x"), 3)), vec!["a", "b", "a"]);
        // Another deployment prefers the least loaded node overall.
        assert_eq!(nodes_of(&deploy(&mut r, "api", None, 2)), vec!["c", "b"]);
        assert_eq!(nodes_of(&deploy(&mut r, "none", Some("z"), 1)), vec![""], "no candidate: pending");
    }

    #[test]
    fn a_dead_nodes_instances_move_and_pending_ones_find_a_home() {
        let mut r = Registry::default();
        node(&mut r, "a", true, "x");
        node(&mut r, "b", true, "x");
        deploy(&mut r, "web", None, 2);
        deploy(&mut r, "late", Some("y"), 1);
        node(&mut r, "c", true, "y");
        let moves = Scheduler::new(&r, BTreeSet::new()).moves_off(&BTreeSet::from(["a".to_string()]), 0);
        assert_eq!(
            moves,
            vec![
                Placed { instance_id: "late-0".into(), node_id: "c".into() },
                // b already runs web-1: c spreads it better.
                Placed { instance_id: "web-0".into(), node_id: "c".into() },
            ]
        );
        // Applied in the expiry entry: the node is dead and its instance elsewhere, together.
        apply(&mut r, Op::ExpireNodes { nodes: vec![("a".into(), 1_000)], moves, takeovers: Vec::new() });
        let web = r.deployment("web", 0).unwrap();
        let homes: Vec<(&str, &str)> = web.instances.iter().map(|i| (i.node_id.as_str(), i.phase.as_str())).collect();
        assert_eq!(homes, vec![("c", "Assigned"), ("b", "Assigned")]);
        assert!(!r.node_record("a").unwrap().alive);
        assert!(r.assignments_of("a").is_empty());
    }

    /// Every node rebooted: nothing could take the instances, so they wait without a node.
    /// When nodes are back, each is placed only once what it depends on is healthy.
    #[test]
    fn waiting_instances_are_placed_in_dependency_order() {
        let mut r = Registry::default();
        let service = |name: &str| Some(plum_types::ServiceSpec { name: name.into(), ..Default::default() });
        for (name, deps) in [("db", vec![]), ("api", vec!["db"])] {
            let depends_on =
                deps.iter().map(|d| plum_types::Dependency { service: d.to_string(), ..Default::default() }).collect();
            let spec = DeploymentRequest {
                name: name.into(),
                replicas: 1,
                service: service(name),
                depends_on,
                ..Default::default()
            };
            let placements = vec![Placed { instance_id: format!("{name}-0"), node_id: String::new() }];
            apply(
                &mut r,
                Op::CreateDeployment { deployment_id: name.into(), spec: Box::new(spec), placements, standby: vec![] },
            );
        }
        node(&mut r, "a", true, "x");
        let moves = Scheduler::new(&r, BTreeSet::new()).moves_off(&BTreeSet::new(), 5_000);
        assert_eq!(moves, vec![Placed { instance_id: "db-0".into(), node_id: "a".into() }], "api waits for db");
        apply(&mut r, Op::Reassign { moves });
        let api = r.deployment("api", 5_000).unwrap();
        assert_eq!(
            (api.instances[0].phase.as_str(), api.instances[0].waiting_on.clone()),
            ("Waiting", vec!["db: 0 of 1 healthy".to_string()])
        );
        assert_eq!(api.dependencies.as_deref(), Some("Waiting: db: 0 of 1 healthy"));
        // db registers its endpoint (its agent found it ready): api's turn.
        let endpoint = crate::state::EndpointRecord {
            service_name: "db".into(),
            port: 5432,
            protocol: "tcp".into(),
            version: String::new(),
            labels: BTreeMap::new(),
            healthy: true,
            ip: String::new(),
        };
        let op = Op::RegisterInstance {
            instance_id: "db-0".into(),
            node_id: "a".into(),
            ip: "10.0.0.1".into(),
            endpoints: vec![endpoint],
            ttl_ms: 0,
            replace: false,
            upstreams: vec![],
        };
        apply(&mut r, op);
        let moves = Scheduler::new(&r, BTreeSet::new()).moves_off(&BTreeSet::new(), 6_000);
        assert_eq!(moves, vec![Placed { instance_id: "api-0".into(), node_id: "a".into() }]);
    }

    #[test]
    fn a_standby_sharing_a_node_with_an_active_moves_to_an_empty_node_once() {
        let mut r = Registry::default();
        node(&mut r, "a", true, "x");
        node(&mut r, "b", true, "x");
        let at = |instance_id: &str, node_id: &str| Placed { instance_id: instance_id.into(), node_id: node_id.into() };
        let spec = Box::new(DeploymentRequest { name: "web".into(), ..DeploymentRequest::default() });
        let placements = vec![at("web-0", "a"), at("web-1", "b")];
        let standby = vec![at("web-s", "a")];
        apply(&mut r, Op::CreateDeployment { deployment_id: "web".into(), spec, placements, standby });
        assert!(Scheduler::new(&r, BTreeSet::new()).spread_standbys().is_empty(), "no node is free of web: stay");
        node(&mut r, "c", true, "x");
        let moves = Scheduler::new(&r, BTreeSet::new()).spread_standbys();
        assert_eq!(moves, vec![at("web-s", "c")]);
        apply(&mut r, Op::Reassign { moves });
        assert!(r.assignment_records().any(|a| a.instance_id == "web-s" && a.standby && a.node_id == "c"));
        assert!(Scheduler::new(&r, BTreeSet::new()).spread_standbys().is_empty(), "moved once, then settled");
    }
}
