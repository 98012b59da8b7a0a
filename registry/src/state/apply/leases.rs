//! Heartbeat leases: nodes and instances follow the same renewal and expiry rules.

use plum_raft_store::DataWrites;

use crate::state::command::CommandResult;
use crate::state::records::{InstanceRecord, NodeRecord};
use crate::state::view::Registry;

/// Something with a heartbeat lease.
pub(super) trait Leased {
    fn lease(&mut self) -> (&mut u64, &mut bool);
}

impl Leased for NodeRecord {
    fn lease(&mut self) -> (&mut u64, &mut bool) {
        (&mut self.last_seen_ms, &mut self.alive)
    }
}

impl Leased for InstanceRecord {
    fn lease(&mut self) -> (&mut u64, &mut bool) {
        (&mut self.last_seen_ms, &mut self.alive)
    }
}

/// A heartbeat seen at `seen`: last-seen only moves forward, and any heartbeat revives.
/// Returns whether the record changed.
fn renew_one(rec: &mut impl Leased, seen: u64) -> bool {
    let (last_seen, alive) = rec.lease();
    if *last_seen >= seen && *alive {
        return false;
    }
    *last_seen = (*last_seen).max(seen);
    *alive = true;
    true
}

/// The leader's verdict "silent since `seen`": applies only if no newer heartbeat reached the
/// log meanwhile. Returns whether the record changed.
fn expire_one(rec: &mut impl Leased, seen: u64) -> bool {
    let (last_seen, alive) = rec.lease();
    if !*alive || *last_seen > seen {
        return false;
    }
    *alive = false;
    true
}

/// Where records of one kind live, so renewal and expiry are written once for both kinds.
struct Table<R> {
    get: fn(&Registry, &str) -> Option<R>,
    put: fn(&mut Registry, R, &mut DataWrites),
}

const NODES: Table<NodeRecord> = Table { get: |r, id| r.nodes.get(id).cloned(), put: Registry::put_node };
const INSTANCES: Table<InstanceRecord> =
    Table { get: |r, id| r.instances.get(id).cloned(), put: Registry::put_instance };

impl Registry {
    /// Applies `rule` to every listed record; returns how many changed.
    fn change_each<R>(
        &mut self,
        table: &Table<R>,
        list: &[(String, u64)],
        rule: fn(&mut R, u64) -> bool,
        writes: &mut DataWrites,
    ) -> usize {
        let mut count = 0;
        for (id, seen) in list {
            if let Some(mut rec) = (table.get)(self, id)
                && rule(&mut rec, *seen)
            {
                (table.put)(self, rec, writes);
                count += 1;
            }
        }
        count
    }

    pub(super) fn renew(
        &mut self,
        nodes: &[(String, u64)],
        instances: &[(String, u64)],
        writes: &mut DataWrites,
    ) -> CommandResult {
        let count = self.change_each(&NODES, nodes, renew_one, writes)
            + self.change_each(&INSTANCES, instances, renew_one, writes);
        CommandResult::Changed { count }
    }

    pub(super) fn expire_nodes(&mut self, nodes: &[(String, u64)], writes: &mut DataWrites) -> CommandResult {
        let count = self.change_each(&NODES, nodes, expire_one, writes);
        self.counters.nodes_expired += count as u64;
        CommandResult::Changed { count }
    }

    pub(super) fn expire_instances(&mut self, instances: &[(String, u64)], writes: &mut DataWrites) -> CommandResult {
        CommandResult::Changed { count: self.change_each(&INSTANCES, instances, expire_one, writes) }
    }
}
