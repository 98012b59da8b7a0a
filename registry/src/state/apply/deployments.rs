//! Deployments and their instances' assignments: create, delete, move, and agents' reports.
//! Placement was decided by the leader before proposing; apply records it as given.

use plum_raft_store::DataWrites;
use plum_types::DeploymentRequest;

use crate::state::command::{CommandResult, InstanceReport, Placed};
use crate::state::keys;
use crate::state::records::{AssignmentRecord, DeploymentRecord};
use crate::state::rows;
use crate::state::view::Registry;

/// Phase of an instance that waits for a node.
pub const PENDING: &str = "Pending";
/// Phase of an instance given to a node whose agent has not reported on it yet.
pub const ASSIGNED: &str = "Assigned";

fn phase_for(node_id: &str) -> &'static str {
    if node_id.is_empty() { PENDING } else { ASSIGNED }
}

impl Registry {
    fn placement_changed(&mut self, index: u64, writes: &mut DataWrites) {
        self.placement_index = index;
        writes.put(keys::PLACEMENT_INDEX.to_vec(), rows::encode(&index));
    }

    fn put_assignment(&mut self, rec: AssignmentRecord, writes: &mut DataWrites) {
        writes.put(keys::assignment(&rec.instance_id), rows::encode(&rec));
        self.assignments.insert(rec.instance_id.clone(), rec);
    }

    pub(super) fn create_deployment(
        &mut self,
        deployment_id: &str,
        spec: &DeploymentRequest,
        placements: &[Placed],
        index: u64,
        now: u64,
        writes: &mut DataWrites,
    ) -> CommandResult {
        let created = CommandResult::Deployment { deployment_id: deployment_id.to_string() };
        if self.deployments.contains_key(deployment_id) {
            return created;
        }
        let rec = DeploymentRecord { deployment_id: deployment_id.to_string(), spec: spec.clone(), created_ms: now };
        writes.put(keys::deployment(deployment_id), rows::encode(&rec));
        self.deployments.insert(deployment_id.to_string(), rec);
        for p in placements {
            if self.assignments.contains_key(&p.instance_id) {
                continue;
            }
            let rec = AssignmentRecord {
                instance_id: p.instance_id.clone(),
                deployment_id: deployment_id.to_string(),
                node_id: p.node_id.clone(),
                phase: phase_for(&p.node_id).to_string(),
                port: 0,
                healthy: false,
                restarts: 0,
                exit_code: None,
                created_ms: now,
                updated_ms: now,
            };
            self.put_assignment(rec, writes);
        }
        self.placement_changed(index, writes);
        created
    }

    /// Removes the deployment and its assignments: their agents stop them.
    pub(super) fn delete_deployment(
        &mut self,
        deployment_id: &str,
        index: u64,
        writes: &mut DataWrites,
    ) -> CommandResult {
        if self.deployments.remove(deployment_id).is_none() {
            return CommandResult::NotFound;
        }
        writes.delete(keys::deployment(deployment_id));
        let ids: Vec<String> = self
            .assignments
            .values()
            .filter(|a| a.deployment_id == deployment_id)
            .map(|a| a.instance_id.clone())
            .collect();
        for id in ids {
            self.assignments.remove(&id);
            writes.delete(keys::assignment(&id));
        }
        self.placement_changed(index, writes);
        CommandResult::Done
    }

    /// Gives instances new nodes. The old node's agent no longer finds them assigned and stops
    /// them; the new one starts them.
    pub(super) fn reassign(&mut self, moves: &[Placed], index: u64, now: u64, writes: &mut DataWrites) -> usize {
        let mut count = 0;
        for m in moves {
            let Some(old) = self.assignments.get(&m.instance_id) else { continue };
            if old.node_id == m.node_id {
                continue;
            }
            let rec = AssignmentRecord {
                node_id: m.node_id.clone(),
                phase: phase_for(&m.node_id).to_string(),
                port: 0,
                healthy: false,
                exit_code: None,
                updated_ms: now,
                ..old.clone()
            };
            self.put_assignment(rec, writes);
            count += 1;
        }
        if count > 0 {
            self.placement_changed(index, writes);
        }
        count
    }

    pub(super) fn set_reschedule_pause(
        &mut self,
        pause: &Option<plum_types::ReschedulePause>,
        writes: &mut DataWrites,
    ) -> CommandResult {
        match pause {
            Some(p) => writes.put(keys::RESCHEDULE_PAUSE.to_vec(), rows::encode(p)),
            None => writes.delete(keys::RESCHEDULE_PAUSE.to_vec()),
        }
        self.reschedule_pause = pause.clone();
        CommandResult::Done
    }

    /// An agent's report. A start after an exit counts as a restart.
    pub(super) fn report_instance(
        &mut self,
        report: &InstanceReport,
        now: u64,
        writes: &mut DataWrites,
    ) -> CommandResult {
        let Some(old) = self.assignments.get(&report.instance_id) else { return CommandResult::NotFound };
        // A late report from the node an instance was moved off must not describe the new copy.
        if !report.node_id.is_empty() && report.node_id != old.node_id {
            return CommandResult::NotFound;
        }
        let restarted = report.phase == "Starting" && matches!(old.phase.as_str(), "Exited" | "Failed" | "Crashed");
        let rec = AssignmentRecord {
            phase: report.phase.clone(),
            port: report.port,
            healthy: report.healthy,
            exit_code: report.exit_code,
            restarts: old.restarts + u32::from(restarted),
            updated_ms: now,
            ..old.clone()
        };
        if rec != *old {
            self.put_assignment(rec, writes);
        }
        CommandResult::Done
    }
}
