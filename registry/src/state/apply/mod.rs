//! Deterministic apply: the only code that changes the registry. One function per operation,
//! grouped by what they change; [`Registry::apply`] only dispatches.

mod deployments;
mod instances;
mod kv;
mod leases;
mod nodes;
mod observed;
mod tokens;

use plum_raft_store::DataWrites;

use super::command::{Command, CommandResult, Op, Placed, Takeover};
use super::keys;
use super::records::{InstanceRecord, NodeRecord};
use super::rows;
use super::view::Registry;

pub use deployments::{ASSIGNED, PENDING, ROLLOUT_DONE, ROLLOUT_IN_PROGRESS};
pub use kv::{MAX_REMEMBERED_REQUESTS, REQUEST_WINDOW_MS};
pub use observed::{MAX_OBSERVED, OBSERVED_TTL_MS};

impl Registry {
    /// Whether `instance_id` is assigned to a node that is alive.
    fn on_live_node(&self, instance_id: &str) -> bool {
        let node = self.assignments.get(instance_id).and_then(|a| self.nodes.get(&a.node_id));
        node.is_some_and(|n| n.alive)
    }

    /// Applies `cmd`, committed at log `index`, to the view and stages its durable rows.
    pub fn apply(&mut self, index: u64, cmd: &Command, writes: &mut DataWrites) -> CommandResult {
        self.applied_index = index;
        let now = cmd.now_ms;
        self.forget_requests_before(now.saturating_sub(REQUEST_WINDOW_MS), writes);
        self.forget_deleted_history_before(now.saturating_sub(kv::DELETED_HISTORY_MS), writes);
        self.apply_op(&cmd.op, index, now, writes)
    }

    fn apply_op(&mut self, op: &Op, index: u64, now: u64, writes: &mut DataWrites) -> CommandResult {
        match op {
            Op::UpsertNode { node_id, ip, labels, can_run, ttl_ms, capacity } => {
                let up =
                    nodes::NodeUpsert { node_id, ip, labels, can_run: *can_run, ttl_ms: *ttl_ms, capacity: *capacity };
                self.upsert_node(up, now, writes)
            }
            Op::Renew { nodes, instances } => self.renew(nodes, instances, writes),
            Op::ExpireNodes { nodes, moves, takeovers } => {
                let result = self.expire_nodes(nodes, writes);
                // A node that a newer heartbeat in the log kept alive keeps its instances: the
                // leader's moves and takeovers count only for instances off live nodes.
                let takeovers: Vec<Takeover> =
                    takeovers.iter().filter(|t| !self.on_live_node(&t.replaces)).cloned().collect();
                let moves: Vec<Placed> = moves.iter().filter(|m| !self.on_live_node(&m.instance_id)).cloned().collect();
                self.take_over(&takeovers, writes);
                self.reassign(&moves, index, now, writes);
                result
            }
            Op::ExpireInstances { instances } => self.expire_instances(instances, writes),
            Op::DeleteNode { node_id } => self.delete_node(node_id, writes),
            Op::RegisterInstance { instance_id, node_id, ip, endpoints, ttl_ms, replace, upstreams } => {
                let reg = instances::Registration {
                    instance_id,
                    node_id,
                    ip,
                    endpoints,
                    ttl_ms: *ttl_ms,
                    replace: *replace,
                    upstreams,
                };
                self.register_instance(reg, now, writes)
            }
            Op::SetHealth { instance_id, reports, ttl_ms } => {
                self.set_health(instance_id, reports, *ttl_ms, now, writes)
            }
            Op::DeregisterInstance { instance_id } => self.deregister_instance(instance_id, writes),
            Op::ForgetInstances { instances } => self.forget_instances(instances, writes),
            Op::CreateDeployment { deployment_id, spec, placements, standby } => {
                self.create_deployment(deployment_id, spec, (placements, standby), index, now, writes)
            }
            Op::DeleteDeployment { deployment_id, force } => {
                self.delete_deployment(deployment_id, *force, index, writes)
            }
            Op::Reassign { moves } => CommandResult::Changed { count: self.reassign(moves, index, now, writes) },
            Op::ReportInstance { report } => self.report_instance(report, now, writes),
            Op::SetReschedulePause { pause } => self.set_reschedule_pause(pause, writes),
            Op::UpdateDeployment { deployment_id, spec, in_place } => {
                self.update_deployment(deployment_id, spec, *in_place, writes)
            }
            Op::RollConfig { deployment_id } => self.roll_config(deployment_id, writes),
            Op::ObserveEdges { edges } => self.observe_edges(edges, now, writes),
            Op::ScaleDeployment { deployment_id, replicas, add, remove, force } => {
                self.scale_deployment(deployment_id, (*replicas, *force), (add, remove), index, now, writes)
            }
            Op::RolloutStep { deployment_id, remove, add, outcome, add_standby } => {
                let step = (remove.as_deref(), add.as_ref(), outcome.as_deref());
                self.rollout_step(deployment_id, step, *add_standby, index, now, writes)
            }
            Op::KvPut { ns, write, expect_version, request_id } => {
                self.kv_put(ns, write, *expect_version, request_id.as_deref(), index, now, writes)
            }
            Op::KvDelete { ns, key, expect_version } => self.kv_delete(ns, key, *expect_version, (index, now), writes),
            Op::KvBatch { ns, writes: items } => self.kv_batch(ns, items, index, now, writes),
            Op::CreateToken { token, bootstrap } => self.create_token(token, *bootstrap, writes),
            Op::RevokeToken { id } => self.revoke_token(id, writes),
            // Each op as if it had an entry of its own; counts the ops that changed something.
            Op::Batch { ops } => {
                let count = ops
                    .iter()
                    .map(|op| match self.apply_op(op, index, now, writes) {
                        CommandResult::Changed { count } => count,
                        _ => 1,
                    })
                    .sum();
                CommandResult::Changed { count }
            }
        }
    }

    fn put_node(&mut self, rec: NodeRecord, writes: &mut DataWrites) {
        writes.put(keys::node(&rec.node_id), rows::encode(&rec));
        // Discovery hides the endpoints of a dead node: a change of its liveness changes the
        // answers of every service with an instance there.
        let was_live = self.nodes.get(&rec.node_id).is_none_or(|n| n.alive);
        let node_id = rec.node_id.clone();
        let now_live = rec.alive;
        self.nodes.insert(node_id.clone(), rec);
        if was_live != now_live {
            let Registry { by_node, instances, discovery, applied_index, .. } = self;
            let on_node = by_node.get(&node_id).into_iter().flatten().filter_map(|id| instances.get(id));
            on_node.filter(|i| i.alive).for_each(|inst| discovery.mark_instance(inst, *applied_index));
        }
    }

    fn put_instance(&mut self, rec: InstanceRecord, writes: &mut DataWrites) {
        writes.put(keys::instance(&rec.instance_id), rows::encode(&rec));
        let old = self.instances.remove(&rec.instance_id);
        if let Some(old) = &old {
            self.unindex_instance(old);
        }
        // A renewal only moves `last_seen`: discovery watchers are not woken for it.
        let discovery_changed = match &old {
            None => self.discoverable(&rec),
            Some(o) => {
                let (before, after) = (self.discoverable(o), self.discoverable(&rec));
                before != after
                    || (after && (o.endpoints != rec.endpoints || o.ip != rec.ip || o.node_id != rec.node_id))
            }
        };
        if discovery_changed {
            if let Some(o) = &old {
                self.touch_services(o);
            }
            self.touch_services(&rec);
        }
        self.index_instance(&rec);
        self.instances.insert(rec.instance_id.clone(), rec);
    }

    fn remove_instance(&mut self, id: &str, writes: &mut DataWrites) -> bool {
        let Some(old) = self.instances.remove(id) else { return false };
        self.unindex_instance(&old);
        if self.discoverable(&old) {
            self.touch_services(&old);
        }
        writes.delete(keys::instance(id));
        true
    }
}

#[cfg(test)]
mod tests {

    use plum_types::DeploymentRequest;

    use super::*;

    fn apply(r: &mut Registry, op: Op) -> CommandResult {
        let index = r.applied_index() + 1;
        r.apply(index, &Command { now_ms: 1_000, op }, &mut DataWrites::default())
    }

    fn node_of(r: &Registry, instance_id: &str) -> String {
        r.assignments.get(instance_id).map(|a| a.node_id.clone()).unwrap_or_default()
    }

    /// Nodes a and b, instance d-0 on a, its warm standby d-s on b.
    fn two_nodes_one_instance() -> Registry {
        let mut r = Registry::default();
        for n in ["a", "b"] {
            apply(&mut r, Op::test_node(n, 0));
        }
        let spec = DeploymentRequest { name: "d".into(), version: "1".into(), replicas: 1, ..Default::default() };
        let placements = vec![Placed { instance_id: "d-0".into(), node_id: "a".into() }];
        let standby = vec![Placed { instance_id: "d-s".into(), node_id: "b".into() }];
        apply(&mut r, Op::CreateDeployment { deployment_id: "d".into(), spec: Box::new(spec), placements, standby });
        assert_eq!(node_of(&r, "d-0"), "a");
        r
    }

    fn expiry_of_a(seen: u64) -> Op {
        Op::ExpireNodes {
            nodes: vec![("a".into(), seen)],
            moves: vec![Placed { instance_id: "d-0".into(), node_id: "b".into() }],
            takeovers: vec![Takeover { standby: "d-s".into(), replaces: "d-0".into() }],
        }
    }

    #[test]
    fn an_expiry_that_loses_to_a_newer_heartbeat_moves_nothing() {
        let mut r = two_nodes_one_instance();
        apply(&mut r, Op::Renew { nodes: vec![("a".into(), 5_000)], instances: Vec::new() });
        // The leader's verdict was formed before that heartbeat reached the log.
        assert_eq!(apply(&mut r, expiry_of_a(4_000)), CommandResult::Changed { count: 0 });
        assert!(r.nodes["a"].alive);
        assert_eq!(node_of(&r, "d-0"), "a", "a live node keeps its instance");
        assert!(r.assignments["d-s"].standby && !r.assignments["d-0"].standby, "no takeover");
    }

    #[test]
    fn an_expiry_that_holds_moves_the_instances_off_the_dead_node() {
        let mut r = two_nodes_one_instance();
        apply(&mut r, Op::Renew { nodes: vec![("a".into(), 5_000)], instances: Vec::new() });
        assert_eq!(apply(&mut r, expiry_of_a(5_000)), CommandResult::Changed { count: 1 });
        assert!(!r.nodes["a"].alive);
        assert_eq!(node_of(&r, "d-0"), "b");
        assert!(!r.assignments["d-s"].standby && r.assignments["d-0"].standby, "the standby took over");
    }
}
