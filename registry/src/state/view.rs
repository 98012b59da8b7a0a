//! The in-memory view: what every read is served from.

use std::collections::{BTreeMap, BTreeSet};

use plum_types::{AssignmentItem, DeploymentInfo, Endpoint, InstanceInfo, KvItem, NodeDetail, NodeHealth, NodeSummary};

use super::records::{
    AssignmentRecord, DeploymentRecord, InstanceRecord, KvRecord, NodeRecord, RequestRecord, TokenRecord,
};
use super::{keys, rows};

/// Phase shown for an instance without a node whose deployment's dependencies do not hold.
pub const WAITING: &str = "Waiting";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Registry {
    pub(crate) nodes: BTreeMap<String, NodeRecord>,
    pub(crate) instances: BTreeMap<String, InstanceRecord>,
    /// service name -> ids of instances with an endpoint of it. Derived from `instances`.
    pub(crate) by_service: BTreeMap<String, BTreeSet<String>>,
    /// node id -> ids of instances registered on it. Derived from `instances`.
    pub(crate) by_node: BTreeMap<String, BTreeSet<String>>,
    pub(crate) discovery: DiscoveryChanges,
    pub(crate) kv: BTreeMap<String, BTreeMap<String, KvRecord>>,
    /// namespace -> log index of its last deletion (watches wake on it).
    pub(crate) kv_deleted: BTreeMap<String, u64>,
    /// (client service, service it discovered) -> when last reported (leader time, ms).
    pub(crate) observed: BTreeMap<(String, String), u64>,
    /// (namespace, key) -> its recent versions by log index, deletions included.
    pub(crate) kv_history: BTreeMap<(String, String), BTreeMap<u64, plum_types::KvVersion>>,
    /// (deleted at, namespace, key) of keys whose last version is a deletion, oldest first:
    /// their history is forgotten after a while. Derived from `kv_history`.
    pub(crate) kv_deleted_history: BTreeSet<(u64, String, String)>,
    /// Recent request ids of KV writes, and the same ordered by time (derived) for expiry.
    pub(crate) requests: BTreeMap<String, RequestRecord>,
    pub(crate) requests_by_time: BTreeSet<(u64, String)>,
    pub(crate) deployments: BTreeMap<String, DeploymentRecord>,
    /// Instances of deployments, by instance id.
    pub(crate) assignments: BTreeMap<String, AssignmentRecord>,
    /// Log index of the last change to which instances are assigned where (agents' watches
    /// wake on it; agents' own status reports do not move it).
    pub(crate) placement_index: u64,
    /// Set while rescheduling is paused after a mass loss of nodes.
    pub(crate) reschedule_pause: Option<plum_types::ReschedulePause>,
    /// Client tokens by id, and whether the bootstrap admin token was ever recorded.
    pub(crate) tokens: BTreeMap<String, TokenRecord>,
    pub(crate) tokens_bootstrapped: bool,
    pub(crate) counters: Counters,
    pub(crate) applied_index: u64,
}

/// Counts of what this replica applied since it loaded its state, for benchmarks and
/// operators (a spurious expiry must not pass unnoticed). Not state: replicas that loaded at
/// different times count differently, so it takes no part in comparing registries.
#[derive(Debug, Default, Clone)]
pub(crate) struct Counters {
    pub(crate) nodes_expired: u64,
}

impl PartialEq for Counters {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Counters {}

/// When each service's discovery answer last changed, for discovery watches. Kept in memory
/// only: a replica that (re)loads its state counts every service as changed at the index it
/// loaded (`base`), so a watcher may wake once for nothing but never misses a change. Replicas
/// differ in it legitimately (it depends on when each loaded), so it takes no part in comparing
/// registries: the state is the same.
#[derive(Debug, Default, Clone)]
pub(crate) struct DiscoveryChanges {
    pub(crate) per_service: BTreeMap<String, u64>,
    pub(crate) any: u64,
    pub(crate) base: u64,
}

impl DiscoveryChanges {
    /// `service`'s answer changes at `index`.
    pub(crate) fn mark(&mut self, service: &str, index: u64) {
        match self.per_service.get_mut(service) {
            Some(at) => *at = index,
            None => {
                self.per_service.insert(service.to_string(), index);
            }
        }
        self.any = index;
    }

    /// The answers of every service with an endpoint of `inst` change at `index`.
    pub(crate) fn mark_instance(&mut self, inst: &InstanceRecord, index: u64) {
        inst.endpoints.iter().for_each(|ep| self.mark(&ep.service_name, index));
    }
}

impl PartialEq for DiscoveryChanges {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for DiscoveryChanges {}

fn secs(ms: u64) -> u64 {
    ms / 1000
}

fn health(alive: bool) -> NodeHealth {
    if alive { NodeHealth::Healthy } else { NodeHealth::Unhealthy }
}

impl Registry {
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub fn nodes(&self) -> Vec<NodeSummary> {
        self.nodes
            .values()
            .map(|n| NodeSummary {
                node_id: n.node_id.clone(),
                ip: n.ip.clone(),
                labels: n.labels.clone(),
                last_seen: secs(n.last_seen_ms),
                health: health(n.alive),
            })
            .collect()
    }

    pub fn node(&self, id: &str) -> Option<NodeDetail> {
        self.nodes.get(id).map(|n| NodeDetail {
            node_id: n.node_id.clone(),
            ip: n.ip.clone(),
            labels: n.labels.clone(),
            last_seen: secs(n.last_seen_ms),
            health: health(n.alive),
            can_run_instances: n.can_run,
        })
    }

    pub fn node_record(&self, id: &str) -> Option<&NodeRecord> {
        self.nodes.get(id)
    }

    pub fn instance_record(&self, id: &str) -> Option<&InstanceRecord> {
        self.instances.get(id)
    }

    pub fn token(&self, id: &str) -> Option<&TokenRecord> {
        self.tokens.get(id)
    }

    /// Nodes this replica saw expire since it loaded its state.
    pub fn nodes_expired(&self) -> u64 {
        self.counters.nodes_expired
    }

    pub fn tokens_bootstrapped(&self) -> bool {
        self.tokens_bootstrapped
    }

    /// Every token, as listed (no hashes).
    pub fn tokens(&self) -> Vec<plum_types::TokenInfo> {
        self.tokens.values().map(TokenRecord::info).collect()
    }

    /// Whether an instance is `node_id`'s: registered there, or assigned there by its
    /// deployment (an instance moved off a dead node is still registered on the old one until
    /// the new node's agent registers it). `None`: the cluster knows no such instance.
    pub fn instance_on_node(&self, instance_id: &str, node_id: &str) -> Option<bool> {
        let registered = self.instances.get(instance_id).map(|i| i.node_id == node_id);
        let assigned = self.assignments.get(instance_id).map(|a| a.node_id == node_id);
        match (registered, assigned) {
            (None, None) => None,
            (r, a) => Some(r == Some(true) || a == Some(true)),
        }
    }

    pub fn node_records(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.values()
    }

    pub fn instance_records(&self) -> impl Iterator<Item = &InstanceRecord> {
        self.instances.values()
    }

    /// An instance is discoverable while it is alive and its node (if any is known) is alive:
    /// discovery never hands out an endpoint of a node the cluster declared dead.
    fn instance_live(&self, inst: &InstanceRecord) -> bool {
        inst.alive && self.nodes.get(&inst.node_id).is_none_or(|n| n.alive)
    }

    /// Healthy, live endpoints of `service`, filtered by exact version and protocol.
    pub fn discover(&self, service: &str, version: Option<&str>, protocol: Option<&str>) -> Vec<Endpoint> {
        let Some(ids) = self.by_service.get(service) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for inst in ids.iter().filter_map(|id| self.instances.get(id)) {
            if !self.instance_live(inst) {
                continue;
            }
            for ep in &inst.endpoints {
                if ep.service_name != service
                    || !ep.healthy
                    || version.is_some_and(|v| v != ep.version)
                    || protocol.is_some_and(|p| p != ep.protocol)
                {
                    continue;
                }
                out.push(Endpoint {
                    service_name: ep.service_name.clone(),
                    instance_id: inst.instance_id.clone(),
                    node_id: inst.node_id.clone(),
                    ip: if ep.ip.is_empty() { inst.ip.clone() } else { ep.ip.clone() },
                    port: ep.port,
                    protocol: ep.protocol.clone(),
                    version: ep.version.clone(),
                    labels: ep.labels.clone(),
                    healthy: ep.healthy,
                    last_seen: secs(inst.last_seen_ms),
                });
            }
        }
        out
    }

    /// Whether any instance ever registered an endpoint of `service` (it is in the index).
    pub fn has_service(&self, service: &str) -> bool {
        self.by_service.contains_key(service)
    }

    /// Names of services with at least one registered instance.
    pub fn services(&self) -> Vec<String> {
        self.by_service.keys().cloned().collect()
    }

    fn item(ns: &str, key: &str, r: &KvRecord) -> KvItem {
        KvItem {
            namespace: ns.to_string(),
            key: key.to_string(),
            value: r.value.clone(),
            kind: r.kind,
            updated_at: secs(r.updated_ms),
            version: r.version,
            mod_index: r.mod_index,
        }
    }

    pub fn kv_get(&self, ns: &str, key: &str) -> Option<KvItem> {
        self.kv.get(ns)?.get(key).map(|r| Self::item(ns, key, r))
    }

    /// The log index of a key's last write, if it exists (no copy of its value).
    pub fn kv_mod_index(&self, ns: &str, key: &str) -> Option<u64> {
        self.kv.get(ns)?.get(key).map(|r| r.mod_index)
    }

    /// Keys of `ns` starting with `prefix`, sorted by key.
    pub fn kv_list(&self, ns: &str, prefix: &str) -> Vec<KvItem> {
        let Some(map) = self.kv.get(ns) else {
            return Vec::new();
        };
        map.range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, r)| Self::item(ns, k, r))
            .collect()
    }

    /// When a client serving `from` was last reported discovering `to` (ms), if ever.
    pub fn observed_at(&self, from: &str, to: &str) -> Option<u64> {
        self.observed.get(&(from.to_string(), to.to_string())).copied()
    }

    /// Every observed (from, to) pair and when it was last reported.
    pub fn observed_edges(&self) -> impl Iterator<Item = (&str, &str, u64)> {
        self.observed.iter().map(|((from, to), at)| (from.as_str(), to.as_str(), *at))
    }

    /// A key's recent versions, newest first (also of a key deleted since).
    pub fn kv_history(&self, ns: &str, key: &str) -> Vec<plum_types::KvVersion> {
        let versions = self.kv_history.get(&(ns.to_string(), key.to_string()));
        versions.map(|v| v.values().rev().cloned().collect()).unwrap_or_default()
    }

    pub fn kv_namespaces(&self) -> Vec<String> {
        self.kv.keys().cloned().collect()
    }

    pub fn kv_keys(&self, ns: &str) -> Vec<String> {
        self.kv.get(ns).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// The highest log index that changed anything under `ns`/`prefix` (deletions of any key in
    /// the namespace count, so a watcher may wake without a change of its own, never miss one).
    pub fn kv_change_index(&self, ns: &str, prefix: &str) -> u64 {
        let deleted = self.kv_deleted.get(ns).copied().unwrap_or(0);
        let modified = self.kv_list_records(ns, prefix).map(|r| r.mod_index).max().unwrap_or(0);
        deleted.max(modified)
    }

    fn kv_list_records<'a>(&'a self, ns: &str, prefix: &'a str) -> impl Iterator<Item = &'a KvRecord> + 'a {
        self.kv.get(ns).into_iter().flat_map(move |m| {
            m.range(prefix.to_string()..).take_while(move |(k, _)| k.starts_with(prefix)).map(|(_, r)| r)
        })
    }

    pub fn reschedule_pause(&self) -> Option<&plum_types::ReschedulePause> {
        self.reschedule_pause.as_ref()
    }

    pub fn placement_index(&self) -> u64 {
        self.placement_index
    }

    pub fn deployment_records(&self) -> impl Iterator<Item = &DeploymentRecord> {
        self.deployments.values()
    }

    pub fn deployment_record(&self, id: &str) -> Option<&DeploymentRecord> {
        self.deployments.get(id)
    }

    pub fn assignment_records(&self) -> impl Iterator<Item = &AssignmentRecord> {
        self.assignments.values()
    }

    pub fn assignment_record(&self, instance_id: &str) -> Option<&AssignmentRecord> {
        self.assignments.get(instance_id)
    }

    /// A deployment as reads show it. `now_ms` (the reading replica's clock) only decides
    /// whether a waiting instance is past a dependency's `timeoutMs`.
    fn deployment_info(&self, d: &DeploymentRecord, now_ms: u64) -> DeploymentInfo {
        let mut waiting = super::deps::waiting(self, d, now_ms);
        let instances = self
            .assignments
            .values()
            .filter(|a| a.deployment_id == d.deployment_id)
            .map(|a| InstanceInfo {
                instance_id: a.instance_id.clone(),
                node_id: a.node_id.clone(),
                phase: if waiting.instances.contains_key(&a.instance_id) {
                    WAITING.to_string()
                } else {
                    a.phase.clone()
                },
                port: a.port,
                healthy: a.healthy,
                restarts: a.restarts,
                created_at: secs(a.created_ms),
                updated_at: secs(a.updated_ms),
                generation: a.generation,
                standby: a.standby,
                waiting_on: waiting.instances.remove(&a.instance_id).unwrap_or_default(),
            })
            .collect();
        DeploymentInfo {
            deployment_id: d.deployment_id.clone(),
            spec: d.spec.clone(),
            instances,
            created_at: secs(d.created_ms),
            generation: d.generation,
            rollout: d.rollout.clone(),
            reschedule_paused: self.reschedule_pause.as_ref().map(|p| p.reason.clone()),
            rollback_to: d.rollback.clone(),
            dependencies: waiting.summary,
        }
    }

    pub fn deployments(&self, now_ms: u64) -> Vec<DeploymentInfo> {
        self.deployments.values().map(|d| self.deployment_info(d, now_ms)).collect()
    }

    pub fn deployment(&self, id: &str, now_ms: u64) -> Option<DeploymentInfo> {
        self.deployments.get(id).map(|d| self.deployment_info(d, now_ms))
    }

    /// What `node_id` should run, in the shape Plum's Go agent polls.
    pub fn assignments_of(&self, node_id: &str) -> Vec<AssignmentItem> {
        self.assignments
            .values()
            .filter(|a| a.node_id == node_id)
            .filter_map(|a| {
                let d = self.deployments.get(&a.deployment_id)?;
                // An instance of an older generation runs the spec it was started with.
                let spec = match &d.previous {
                    Some(previous) if a.generation < d.generation => previous,
                    _ => &d.spec,
                };
                let start_cmd = std::iter::once(spec.command.as_str())
                    .chain(spec.args.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(" ");
                Some(AssignmentItem {
                    instance_id: a.instance_id.clone(),
                    deployment_id: a.deployment_id.clone(),
                    node_id: a.node_id.clone(),
                    // A job that completed is not run again (not by a restarted agent either).
                    desired: if a.phase == super::deps::COMPLETED { "Completed" } else { "Running" }.to_string(),
                    artifact_url: spec.artifact.as_ref().map(|x| x.url.clone()).unwrap_or_default(),
                    start_cmd,
                    app_name: spec.name.clone(),
                    app_version: spec.version.clone(),
                    standby: a.standby,
                    spec: Some(spec.clone()),
                })
            })
            .collect()
    }

    /// Rebuilds the view from durable rows (start-up, snapshot install).
    pub(crate) fn from_rows(
        applied_index: u64,
        rows: &mut dyn Iterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<Registry, String> {
        let discovery = DiscoveryChanges { base: applied_index, ..DiscoveryChanges::default() };
        let mut reg = Registry { applied_index, discovery, ..Registry::default() };
        for (k, v) in rows {
            let bad = |e: rmp_serde::decode::Error| format!("row {}: {e}", String::from_utf8_lossy(&k));
            if let Some(rest) = k.strip_prefix(keys::NODE) {
                let rec: NodeRecord = rows::decode(&v).map_err(bad)?;
                // A row under another node's key is corrupt: an error, like any other, not a panic.
                if rest != rec.node_id.as_bytes() {
                    return Err(format!("row {}: holds node `{}`", String::from_utf8_lossy(&k), rec.node_id));
                }
                reg.nodes.insert(rec.node_id.clone(), rec);
            } else if k.starts_with(keys::INSTANCE) {
                let rec: InstanceRecord = rows::decode(&v).map_err(bad)?;
                reg.index_instance(&rec);
                reg.instances.insert(rec.instance_id.clone(), rec);
            } else if let Some(rest) = k.strip_prefix(keys::KV) {
                let (ns, key) = keys::split_kv(rest).ok_or_else(|| "malformed kv row key".to_string())?;
                let rec: KvRecord = rows::decode(&v).map_err(bad)?;
                reg.kv.entry(ns).or_default().insert(key, rec);
            } else if let Some(rest) = k.strip_prefix(keys::REQUEST) {
                let id = String::from_utf8(rest.to_vec()).map_err(|e| e.to_string())?;
                let rec: RequestRecord = rows::decode(&v).map_err(bad)?;
                reg.requests_by_time.insert((rec.at_ms, id.clone()));
                reg.requests.insert(id, rec);
            } else if k == keys::RESCHEDULE_PAUSE {
                reg.reschedule_pause = Some(rows::decode(&v).map_err(bad)?);
            } else if k == keys::PLACEMENT_INDEX {
                reg.placement_index = rows::decode(&v).map_err(bad)?;
            } else if k.starts_with(keys::DEPLOYMENT) {
                let rec: DeploymentRecord = rows::decode(&v).map_err(bad)?;
                reg.deployments.insert(rec.deployment_id.clone(), rec);
            } else if k.starts_with(keys::ASSIGNMENT) {
                let rec: AssignmentRecord = rows::decode(&v).map_err(bad)?;
                reg.assignments.insert(rec.instance_id.clone(), rec);
            } else if let Some(rest) = k.strip_prefix(keys::TOKEN) {
                let rec: TokenRecord = rows::decode(&v).map_err(bad)?;
                if rest != rec.id.as_bytes() {
                    return Err(format!("row {}: holds token `{}`", String::from_utf8_lossy(&k), rec.id));
                }
                reg.tokens.insert(rec.id.clone(), rec);
            } else if k == keys::TOKENS_BOOTSTRAPPED {
                reg.tokens_bootstrapped = rows::decode(&v).map_err(bad)?;
            } else if let Some(rest) = k.strip_prefix(keys::OBSERVED) {
                let pair = keys::split_kv(rest).ok_or_else(|| "malformed observed row key".to_string())?;
                reg.observed.insert(pair, rows::decode(&v).map_err(bad)?);
            } else if let Some(rest) = k.strip_prefix(keys::KV_HISTORY) {
                let (ns, key) =
                    keys::split_kv_history(rest).ok_or_else(|| "malformed kv history row key".to_string())?;
                let rec: plum_types::KvVersion = rows::decode(&v).map_err(bad)?;
                reg.kv_history.entry((ns, key)).or_default().insert(rec.mod_index, rec);
            } else if let Some(rest) = k.strip_prefix(keys::KV_DELETED) {
                let ns = String::from_utf8(rest.to_vec()).map_err(|e| e.to_string())?;
                let index: u64 = rows::decode(&v).map_err(bad)?;
                reg.kv_deleted.insert(ns, index);
            } else {
                return Err(format!("unknown row {}", String::from_utf8_lossy(&k)));
            }
        }
        for ((ns, key), versions) in &reg.kv_history {
            if let Some(last) = versions.values().next_back().filter(|v| v.deleted) {
                reg.kv_deleted_history.insert((last.updated_ms, ns.clone(), key.clone()));
            }
        }
        Ok(reg)
    }

    pub(crate) fn index_instance(&mut self, inst: &InstanceRecord) {
        for ep in &inst.endpoints {
            self.by_service.entry(ep.service_name.clone()).or_default().insert(inst.instance_id.clone());
        }
        self.by_node.entry(inst.node_id.clone()).or_default().insert(inst.instance_id.clone());
    }

    pub(crate) fn unindex_instance(&mut self, inst: &InstanceRecord) {
        for ep in &inst.endpoints {
            if let Some(ids) = self.by_service.get_mut(&ep.service_name) {
                ids.remove(&inst.instance_id);
                if ids.is_empty() {
                    self.by_service.remove(&ep.service_name);
                }
            }
        }
        if let Some(ids) = self.by_node.get_mut(&inst.node_id) {
            ids.remove(&inst.instance_id);
            if ids.is_empty() {
                self.by_node.remove(&inst.node_id);
            }
        }
    }

    /// Whether any healthy endpoint of `inst` is handed out by discovery.
    pub(crate) fn discoverable(&self, inst: &InstanceRecord) -> bool {
        self.instance_live(inst) && inst.endpoints.iter().any(|e| e.healthy)
    }

    /// Records that the discovery answers of `inst`'s services change at the index being applied.
    pub(crate) fn touch_services(&mut self, inst: &InstanceRecord) {
        self.discovery.mark_instance(inst, self.applied_index);
    }

    /// Services whose discovery answer changed after `after` (every known service when the
    /// state was loaded after it).
    pub fn discovery_changed_since(&self, after: u64) -> Vec<String> {
        if self.discovery.base > after {
            return self.by_service.keys().cloned().collect();
        }
        self.discovery.per_service.iter().filter(|(_, at)| **at > after).map(|(s, _)| s.clone()).collect()
    }

    /// The log index after which `service`'s discovery answer (every service's, for `None`) has
    /// not changed. A discovery watch waits for it to pass the index the client saw.
    pub fn discovery_change_index(&self, service: Option<&str>) -> u64 {
        let changed = match service {
            Some(s) => self.discovery.per_service.get(s).copied().unwrap_or(0),
            None => self.discovery.any,
        };
        changed.max(self.discovery.base)
    }
}
