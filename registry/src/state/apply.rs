//! Deterministic apply: the only code that changes the registry.

use std::collections::BTreeMap;

use plum_raft_store::DataWrites;
use serde::Serialize;

use super::command::{Command, CommandResult, KvWrite, Op};
use super::keys;
use super::records::{InstanceRecord, KvRecord, NodeRecord, RequestRecord};
use super::view::Registry;

/// How long a KV write's request id is remembered, so a client retry within it is applied once.
pub const REQUEST_WINDOW_MS: u64 = 10 * 60 * 1000;
/// At most this many request ids are remembered; beyond it the oldest are forgotten early.
pub const MAX_REMEMBERED_REQUESTS: usize = 100_000;

/// Something with a heartbeat lease: nodes and instances follow the same liveness rules.
trait Leased {
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
fn renew(rec: &mut impl Leased, seen: u64) -> bool {
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
fn expire(rec: &mut impl Leased, seen: u64) -> bool {
    let (last_seen, alive) = rec.lease();
    if !*alive || *last_seen > seen {
        return false;
    }
    *alive = false;
    true
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Records are plain structs of strings, integers and maps: encoding cannot fail.
    rmp_serde::to_vec(value).expect("registry records always encode")
}

impl Registry {
    /// Applies `cmd`, committed at log `index`, to the view and stages its durable rows.
    pub fn apply(&mut self, index: u64, cmd: &Command, writes: &mut DataWrites) -> CommandResult {
        self.applied_index = index;
        let now = cmd.now_ms;
        self.forget_requests_before(now.saturating_sub(REQUEST_WINDOW_MS), writes);
        match &cmd.op {
            Op::UpsertNode { node_id, ip, labels, can_run } => {
                let registered_ms = self.nodes.get(node_id).map(|n| n.registered_ms).unwrap_or(now);
                let last_seen_ms = self.nodes.get(node_id).map(|n| n.last_seen_ms.max(now)).unwrap_or(now);
                let rec = NodeRecord {
                    node_id: node_id.clone(),
                    ip: ip.clone(),
                    labels: labels.clone(),
                    can_run: *can_run,
                    alive: true,
                    last_seen_ms,
                    registered_ms,
                };
                self.put_node(rec, writes);
                CommandResult::Done
            }
            Op::Renew { nodes, instances } => {
                let mut count = 0;
                for (id, seen) in nodes {
                    if let Some(mut rec) = self.nodes.get(id).cloned()
                        && renew(&mut rec, *seen)
                    {
                        self.put_node(rec, writes);
                        count += 1;
                    }
                }
                for (id, seen) in instances {
                    if let Some(mut rec) = self.instances.get(id).cloned()
                        && renew(&mut rec, *seen)
                    {
                        self.put_instance(rec, writes);
                        count += 1;
                    }
                }
                CommandResult::Changed { count }
            }
            Op::ExpireNodes { nodes } => {
                let mut count = 0;
                for (id, seen) in nodes {
                    if let Some(mut rec) = self.nodes.get(id).cloned()
                        && expire(&mut rec, *seen)
                    {
                        self.put_node(rec, writes);
                        count += 1;
                    }
                }
                CommandResult::Changed { count }
            }
            Op::ExpireInstances { instances } => {
                let mut count = 0;
                for (id, seen) in instances {
                    if let Some(mut rec) = self.instances.get(id).cloned()
                        && expire(&mut rec, *seen)
                    {
                        self.put_instance(rec, writes);
                        count += 1;
                    }
                }
                CommandResult::Changed { count }
            }
            Op::DeleteNode { node_id } => {
                let busy: Vec<String> =
                    self.instances.values().filter(|i| &i.node_id == node_id).map(|i| i.instance_id.clone()).collect();
                if !busy.is_empty() {
                    return CommandResult::NodeBusy { instances: busy };
                }
                if self.nodes.remove(node_id).is_some() {
                    writes.delete(keys::node(node_id));
                }
                CommandResult::Done
            }
            Op::RegisterInstance { instance_id, node_id, ip, endpoints } => {
                let registered_ms = self.instances.get(instance_id).map(|i| i.registered_ms).unwrap_or(now);
                let last_seen_ms = self.instances.get(instance_id).map(|i| i.last_seen_ms.max(now)).unwrap_or(now);
                let rec = InstanceRecord {
                    instance_id: instance_id.clone(),
                    node_id: node_id.clone(),
                    ip: ip.clone(),
                    endpoints: endpoints.clone(),
                    alive: true,
                    last_seen_ms,
                    registered_ms,
                };
                self.put_instance(rec, writes);
                CommandResult::Done
            }
            Op::SetHealth { instance_id, reports } => {
                let Some(mut rec) = self.instances.get(instance_id).cloned() else {
                    return CommandResult::Changed { count: 0 };
                };
                for report in reports {
                    for ep in rec
                        .endpoints
                        .iter_mut()
                        .filter(|ep| ep.service_name == report.service_name && report.port.is_none_or(|p| p == ep.port))
                    {
                        ep.healthy = report.healthy;
                    }
                }
                rec.alive = true;
                rec.last_seen_ms = rec.last_seen_ms.max(now);
                self.put_instance(rec, writes);
                CommandResult::Changed { count: 1 }
            }
            Op::DeregisterInstance { instance_id } => {
                if let Some(old) = self.instances.remove(instance_id) {
                    self.unindex_instance(&old);
                    writes.delete(keys::instance(instance_id));
                }
                CommandResult::Done
            }
            Op::KvPut { ns, write, expect_version, request_id } => {
                if let Some(done) = request_id.as_ref().and_then(|id| self.requests.get(id))
                    && done.ns == *ns
                    && done.key == write.key
                {
                    // A retry of a write that already committed: answer as the first time.
                    return CommandResult::KvWritten { record: done.result(&write.value) };
                }
                let existing = self.kv.get(ns).and_then(|m| m.get(&write.key));
                let current = existing.map(|r| r.version).unwrap_or(0);
                if expect_version.is_some_and(|v| v != current) {
                    return CommandResult::KvConflict { current };
                }
                let record = match existing {
                    // Same value again: nothing changes, so a retry is harmless.
                    Some(rec) if expect_version.is_none() && rec.value == write.value && rec.kind == write.kind => {
                        rec.clone()
                    }
                    _ => self.put_kv(ns, write, index, now, writes),
                };
                if let Some(id) = request_id {
                    self.remember_request(id, ns, &write.key, now, &record, writes);
                }
                CommandResult::KvWritten { record }
            }
            Op::KvDelete { ns, key, expect_version } => {
                let current = self.kv.get(ns).and_then(|m| m.get(key)).map(|r| r.version).unwrap_or(0);
                if expect_version.is_some_and(|v| v != current) {
                    return CommandResult::KvConflict { current };
                }
                if current > 0 {
                    if let Some(map) = self.kv.get_mut(ns) {
                        map.remove(key);
                        if map.is_empty() {
                            self.kv.remove(ns);
                        }
                    }
                    writes.delete(keys::kv(ns, key));
                    self.kv_deleted.insert(ns.clone(), index);
                    writes.put(keys::kv_deleted(ns), encode(&index));
                }
                CommandResult::Done
            }
            Op::KvBatch { ns, writes: items } => {
                // The last write of a key in the batch wins; comparing each key's final value
                // with the stored one makes a retried batch change nothing.
                let mut last: BTreeMap<&str, &KvWrite> = BTreeMap::new();
                for w in items {
                    last.insert(w.key.as_str(), w);
                }
                for w in last.into_values() {
                    let unchanged = self
                        .kv
                        .get(ns)
                        .and_then(|m| m.get(&w.key))
                        .is_some_and(|r| r.value == w.value && r.kind == w.kind);
                    if !unchanged {
                        self.put_kv(ns, w, index, now, writes);
                    }
                }
                CommandResult::Changed { count: items.len() }
            }
        }
    }

    fn put_node(&mut self, rec: NodeRecord, writes: &mut DataWrites) {
        writes.put(keys::node(&rec.node_id), encode(&rec));
        self.nodes.insert(rec.node_id.clone(), rec);
    }

    fn put_instance(&mut self, rec: InstanceRecord, writes: &mut DataWrites) {
        writes.put(keys::instance(&rec.instance_id), encode(&rec));
        if let Some(old) = self.instances.remove(&rec.instance_id) {
            self.unindex_instance(&old);
        }
        self.index_instance(&rec);
        self.instances.insert(rec.instance_id.clone(), rec);
    }

    fn remember_request(
        &mut self,
        id: &str,
        ns: &str,
        key: &str,
        now: u64,
        result: &KvRecord,
        writes: &mut DataWrites,
    ) {
        let rec = RequestRecord {
            at_ms: now,
            ns: ns.to_string(),
            key: key.to_string(),
            kind: result.kind,
            updated_ms: result.updated_ms,
            version: result.version,
            create_index: result.create_index,
            mod_index: result.mod_index,
        };
        if let Some(old) = self.requests.insert(id.to_string(), rec.clone()) {
            self.requests_by_time.remove(&(old.at_ms, id.to_string()));
        }
        writes.put(keys::request(id), encode(&rec));
        self.requests_by_time.insert((now, id.to_string()));
        // Bounded however fast ids arrive: the oldest go first.
        while self.requests.len() > MAX_REMEMBERED_REQUESTS {
            let Some((_, oldest)) = self.requests_by_time.pop_first() else { break };
            self.requests.remove(&oldest);
            writes.delete(keys::request(&oldest));
        }
    }

    /// Forgets request ids recorded before `cutoff_ms` (leader time, so every replica agrees).
    /// Runs on every command; usually it looks at one entry and stops.
    fn forget_requests_before(&mut self, cutoff_ms: u64, writes: &mut DataWrites) {
        while self.requests_by_time.first().is_some_and(|(at, _)| *at < cutoff_ms) {
            let Some((_, id)) = self.requests_by_time.pop_first() else { break };
            self.requests.remove(&id);
            writes.delete(keys::request(&id));
        }
    }

    fn put_kv(&mut self, ns: &str, w: &KvWrite, index: u64, now: u64, writes: &mut DataWrites) -> KvRecord {
        let map = self.kv.entry(ns.to_string()).or_default();
        let (version, create_index) = map.get(&w.key).map(|r| (r.version + 1, r.create_index)).unwrap_or((1, index));
        let record =
            KvRecord { value: w.value.clone(), kind: w.kind, updated_ms: now, version, create_index, mod_index: index };
        writes.put(keys::kv(ns, &w.key), encode(&record));
        map.insert(w.key.clone(), record.clone());
        record
    }
}
