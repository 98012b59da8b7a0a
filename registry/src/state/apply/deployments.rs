//! Deployments and their instances' assignments: create, delete, move, and agents' reports.
//! Placement was decided by the leader before proposing; apply records it as given.

use plum_raft_store::DataWrites;
use plum_types::DeploymentRequest;

use crate::state::command::{CommandResult, InstanceReport, Placed, Takeover};
use crate::state::deps;
use crate::state::keys;
use crate::state::records::{AssignmentRecord, DeploymentRecord};
use crate::state::rows;
use crate::state::view::Registry;

/// Phase of an instance that waits for a node.
pub const PENDING: &str = "Pending";
/// Phase of an instance given to a node whose agent has not reported on it yet.
pub const ASSIGNED: &str = "Assigned";
/// Rolling-update states of a deployment.
pub const ROLLOUT_IN_PROGRESS: &str = "InProgress";
pub const ROLLOUT_DONE: &str = "Done";

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
        placements: (&[Placed], &[Placed]),
        index: u64,
        now: u64,
        writes: &mut DataWrites,
    ) -> CommandResult {
        let (placements, standby) = placements;
        let created = CommandResult::Deployment { deployment_id: deployment_id.to_string() };
        if self.deployments.contains_key(deployment_id) {
            return created;
        }
        if let Some(refused) = self.cycle_refusal(deployment_id, spec) {
            return refused;
        }
        let rec = DeploymentRecord {
            deployment_id: deployment_id.to_string(),
            spec: spec.clone(),
            created_ms: now,
            generation: 1,
            previous: None,
            rollout: String::new(),
            rollback: None,
            config_stamp: deps::config_stamp(self, spec),
        };
        writes.put(keys::deployment(deployment_id), rows::encode(&rec));
        self.deployments.insert(deployment_id.to_string(), rec);
        for p in placements {
            self.add_instance(deployment_id, p, 1, now, writes);
        }
        for p in standby {
            self.add_instance(deployment_id, p, 1, now, writes);
            self.mark_standby(&p.instance_id, writes);
        }
        self.placement_changed(index, writes);
        created
    }

    /// A dependency cycle `spec` would close is refused by the entry itself: checked on the
    /// leader's view before proposing too, but two racing requests could each pass that.
    fn cycle_refusal(&self, deployment_id: &str, spec: &DeploymentRequest) -> Option<CommandResult> {
        let cycle = deps::cycle_with(self, deployment_id, spec)?;
        Some(CommandResult::Invalid { reason: format!("dependency cycle: {}", cycle.join(" -> ")) })
    }

    /// Deployments that need `deployment_id`'s service, unless `force`: the refusal of a stop.
    fn needed_refusal(&self, deployment_id: &str, force: bool) -> Option<CommandResult> {
        let by = deps::needed_by(self, deployment_id);
        if force || by.is_empty() {
            return None;
        }
        let service = self.deployments.get(deployment_id).map(|d| deps::provides(&d.spec).to_string())?;
        Some(CommandResult::Needed { service, by })
    }

    fn mark_standby(&mut self, instance_id: &str, writes: &mut DataWrites) {
        if let Some(a) = self.assignments.get(instance_id).filter(|a| !a.standby).cloned() {
            self.put_assignment(AssignmentRecord { standby: true, ..a }, writes);
        }
    }

    /// Warm standbys take over: each becomes active, its endpoints healthy (so in discovery
    /// from this entry on), and the instance it replaces becomes a standby (to be moved to a
    /// live node by the same entry's moves).
    pub(super) fn take_over(&mut self, takeovers: &[Takeover], writes: &mut DataWrites) {
        for t in takeovers {
            let (Some(standby), Some(replaced)) = (self.assignments.get(&t.standby), self.assignments.get(&t.replaces))
            else {
                continue;
            };
            if !standby.standby || replaced.standby {
                continue;
            }
            let (standby, replaced) = (standby.clone(), replaced.clone());
            self.put_assignment(AssignmentRecord { standby: false, ..standby }, writes);
            self.put_assignment(AssignmentRecord { standby: true, ..replaced }, writes);
            if let Some(mut inst) = self.instances.get(&t.standby).cloned() {
                inst.endpoints.iter_mut().for_each(|e| e.healthy = true);
                self.put_instance(inst, writes);
            }
        }
    }

    /// A new instance of `deployment_id` running `generation`, on the node placed for it.
    fn add_instance(&mut self, deployment_id: &str, p: &Placed, generation: u64, now: u64, writes: &mut DataWrites) {
        if self.assignments.contains_key(&p.instance_id) {
            return;
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
            generation,
            standby: false,
        };
        self.put_assignment(rec, writes);
    }

    fn remove_assignment(&mut self, instance_id: &str, writes: &mut DataWrites) {
        if self.assignments.remove(instance_id).is_some() {
            writes.delete(keys::assignment(instance_id));
        }
    }

    fn put_deployment(&mut self, rec: DeploymentRecord, writes: &mut DataWrites) {
        writes.put(keys::deployment(&rec.deployment_id), rows::encode(&rec));
        self.deployments.insert(rec.deployment_id.clone(), rec);
    }

    /// A new spec: the next generation; a rolling update to it starts (the leader drives it).
    /// Refused while another one is in progress. `in_place`: the spec is replaced and nothing
    /// restarts (only controller-side fields changed).
    pub(super) fn update_deployment(
        &mut self,
        deployment_id: &str,
        spec: &DeploymentRequest,
        in_place: bool,
        writes: &mut DataWrites,
    ) -> CommandResult {
        let Some(old) = self.deployments.get(deployment_id) else { return CommandResult::NotFound };
        if let Some(refused) = self.cycle_refusal(deployment_id, spec) {
            return refused;
        }
        if in_place {
            let rec = DeploymentRecord {
                spec: DeploymentRequest { replicas: old.spec.replicas, ..spec.clone() },
                ..old.clone()
            };
            self.put_deployment(rec, writes);
            return CommandResult::Done;
        }
        if old.rollout == ROLLOUT_IN_PROGRESS {
            return CommandResult::Busy { reason: "a rolling update is in progress".into() };
        }
        let rec = DeploymentRecord {
            spec: DeploymentRequest { replicas: old.spec.replicas, ..spec.clone() },
            previous: Some(old.spec.clone()),
            rollback: Some(old.spec.clone()),
            generation: old.generation.max(1) + 1,
            rollout: ROLLOUT_IN_PROGRESS.to_string(),
            config_stamp: deps::config_stamp(self, spec),
            ..old.clone()
        };
        self.put_deployment(rec, writes);
        CommandResult::Done
    }

    /// A config key the deployment references changed since its current generation started:
    /// the next generation, same spec, rolled like an update (one instance at a time). Nothing
    /// when the keys are as recorded (a repeated entry), `Busy` while an update runs.
    pub(super) fn roll_config(&mut self, deployment_id: &str, writes: &mut DataWrites) -> CommandResult {
        let Some(old) = self.deployments.get(deployment_id) else { return CommandResult::NotFound };
        let stamp = deps::config_stamp(self, &old.spec);
        if stamp == old.config_stamp || stamp.values().any(|index| *index == 0) {
            // Nothing changed, or a key is gone (new instances could not start): no roll.
            return CommandResult::Changed { count: 0 };
        }
        if old.rollout == ROLLOUT_IN_PROGRESS {
            return CommandResult::Busy { reason: "a rolling update is in progress".into() };
        }
        let started = self.assignments.values().any(|a| a.deployment_id == deployment_id && !a.node_id.is_empty());
        if !started {
            // Nothing runs yet: its instances read the new values when they start.
            let rec = DeploymentRecord { config_stamp: stamp, ..old.clone() };
            self.put_deployment(rec, writes);
            return CommandResult::Changed { count: 0 };
        }
        let rec = DeploymentRecord {
            previous: Some(old.spec.clone()),
            generation: old.generation.max(1) + 1,
            rollout: ROLLOUT_IN_PROGRESS.to_string(),
            config_stamp: stamp,
            ..old.clone()
        };
        self.put_deployment(rec, writes);
        CommandResult::Changed { count: 1 }
    }

    pub(super) fn scale_deployment(
        &mut self,
        deployment_id: &str,
        (replicas, force): (u32, bool),
        change: (&[Placed], &[String]),
        index: u64,
        now: u64,
        writes: &mut DataWrites,
    ) -> CommandResult {
        if replicas == 0
            && let Some(refused) = self.needed_refusal(deployment_id, force)
        {
            return refused;
        }
        let Some(old) = self.deployments.get(deployment_id) else { return CommandResult::NotFound };
        let generation = old.generation.max(1);
        let rec = DeploymentRecord { spec: DeploymentRequest { replicas, ..old.spec.clone() }, ..old.clone() };
        self.put_deployment(rec, writes);
        let (add, remove) = change;
        for id in remove {
            self.remove_assignment(id, writes);
        }
        for p in add {
            self.add_instance(deployment_id, p, generation, now, writes);
        }
        self.placement_changed(index, writes);
        CommandResult::Done
    }

    pub(super) fn rollout_step(
        &mut self,
        deployment_id: &str,
        step: (Option<&str>, Option<&Placed>, Option<&str>),
        add_standby: bool,
        index: u64,
        now: u64,
        writes: &mut DataWrites,
    ) -> CommandResult {
        let Some(old) = self.deployments.get(deployment_id) else { return CommandResult::NotFound };
        if old.rollout != ROLLOUT_IN_PROGRESS {
            return CommandResult::Busy { reason: "no rolling update in progress".into() };
        }
        let generation = old.generation.max(1);
        let (remove, add, outcome) = step;
        if let Some(outcome) = outcome {
            let done = outcome == ROLLOUT_DONE;
            let rec = DeploymentRecord {
                rollout: outcome.to_string(),
                // Older instances keep their spec after a failed update; none are left after a done one.
                previous: if done { None } else { old.previous.clone() },
                ..old.clone()
            };
            self.put_deployment(rec, writes);
        }
        if let Some(id) = remove {
            self.remove_assignment(id, writes);
        }
        if let Some(p) = add {
            self.add_instance(deployment_id, p, generation, now, writes);
            if add_standby {
                self.mark_standby(&p.instance_id, writes);
            }
        }
        if remove.is_some() || add.is_some() {
            self.placement_changed(index, writes);
        }
        CommandResult::Done
    }

    /// Removes the deployment and its assignments: their agents stop them.
    pub(super) fn delete_deployment(
        &mut self,
        deployment_id: &str,
        force: bool,
        index: u64,
        writes: &mut DataWrites,
    ) -> CommandResult {
        if let Some(refused) = self.needed_refusal(deployment_id, force) {
            return refused;
        }
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
            self.remove_assignment(&id, writes);
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
