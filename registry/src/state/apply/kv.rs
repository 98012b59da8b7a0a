//! The config KV: versioned puts with compare-and-set and request-id dedupe, deletes, batches.

use std::collections::BTreeMap;

use plum_raft_store::DataWrites;

use crate::state::command::{CommandResult, KvWrite};
use crate::state::keys;
use crate::state::records::{KvRecord, RequestRecord};
use crate::state::rows;
use crate::state::view::Registry;

/// How long a KV write's request id is remembered, so a client retry within it is applied once.
pub const REQUEST_WINDOW_MS: u64 = 10 * 60 * 1000;
/// At most this many request ids are remembered; beyond it the oldest are forgotten early.
pub const MAX_REMEMBERED_REQUESTS: usize = 100_000;
/// Versions of each key kept (deletions count): what history, diff and rollback reach.
pub const KV_HISTORY_KEEP: usize = 10;
/// How long a deleted key's history is kept (a client churning through unique keys must not
/// grow it for ever), and for how many deleted keys at most.
pub const DELETED_HISTORY_MS: u64 = 24 * 60 * 60 * 1000;
pub const MAX_DELETED_HISTORIES: usize = 100_000;

impl Registry {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn kv_put(
        &mut self,
        ns: &str,
        write: &KvWrite,
        expect_version: Option<u64>,
        request_id: Option<&str>,
        index: u64,
        now: u64,
        writes: &mut DataWrites,
    ) -> CommandResult {
        if let Some(done) = request_id.and_then(|id| self.requests.get(id))
            && done.ns == ns
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
            Some(rec) if expect_version.is_none() && rec.value == write.value && rec.kind == write.kind => rec.clone(),
            _ => self.put_kv(ns, write, index, now, writes),
        };
        if let Some(id) = request_id {
            self.remember_request(id, ns, &write.key, now, &record, writes);
        }
        CommandResult::KvWritten { record }
    }

    pub(super) fn kv_delete(
        &mut self,
        ns: &str,
        key: &str,
        expect_version: Option<u64>,
        (index, now): (u64, u64),
        writes: &mut DataWrites,
    ) -> CommandResult {
        let existing = self.kv.get(ns).and_then(|m| m.get(key));
        let current = existing.map(|r| r.version).unwrap_or(0);
        if expect_version.is_some_and(|v| v != current) {
            return CommandResult::KvConflict { current };
        }
        if let Some(old) = existing {
            let deleted = plum_types::KvVersion {
                version: old.version,
                mod_index: index,
                value: String::new(),
                kind: old.kind,
                updated_ms: now,
                deleted: true,
            };
            self.record_version(ns, key, deleted, writes);
            if let Some(map) = self.kv.get_mut(ns) {
                map.remove(key);
                if map.is_empty() {
                    self.kv.remove(ns);
                }
            }
            writes.delete(keys::kv(ns, key));
            self.kv_deleted.insert(ns.to_string(), index);
            writes.put(keys::kv_deleted(ns), rows::encode(&index));
        }
        CommandResult::Done
    }

    /// All or nothing by construction (one entry). The last write of a key in the batch wins;
    /// comparing each key's final value with the stored one makes a retried batch change nothing.
    pub(super) fn kv_batch(
        &mut self,
        ns: &str,
        items: &[KvWrite],
        index: u64,
        now: u64,
        writes: &mut DataWrites,
    ) -> CommandResult {
        let mut last: BTreeMap<&str, &KvWrite> = BTreeMap::new();
        for w in items {
            last.insert(w.key.as_str(), w);
        }
        for w in last.into_values() {
            let unchanged =
                self.kv.get(ns).and_then(|m| m.get(&w.key)).is_some_and(|r| r.value == w.value && r.kind == w.kind);
            if !unchanged {
                self.put_kv(ns, w, index, now, writes);
            }
        }
        CommandResult::Changed { count: items.len() }
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
        writes.put(keys::request(id), rows::encode(&rec));
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
    pub(super) fn forget_requests_before(&mut self, cutoff_ms: u64, writes: &mut DataWrites) {
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
        writes.put(keys::kv(ns, &w.key), rows::encode(&record));
        map.insert(w.key.clone(), record.clone());
        let version = plum_types::KvVersion {
            version,
            mod_index: index,
            value: w.value.clone(),
            kind: w.kind,
            updated_ms: now,
            deleted: false,
        };
        self.record_version(ns, &w.key, version, writes);
        record
    }

    /// Forgets the history of keys deleted before `cutoff_ms` (leader time). Usually looks at
    /// one entry and stops.
    pub(super) fn forget_deleted_history_before(&mut self, cutoff_ms: u64, writes: &mut DataWrites) {
        while self.kv_deleted_history.first().is_some_and(|(at, _, _)| *at < cutoff_ms) {
            let Some((_, ns, key)) = self.kv_deleted_history.pop_first() else { break };
            self.forget_history(&ns, &key, writes);
        }
    }

    fn forget_history(&mut self, ns: &str, key: &str, writes: &mut DataWrites) {
        for index in self.kv_history.remove(&(ns.to_string(), key.to_string())).into_iter().flat_map(|v| v.into_keys())
        {
            writes.delete(keys::kv_history(ns, key, index));
        }
    }

    /// Keeps `v` in the key's history, forgetting its oldest versions beyond the limit, and
    /// keeps the index of deleted keys' histories: a deletion enters it (bounded), a key made
    /// again leaves it.
    fn record_version(&mut self, ns: &str, key: &str, v: plum_types::KvVersion, writes: &mut DataWrites) {
        writes.put(keys::kv_history(ns, key, v.mod_index), rows::encode(&v));
        let deleted = v.deleted.then_some(v.updated_ms);
        let versions = self.kv_history.entry((ns.to_string(), key.to_string())).or_default();
        let was_deleted = versions.values().next_back().filter(|last| last.deleted).map(|last| last.updated_ms);
        versions.insert(v.mod_index, v);
        while versions.len() > KV_HISTORY_KEEP {
            let Some((oldest, _)) = versions.pop_first() else { break };
            writes.delete(keys::kv_history(ns, key, oldest));
        }
        if let Some(at) = was_deleted {
            self.kv_deleted_history.remove(&(at, ns.to_string(), key.to_string()));
        }
        if let Some(at) = deleted {
            self.kv_deleted_history.insert((at, ns.to_string(), key.to_string()));
            while self.kv_deleted_history.len() > MAX_DELETED_HISTORIES {
                let Some((_, ns, key)) = self.kv_deleted_history.pop_first() else { break };
                self.forget_history(&ns, &key, writes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use plum_raft_store::{DataOp, DataWrites};
    use plum_types::KvType;

    use crate::state::{Command, KvWrite, Op, Registry};

    use super::KV_HISTORY_KEEP;

    /// Applies `ops` one per index, keeping every row written as RocksDB would.
    fn run(ops: Vec<Op>) -> (Registry, BTreeMap<Vec<u8>, Vec<u8>>) {
        let mut r = Registry::default();
        let mut rows = BTreeMap::new();
        for op in ops {
            let index = r.applied_index() + 1;
            let mut writes = DataWrites::default();
            r.apply(index, &Command { now_ms: 1_000 * index, op }, &mut writes);
            for w in writes.into_ops() {
                match w {
                    DataOp::Put(k, v) => rows.insert(k, v),
                    DataOp::Delete(k) => rows.remove(&k),
                };
            }
        }
        (r, rows)
    }

    fn put(value: &str) -> Op {
        let write = KvWrite { key: "url".into(), value: value.into(), kind: KvType::String };
        Op::KvPut { ns: "prod".into(), write, expect_version: None, request_id: None }
    }

    #[test]
    fn history_keeps_the_newest_versions_and_deletions_and_survives_a_rebuild() {
        let mut ops: Vec<Op> = (1..=12).map(|n| put(&format!("v{n}"))).collect();
        ops.push(Op::KvDelete { ns: "prod".into(), key: "url".into(), expect_version: None });
        ops.push(put("again"));
        let (r, rows) = run(ops);
        let history = r.kv_history("prod", "url");
        assert_eq!(history.len(), KV_HISTORY_KEEP);
        let newest: Vec<(u64, &str, bool)> =
            history.iter().take(3).map(|v| (v.version, v.value.as_str(), v.deleted)).collect();
        assert_eq!(newest, [(1, "again", false), (12, "", true), (12, "v12", false)]);
        assert_eq!(history.last().map(|v| v.value.as_str()), Some("v5"), "older ones forgotten");
        let mod_indexes: Vec<u64> = history.iter().map(|v| v.mod_index).collect();
        assert!(mod_indexes.windows(2).all(|w| w[0] > w[1]), "newest first, unique: {mod_indexes:?}");
        let mut from_rows = rows.into_iter();
        let rebuilt = Registry::from_rows(r.applied_index(), &mut from_rows).expect("rows decode");
        assert_eq!(rebuilt.kv_history("prod", "url"), history, "forgotten versions left no rows behind");
    }

    #[test]
    fn a_deleted_keys_history_is_forgotten_after_a_day_unless_it_is_made_again() {
        let del = |key: &str| Op::KvDelete { ns: "prod".into(), key: key.into(), expect_version: None };
        let put_key = |key: &str| {
            let write = KvWrite { key: key.into(), value: "v".into(), kind: KvType::String };
            Op::KvPut { ns: "prod".into(), write, expect_version: None, request_id: None }
        };
        let (mut r, mut rows) = run(vec![put_key("gone"), del("gone"), put_key("back"), del("back"), put_key("back")]);
        assert!(!r.kv_history("prod", "gone").is_empty(), "kept for a while after the deletion");
        // A day later any entry forgets it; the key made again keeps its history.
        let index = r.applied_index() + 1;
        let mut writes = DataWrites::default();
        let later = Command { now_ms: 10_000 + super::DELETED_HISTORY_MS, op: put("other") };
        r.apply(index, &later, &mut writes);
        for w in writes.into_ops() {
            match w {
                DataOp::Put(k, v) => rows.insert(k, v),
                DataOp::Delete(k) => rows.remove(&k),
            };
        }
        assert!(r.kv_history("prod", "gone").is_empty());
        assert_eq!(r.kv_history("prod", "back").len(), 3, "written, deleted, written again");
        let rebuilt = Registry::from_rows(r.applied_index(), &mut rows.into_iter()).expect("rows decode");
        assert_eq!(rebuilt, r, "the rows hold exactly what the view does");
    }
}
