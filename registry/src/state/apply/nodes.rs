//! Nodes: registration (and revival, and changes of what is known of them), deletion.

use std::collections::BTreeMap;

use plum_raft_store::DataWrites;

use crate::state::command::CommandResult;
use crate::state::keys;
use crate::state::records::NodeRecord;
use crate::state::view::Registry;

/// The fields of an `UpsertNode` command.
pub(super) struct NodeUpsert<'a> {
    pub node_id: &'a str,
    pub ip: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub can_run: bool,
    pub ttl_ms: u64,
    pub capacity: u32,
}

impl Registry {
    pub(super) fn upsert_node(&mut self, up: NodeUpsert<'_>, now: u64, writes: &mut DataWrites) -> CommandResult {
        let old = self.nodes.get(up.node_id);
        let rec = NodeRecord {
            node_id: up.node_id.to_string(),
            ip: up.ip.to_string(),
            labels: up.labels.clone(),
            can_run: up.can_run,
            alive: true,
            last_seen_ms: old.map(|n| n.last_seen_ms.max(now)).unwrap_or(now),
            registered_ms: old.map(|n| n.registered_ms).unwrap_or(now),
            ttl_ms: up.ttl_ms,
            capacity: up.capacity,
        };
        self.put_node(rec, writes);
        CommandResult::Done
    }

    /// Refused while instances are registered on the node or assigned to it.
    pub(super) fn delete_node(&mut self, node_id: &str, writes: &mut DataWrites) -> CommandResult {
        let registered = self.instances.values().filter(|i| i.node_id == node_id).map(|i| &i.instance_id);
        let assigned = self.assignments.values().filter(|a| a.node_id == node_id).map(|a| &a.instance_id);
        let busy: Vec<String> = registered.chain(assigned).cloned().collect();
        if !busy.is_empty() {
            return CommandResult::NodeBusy { instances: busy };
        }
        if self.nodes.remove(node_id).is_some() {
            writes.delete(keys::node(node_id));
        }
        CommandResult::Done
    }
}
