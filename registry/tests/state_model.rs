//! Model-based property tests of the registry state machine.
//!
//! Random logs over a deliberately small id space (so commands collide on the same nodes,
//! instances, services and keys) are applied to a [`Registry`] and checked against:
//!
//! 1. an independent reference model, after every command, through every read the API serves;
//! 2. the view rebuilt from the durable rows the commands staged (restart, snapshot install);
//! 3. a second replica applying the same log (optionally restarted half-way): same view, same
//!    bytes on disk;
//! 4. itself after a retry: applying a command a second time changes nothing observable.

use std::collections::{BTreeMap, BTreeSet};

use plum_raft_store::{DataOp, DataWrites, StateMachineApp, decode_rows, encode_rows};
use plum_registry::state::{
    Command, CommandResult, EndpointRecord, InstanceRecord, KvRecord, KvWrite, NodeRecord, Op, REQUEST_WINDOW_MS,
    Registry, RegistryApp, TokenRecord,
};
use plum_types::{Endpoint, HealthReport, KvItem, KvType, NodeDetail, NodeHealth, NodeSummary, Role, TokenInfo};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;

// ---------------------------------------------------------------------------------------------
// The id space. Reads also ask about ids no command ever uses.

const NODES: &[&str] = &["n0", "n1", "n2", "n3"];
/// Node ids commands may refer to: `n4` is never upserted, `""` is "registered without a node".
const NODE_REFS: &[&str] = &["n0", "n1", "n2", "n3", "n4", ""];
const INSTANCES: &[&str] = &["i0", "i1", "i2", "i3", "i4"];
const SERVICES: &[&str] = &["s0", "s1", "s2"];
const VERSIONS: &[&str] = &["v1", "v2"];
const PROTOCOLS: &[&str] = &["http", "grpc"];
const PORTS: &[u16] = &[80, 81];
const IPS: &[&str] = &["10.0.0.1", "10.0.0.2"];
/// An endpoint's own address: none (the instance's, as rows written before it existed) or one.
const ENDPOINT_IPS: &[&str] = &["", "10.0.0.1", "10.0.0.3"];
/// Registration addresses, with "" for "keep what the instance had".
const REGISTER_IPS: &[&str] = &["10.0.0.1", "10.0.0.2", ""];
const TTLS: &[u64] = &[0, 1000];
const CAPACITIES: &[u32] = &[0, 2];
const NAMESPACES: &[&str] = &["a", "b"];
const KEYS: &[&str] = &["k0", "k1", "k1/x", "k2", "k3"];
const VALUES: &[&str] = &["x", "y"];
const KINDS: &[KvType] = &[KvType::String, KvType::Int];
const REQUEST_IDS: &[&str] = &["r0", "r1"];
const TOKEN_IDS: &[&str] = &["t0", "t1", "t2"];

const QUERY_NODES: &[&str] = &["n0", "n1", "n2", "n3", "n4"];
const QUERY_SERVICES: &[&str] = &["s0", "s1", "s2", "s9"];
const QUERY_NAMESPACES: &[&str] = &["a", "b", "c"];
const QUERY_PREFIXES: &[&str] = &["", "k", "k1", "k1/", "k3", "z"];

// ---------------------------------------------------------------------------------------------
// Generated logs.

/// The leader's clock at the first command; a multiple of 1000 so second boundaries are hit.
const START_MS: u64 = 1_700_000_000_000;
/// Clock advances between commands: equal timestamps, tiny steps, around a second, several.
// The last two cross the request-id window, so forgetting old ids is exercised too.
const ADVANCES_MS: &[u64] = &[0, 0, 1, 999, 1000, 1001, 2500, REQUEST_WINDOW_MS / 2, REQUEST_WINDOW_MS + 1];
/// Seen times of renewals and expiries are generated as `now + SEEN_SLACK_MS - back` with `back`
/// from this list, so they land exactly on the current and previous commands' clocks (the `<=`
/// and `<` boundaries) as well as between and slightly after them.
const SEEN_SLACK_MS: u64 = 500;
const SEEN_BACK_MS: &[u64] = &[0, 499, 500, 501, 1000, 1500, 1501, 2500, 4000];

/// One generated log entry before its times are fixed: see [`stamp`].
#[derive(Debug, Clone)]
struct Step {
    advance_ms: u64,
    op: Op,
}

fn pick(xs: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
    select(xs).prop_map(String::from)
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(pick(&["zone", "tier"]), pick(&["a", "b"]), 0..2)
}

fn seen_list(ids: &'static [&'static str]) -> impl Strategy<Value = Vec<(String, u64)>> {
    vec((pick(ids), select(SEEN_BACK_MS)), 0..3)
}

fn endpoint() -> impl Strategy<Value = EndpointRecord> {
    (pick(SERVICES), select(PORTS), pick(PROTOCOLS), pick(VERSIONS), labels(), any::<bool>(), pick(ENDPOINT_IPS))
        .prop_map(|(service_name, port, protocol, version, labels, healthy, ip)| EndpointRecord {
            service_name,
            port,
            protocol,
            version,
            labels,
            healthy,
            ip,
        })
}

fn health_report() -> impl Strategy<Value = HealthReport> {
    (pick(SERVICES), proptest::option::of(select(PORTS)), any::<bool>())
        .prop_map(|(service_name, port, healthy)| HealthReport { service_name, port, healthy })
}

fn kv_write() -> impl Strategy<Value = KvWrite> {
    (pick(KEYS), pick(VALUES), select(KINDS)).prop_map(|(key, value, kind)| KvWrite { key, value, kind })
}

fn registration() -> impl Strategy<Value = Op> {
    let upstreams = vec(pick(SERVICES), 0..2);
    (
        pick(INSTANCES),
        pick(NODE_REFS),
        pick(REGISTER_IPS),
        vec(endpoint(), 0..3),
        select(TTLS),
        any::<bool>(),
        upstreams,
    )
        .prop_map(|(instance_id, node_id, ip, endpoints, ttl_ms, replace, upstreams)| Op::RegisterInstance {
            instance_id,
            node_id,
            ip,
            endpoints,
            ttl_ms,
            replace,
            upstreams,
        })
}

fn health_change() -> impl Strategy<Value = Op> {
    (pick(INSTANCES), vec(health_report(), 0..3), proptest::option::of(select(TTLS)))
        .prop_map(|(instance_id, reports, ttl_ms)| Op::SetHealth { instance_id, reports, ttl_ms })
}

fn token_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (pick(TOKEN_IDS), select(&Role::ALL[..]), any::<bool>(), 1u64..10).prop_map(|(id, role, bootstrap, at)| {
            let node_id = if role == Role::Agent { "n1".to_string() } else { String::new() };
            let hash = format!("{:064x}", at);
            let token = TokenRecord { id, name: "t".into(), role, node_id, hash, created_ms: at * 1000 };
            Op::CreateToken { token, bootstrap }
        }),
        pick(TOKEN_IDS).prop_map(|id| Op::RevokeToken { id }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    // Mostly unconditional writes: a random expected version is usually a conflict.
    let expect_version = || proptest::option::weighted(0.3, 0u64..4);
    prop_oneof![
        3 => (pick(NODES), pick(IPS), labels(), any::<bool>(), select(TTLS), select(CAPACITIES)).prop_map(
            |(node_id, ip, labels, can_run, ttl_ms, capacity)| Op::UpsertNode { node_id, ip, labels, can_run, ttl_ms, capacity }
        ),
        3 => (seen_list(QUERY_NODES), seen_list(INSTANCES))
            .prop_map(|(nodes, instances)| Op::Renew { nodes, instances }),
        2 => seen_list(QUERY_NODES).prop_map(|nodes| Op::ExpireNodes { nodes, moves: Vec::new(), takeovers: Vec::new() }),
        2 => seen_list(INSTANCES).prop_map(|instances| Op::ExpireInstances { instances }),
        1 => pick(QUERY_NODES).prop_map(|node_id| Op::DeleteNode { node_id }),
        4 => registration(),
        2 => health_change(),
        2 => vec(prop_oneof![registration(), health_change()], 0..4).prop_map(|ops| Op::Batch { ops }),
        1 => pick(INSTANCES).prop_map(|instance_id| Op::DeregisterInstance { instance_id }),
        1 => seen_list(INSTANCES).prop_map(|instances| Op::ForgetInstances { instances }),
        5 => (pick(NAMESPACES), kv_write(), expect_version(), proptest::option::of(pick(REQUEST_IDS)))
            .prop_map(|(ns, write, expect_version, request_id)| Op::KvPut { ns, write, expect_version, request_id }),
        2 => (pick(NAMESPACES), pick(KEYS), expect_version())
            .prop_map(|(ns, key, expect_version)| Op::KvDelete { ns, key, expect_version }),
        2 => (pick(NAMESPACES), vec(kv_write(), 0..4)).prop_map(|(ns, writes)| Op::KvBatch { ns, writes }),
        2 => token_op(),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (select(ADVANCES_MS), op()).prop_map(|(advance_ms, op)| Step { advance_ms, op })
}

fn steps(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Step>> {
    vec(step(), len)
}

/// Turns generated steps into commands: runs the leader's clock and turns each generated
/// "ms back" of a renewal or expiry into an absolute seen time.
fn stamp(steps: &[Step]) -> Vec<Command> {
    fn seen_at(now: u64, pairs: &[(String, u64)]) -> Vec<(String, u64)> {
        pairs.iter().map(|(id, back)| (id.clone(), (now + SEEN_SLACK_MS).saturating_sub(*back))).collect()
    }
    let mut now = START_MS;
    let mut out = Vec::with_capacity(steps.len());
    for s in steps {
        now += s.advance_ms;
        let op = match &s.op {
            Op::Renew { nodes, instances } => {
                Op::Renew { nodes: seen_at(now, nodes), instances: seen_at(now, instances) }
            }
            Op::ExpireNodes { nodes, moves, takeovers } => {
                Op::ExpireNodes { nodes: seen_at(now, nodes), moves: moves.clone(), takeovers: takeovers.clone() }
            }
            Op::ExpireInstances { instances } => Op::ExpireInstances { instances: seen_at(now, instances) },
            Op::ForgetInstances { instances } => Op::ForgetInstances { instances: seen_at(now, instances) },
            other => other.clone(),
        };
        out.push(Command { now_ms: now, op });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The reference model: written from the rules, not from the registry's code.

/// Liveness of a node or an instance.
#[derive(Debug, Clone)]
struct Liveness {
    alive: bool,
    last_seen_ms: u64,
}

impl Liveness {
    /// A renewal changes something only if it is newer or the record was expired.
    fn renew(&mut self, seen: u64) -> bool {
        if self.alive && seen <= self.last_seen_ms {
            return false;
        }
        self.alive = true;
        self.last_seen_ms = self.last_seen_ms.max(seen);
        true
    }

    /// An expiry holds only if nothing was seen after the time the leader judged by.
    fn expire(&mut self, seen: u64) -> bool {
        if !self.alive || self.last_seen_ms > seen {
            return false;
        }
        self.alive = false;
        true
    }

    /// A write that also counts as a heartbeat at `now`.
    fn touched(old: Option<&Liveness>, now: u64) -> Liveness {
        Liveness { alive: true, last_seen_ms: old.map_or(now, |l| l.last_seen_ms.max(now)) }
    }
}

#[derive(Debug, Clone)]
struct ModelNode {
    ip: String,
    labels: BTreeMap<String, String>,
    can_run: bool,
    live: Liveness,
    registered_ms: u64,
    ttl_ms: u64,
    capacity: u32,
}

#[derive(Debug, Clone)]
struct ModelInstance {
    node_id: String,
    ip: String,
    /// Each with its effective address filled in.
    endpoints: Vec<EndpointRecord>,
    live: Liveness,
    registered_ms: u64,
    ttl_ms: u64,
    upstreams: Vec<String>,
}

/// An endpoint's effective address: its own, or its instance's.
fn with_address(ep: &EndpointRecord, instance_ip: &str) -> EndpointRecord {
    let ip = if ep.ip.is_empty() { instance_ip.to_string() } else { ep.ip.clone() };
    EndpointRecord { ip, ..ep.clone() }
}

/// Two endpoints are the same registration when service, address, port and protocol agree.
fn same_place(a: &EndpointRecord, b: &EndpointRecord) -> bool {
    (&a.service_name, &a.ip, a.port, &a.protocol) == (&b.service_name, &b.ip, b.port, &b.protocol)
}

#[derive(Debug, Clone, Default)]
struct Model {
    nodes: BTreeMap<String, ModelNode>,
    instances: BTreeMap<String, ModelInstance>,
    /// Flat `(namespace, key)` map, unlike the registry's nested one.
    kv: BTreeMap<(String, String), KvRecord>,
    /// Namespace -> index of its last deletion.
    deleted_at: BTreeMap<String, u64>,
    /// Request id -> (namespace, key, (leader time, result)) of recent KV writes that carried one.
    requests: BTreeMap<String, (String, String, (u64, KvRecord))>,
    tokens: BTreeMap<String, TokenInfo>,
    /// A bootstrap token was recorded once (revoking it does not undo this).
    bootstrapped: bool,
}

impl Model {
    fn apply(&mut self, index: u64, cmd: &Command) -> CommandResult {
        let now = cmd.now_ms;
        // Request ids older than the window are forgotten on every command (leader time).
        self.requests.retain(|_, (_, _, (at, _))| *at >= now.saturating_sub(REQUEST_WINDOW_MS));
        match &cmd.op {
            Op::UpsertNode { node_id, ip, labels, can_run, ttl_ms, capacity } => {
                let old = self.nodes.get(node_id);
                let node = ModelNode {
                    ip: ip.clone(),
                    labels: labels.clone(),
                    can_run: *can_run,
                    live: Liveness::touched(old.map(|n| &n.live), now),
                    registered_ms: old.map_or(now, |n| n.registered_ms),
                    ttl_ms: *ttl_ms,
                    capacity: *capacity,
                };
                self.nodes.insert(node_id.clone(), node);
                CommandResult::Done
            }
            Op::Renew { nodes, instances } => {
                let mut count = 0;
                for (id, seen) in nodes {
                    count += usize::from(self.nodes.get_mut(id).is_some_and(|n| n.live.renew(*seen)));
                }
                for (id, seen) in instances {
                    count += usize::from(self.instances.get_mut(id).is_some_and(|i| i.live.renew(*seen)));
                }
                CommandResult::Changed { count }
            }
            Op::ExpireNodes { nodes, .. } => {
                let mut count = 0;
                for (id, seen) in nodes {
                    count += usize::from(self.nodes.get_mut(id).is_some_and(|n| n.live.expire(*seen)));
                }
                CommandResult::Changed { count }
            }
            Op::ExpireInstances { instances } => {
                let mut count = 0;
                for (id, seen) in instances {
                    count += usize::from(self.instances.get_mut(id).is_some_and(|i| i.live.expire(*seen)));
                }
                CommandResult::Changed { count }
            }
            Op::DeleteNode { node_id } => {
                // Every instance placed on the node counts, alive or not.
                let busy: Vec<String> =
                    self.instances.iter().filter(|(_, i)| &i.node_id == node_id).map(|(id, _)| id.clone()).collect();
                if !busy.is_empty() {
                    return CommandResult::NodeBusy { instances: busy };
                }
                self.nodes.remove(node_id);
                CommandResult::Done
            }
            Op::RegisterInstance { instance_id, node_id, ip, endpoints, ttl_ms, replace, upstreams } => {
                let old = self.instances.get(instance_id);
                // Empty node or address: the instance keeps what it had.
                let or_old = |new: &String, old: Option<&String>| {
                    if new.is_empty() { old.cloned().unwrap_or_default() } else { new.clone() }
                };
                // The new endpoints take the place of old ones at the same address; the other old
                // ones stay unless the registration replaces the whole set.
                let instance_ip = or_old(ip, old.map(|i| &i.ip));
                let new: Vec<EndpointRecord> = endpoints.iter().map(|e| with_address(e, &instance_ip)).collect();
                let mut kept: Vec<EndpointRecord> = match old {
                    // A dead instance's endpoints died with it. An old endpoint without an address
                    // of its own is at its instance's address.
                    Some(o) if !*replace && o.live.alive => o
                        .endpoints
                        .iter()
                        .filter(|e| {
                            // Address-less: where the instance is (its new address if it had none).
                            let at = if o.ip.is_empty() { &instance_ip } else { &o.ip };
                            !new.iter().any(|n| same_place(n, &with_address(e, at)))
                        })
                        .cloned()
                        .collect(),
                    _ => Vec::new(),
                };
                kept.extend(new);
                let instance = ModelInstance {
                    node_id: or_old(node_id, old.map(|i| &i.node_id)),
                    ip: instance_ip,
                    endpoints: kept,
                    live: Liveness::touched(old.map(|i| &i.live), now),
                    registered_ms: old.map_or(now, |i| i.registered_ms),
                    ttl_ms: *ttl_ms,
                    // None declared: the instance keeps what it declared before (`replace`: none).
                    upstreams: if upstreams.is_empty() && !*replace {
                        old.map(|i| i.upstreams.clone()).unwrap_or_default()
                    } else {
                        upstreams.clone()
                    },
                };
                self.instances.insert(instance_id.clone(), instance);
                CommandResult::Done
            }
            Op::SetHealth { instance_id, reports, ttl_ms } => {
                let Some(instance) = self.instances.get_mut(instance_id) else {
                    return CommandResult::Changed { count: 0 };
                };
                // Reports apply in order; a port-less report covers every port of the service.
                for r in reports {
                    for ep in &mut instance.endpoints {
                        if ep.service_name == r.service_name && (r.port.is_none() || r.port == Some(ep.port)) {
                            ep.healthy = r.healthy;
                        }
                    }
                }
                if let Some(ttl) = ttl_ms {
                    instance.ttl_ms = *ttl;
                }
                // A health report is also a heartbeat.
                instance.live = Liveness::touched(Some(&instance.live), now);
                CommandResult::Changed { count: 1 }
            }
            Op::DeregisterInstance { instance_id } => {
                self.instances.remove(instance_id);
                CommandResult::Done
            }
            Op::ForgetInstances { instances } => {
                // Only what is still dead, and has not been heard from since the verdict.
                let mut count = 0;
                for (id, seen) in instances {
                    let forget = self.instances.get(id).is_some_and(|i| !i.live.alive && i.live.last_seen_ms <= *seen);
                    if forget {
                        self.instances.remove(id);
                        count += 1;
                    }
                }
                CommandResult::Changed { count }
            }
            Op::KvPut { ns, write, expect_version, request_id } => {
                // A retry of a write that already committed, on the same key, is answered as the
                // first time, whatever happened to the key since.
                if let Some((done_ns, done_key, (_, done))) = request_id.as_ref().and_then(|id| self.requests.get(id))
                    && *done_ns == *ns
                    && *done_key == write.key
                {
                    return CommandResult::KvWritten {
                        record: KvRecord { value: write.value.clone(), ..done.clone() },
                    };
                }
                let slot = (ns.clone(), write.key.clone());
                let old = self.kv.get(&slot).cloned();
                // Compare-and-set against the current version (0: absent).
                let current = old.as_ref().map_or(0, |r| r.version);
                if let Some(expected) = expect_version
                    && *expected != current
                {
                    return CommandResult::KvConflict { current };
                }
                // An unconditional write of what is already there changes nothing.
                let record = match old {
                    Some(old) if expect_version.is_none() && old.value == write.value && old.kind == write.kind => old,
                    _ => self.kv_write(ns, write, index, now),
                };
                if let Some(id) = request_id {
                    self.requests.insert(id.clone(), (ns.clone(), write.key.clone(), (now, record.clone())));
                }
                CommandResult::KvWritten { record }
            }
            Op::KvDelete { ns, key, expect_version } => {
                let slot = (ns.clone(), key.clone());
                let current = self.kv.get(&slot).map_or(0, |r| r.version);
                if let Some(expected) = expect_version
                    && *expected != current
                {
                    return CommandResult::KvConflict { current };
                }
                if self.kv.remove(&slot).is_some() {
                    self.deleted_at.insert(ns.clone(), index);
                }
                CommandResult::Done
            }
            Op::KvBatch { ns, writes } => {
                // The last write of each key wins.
                let last: BTreeMap<&String, &KvWrite> = writes.iter().map(|w| (&w.key, w)).collect();
                for w in last.values() {
                    let same = self
                        .kv
                        .get(&(ns.clone(), w.key.clone()))
                        .is_some_and(|r| r.value == w.value && r.kind == w.kind);
                    if !same {
                        self.kv_write(ns, w, index, now);
                    }
                }
                CommandResult::Changed { count: writes.len() }
            }
            // The batch API's entry: each op in turn, at the same index and time.
            Op::Batch { ops } => {
                let count = ops
                    .iter()
                    .map(|op| match self.apply(index, &Command { now_ms: now, op: op.clone() }) {
                        CommandResult::Changed { count } => count,
                        _ => 1,
                    })
                    .sum();
                CommandResult::Changed { count }
            }
            Op::CreateToken { token, bootstrap } => {
                if self.tokens.contains_key(&token.id) || (*bootstrap && self.bootstrapped) {
                    return CommandResult::Changed { count: 0 };
                }
                self.bootstrapped |= *bootstrap;
                let info = TokenInfo {
                    id: token.id.clone(),
                    name: token.name.clone(),
                    role: token.role,
                    node_id: (!token.node_id.is_empty()).then(|| token.node_id.clone()),
                    created_at: token.created_ms / 1000,
                };
                self.tokens.insert(token.id.clone(), info);
                CommandResult::Changed { count: 1 }
            }
            Op::RevokeToken { id } => match self.tokens.remove(id) {
                Some(_) => CommandResult::Done,
                None => CommandResult::NotFound,
            },
            // Deployments are checked by the scheduler's and the API's tests; logs here do not
            // contain them.
            Op::CreateDeployment { .. }
            | Op::DeleteDeployment { .. }
            | Op::Reassign { .. }
            | Op::ReportInstance { .. }
            | Op::SetReschedulePause { .. }
            | Op::UpdateDeployment { .. }
            | Op::ScaleDeployment { .. }
            | Op::RolloutStep { .. }
            | Op::RollConfig { .. }
            | Op::ObserveEdges { .. } => {
                unreachable!("deployment commands are not generated")
            }
        }
    }

    fn kv_write(&mut self, ns: &str, w: &KvWrite, index: u64, now: u64) -> KvRecord {
        let slot = (ns.to_string(), w.key.clone());
        let old = self.kv.get(&slot);
        let record = KvRecord {
            value: w.value.clone(),
            kind: w.kind,
            updated_ms: now,
            version: old.map_or(1, |r| r.version + 1),
            create_index: old.map_or(index, |r| r.create_index),
            mod_index: index,
        };
        self.kv.insert(slot, record.clone());
        record
    }

    fn kv_item(ns: &str, key: &str, r: &KvRecord) -> KvItem {
        KvItem {
            namespace: ns.to_string(),
            key: key.to_string(),
            value: r.value.clone(),
            kind: r.kind,
            updated_at: r.updated_ms / 1000,
            version: r.version,
            mod_index: r.mod_index,
        }
    }

    fn kv_in(&self, ns: &str) -> impl Iterator<Item = (&str, &KvRecord)> {
        self.kv.iter().filter(move |((n, _), _)| n == ns).map(|((_, k), r)| (k.as_str(), r))
    }
}

fn node_health(live: &Liveness) -> NodeHealth {
    if live.alive { NodeHealth::Healthy } else { NodeHealth::Unhealthy }
}

// ---------------------------------------------------------------------------------------------
// Observing: every read the API serves, asked of the registry and of the model alike.

trait View {
    fn nodes(&self) -> Vec<NodeSummary>;
    fn node(&self, id: &str) -> Option<NodeDetail>;
    fn node_record(&self, id: &str) -> Option<NodeRecord>;
    fn instance_record(&self, id: &str) -> Option<InstanceRecord>;
    fn discover(&self, service: &str, version: Option<&str>, protocol: Option<&str>) -> Vec<Endpoint>;
    fn services(&self) -> Vec<String>;
    fn kv_get(&self, ns: &str, key: &str) -> Option<KvItem>;
    fn kv_list(&self, ns: &str, prefix: &str) -> Vec<KvItem>;
    fn kv_namespaces(&self) -> Vec<String>;
    fn kv_keys(&self, ns: &str) -> Vec<String>;
    fn kv_change_index(&self, ns: &str, prefix: &str) -> u64;
    fn tokens(&self) -> (Vec<TokenInfo>, bool);
}

impl View for Registry {
    fn tokens(&self) -> (Vec<TokenInfo>, bool) {
        (Registry::tokens(self), self.tokens_bootstrapped())
    }
    fn nodes(&self) -> Vec<NodeSummary> {
        Registry::nodes(self)
    }
    fn node(&self, id: &str) -> Option<NodeDetail> {
        Registry::node(self, id)
    }
    fn node_record(&self, id: &str) -> Option<NodeRecord> {
        Registry::node_record(self, id).cloned()
    }
    fn instance_record(&self, id: &str) -> Option<InstanceRecord> {
        Registry::instance_record(self, id).cloned()
    }
    fn discover(&self, service: &str, version: Option<&str>, protocol: Option<&str>) -> Vec<Endpoint> {
        Registry::discover(self, service, version, protocol)
    }
    fn services(&self) -> Vec<String> {
        Registry::services(self)
    }
    fn kv_get(&self, ns: &str, key: &str) -> Option<KvItem> {
        Registry::kv_get(self, ns, key)
    }
    fn kv_list(&self, ns: &str, prefix: &str) -> Vec<KvItem> {
        Registry::kv_list(self, ns, prefix)
    }
    fn kv_namespaces(&self) -> Vec<String> {
        Registry::kv_namespaces(self)
    }
    fn kv_keys(&self, ns: &str) -> Vec<String> {
        Registry::kv_keys(self, ns)
    }
    fn kv_change_index(&self, ns: &str, prefix: &str) -> u64 {
        Registry::kv_change_index(self, ns, prefix)
    }
}

impl View for Model {
    fn tokens(&self) -> (Vec<TokenInfo>, bool) {
        (self.tokens.values().cloned().collect(), self.bootstrapped)
    }
    fn nodes(&self) -> Vec<NodeSummary> {
        self.nodes
            .iter()
            .map(|(id, n)| NodeSummary {
                node_id: id.clone(),
                ip: n.ip.clone(),
                labels: n.labels.clone(),
                last_seen: n.live.last_seen_ms / 1000,
                health: node_health(&n.live),
            })
            .collect()
    }

    fn node(&self, id: &str) -> Option<NodeDetail> {
        self.nodes.get(id).map(|n| NodeDetail {
            node_id: id.to_string(),
            ip: n.ip.clone(),
            labels: n.labels.clone(),
            last_seen: n.live.last_seen_ms / 1000,
            health: node_health(&n.live),
            can_run_instances: n.can_run,
        })
    }

    fn node_record(&self, id: &str) -> Option<NodeRecord> {
        self.nodes.get(id).map(|n| NodeRecord {
            node_id: id.to_string(),
            ip: n.ip.clone(),
            labels: n.labels.clone(),
            can_run: n.can_run,
            alive: n.live.alive,
            last_seen_ms: n.live.last_seen_ms,
            registered_ms: n.registered_ms,
            ttl_ms: n.ttl_ms,
            capacity: n.capacity,
        })
    }

    fn instance_record(&self, id: &str) -> Option<InstanceRecord> {
        self.instances.get(id).map(|i| InstanceRecord {
            instance_id: id.to_string(),
            node_id: i.node_id.clone(),
            ip: i.ip.clone(),
            endpoints: i.endpoints.clone(),
            alive: i.live.alive,
            last_seen_ms: i.live.last_seen_ms,
            registered_ms: i.registered_ms,
            ttl_ms: i.ttl_ms,
            upstreams: i.upstreams.clone(),
        })
    }

    fn discover(&self, service: &str, version: Option<&str>, protocol: Option<&str>) -> Vec<Endpoint> {
        let mut out = Vec::new();
        for (id, inst) in &self.instances {
            // Never an endpoint of a dead instance, nor of an instance on a node declared dead.
            let node_dead = self.nodes.get(&inst.node_id).is_some_and(|n| !n.live.alive);
            if !inst.live.alive || node_dead {
                continue;
            }
            for ep in &inst.endpoints {
                let wanted = ep.service_name == service
                    && ep.healthy
                    && version.is_none_or(|v| v == ep.version)
                    && protocol.is_none_or(|p| p == ep.protocol);
                if wanted {
                    out.push(Endpoint {
                        service_name: ep.service_name.clone(),
                        instance_id: id.clone(),
                        node_id: inst.node_id.clone(),
                        // An endpoint registered with no address anywhere follows its instance's.
                        ip: if ep.ip.is_empty() { inst.ip.clone() } else { ep.ip.clone() },
                        port: ep.port,
                        protocol: ep.protocol.clone(),
                        version: ep.version.clone(),
                        labels: ep.labels.clone(),
                        healthy: true,
                        last_seen: inst.live.last_seen_ms / 1000,
                    });
                }
            }
        }
        out
    }

    fn services(&self) -> Vec<String> {
        // Every registered instance counts, dead or alive.
        let names: BTreeSet<&String> =
            self.instances.values().flat_map(|i| i.endpoints.iter().map(|ep| &ep.service_name)).collect();
        names.into_iter().cloned().collect()
    }

    fn kv_get(&self, ns: &str, key: &str) -> Option<KvItem> {
        self.kv.get(&(ns.to_string(), key.to_string())).map(|r| Model::kv_item(ns, key, r))
    }

    fn kv_list(&self, ns: &str, prefix: &str) -> Vec<KvItem> {
        self.kv_in(ns).filter(|(k, _)| k.starts_with(prefix)).map(|(k, r)| Model::kv_item(ns, k, r)).collect()
    }

    fn kv_namespaces(&self) -> Vec<String> {
        let names: BTreeSet<&String> = self.kv.keys().map(|(ns, _)| ns).collect();
        names.into_iter().cloned().collect()
    }

    fn kv_keys(&self, ns: &str) -> Vec<String> {
        self.kv_in(ns).map(|(k, _)| k.to_string()).collect()
    }

    fn kv_change_index(&self, ns: &str, prefix: &str) -> u64 {
        let modified = self.kv_in(ns).filter(|(k, _)| k.starts_with(prefix)).map(|(_, r)| r.mod_index);
        modified.chain(self.deleted_at.get(ns).copied()).max().unwrap_or(0)
    }
}

#[derive(Debug, PartialEq)]
enum Answer {
    Nodes(Vec<NodeSummary>),
    Node(Option<NodeDetail>),
    NodeRecord(Option<NodeRecord>),
    InstanceRecord(Option<InstanceRecord>),
    Endpoints(Vec<Endpoint>),
    Names(Vec<String>),
    Item(Option<KvItem>),
    Items(Vec<KvItem>),
    Index(u64),
    Tokens((Vec<TokenInfo>, bool)),
}

/// Every read over the id space, each labelled with the call that produced it.
fn observe(v: &impl View) -> Vec<(String, Answer)> {
    let mut out = vec![("nodes()".to_string(), Answer::Nodes(v.nodes()))];
    for id in QUERY_NODES {
        out.push((format!("node({id})"), Answer::Node(v.node(id))));
        out.push((format!("node_record({id})"), Answer::NodeRecord(v.node_record(id))));
    }
    for id in INSTANCES {
        out.push((format!("instance_record({id})"), Answer::InstanceRecord(v.instance_record(id))));
    }
    out.push(("services()".to_string(), Answer::Names(v.services())));
    let versions = [None].into_iter().chain(VERSIONS.iter().copied().map(Some));
    for service in QUERY_SERVICES {
        for version in versions.clone() {
            for protocol in [None].into_iter().chain(PROTOCOLS.iter().copied().map(Some)) {
                let answer = Answer::Endpoints(v.discover(service, version, protocol));
                out.push((format!("discover({service}, {version:?}, {protocol:?})"), answer));
            }
        }
    }
    out.push(("tokens()".to_string(), Answer::Tokens(v.tokens())));
    out.push(("kv_namespaces()".to_string(), Answer::Names(v.kv_namespaces())));
    for ns in QUERY_NAMESPACES {
        out.push((format!("kv_keys({ns})"), Answer::Names(v.kv_keys(ns))));
        for key in KEYS {
            out.push((format!("kv_get({ns}, {key})"), Answer::Item(v.kv_get(ns, key))));
        }
        for prefix in QUERY_PREFIXES {
            out.push((format!("kv_list({ns}, {prefix:?})"), Answer::Items(v.kv_list(ns, prefix))));
            out.push((format!("kv_change_index({ns}, {prefix:?})"), Answer::Index(v.kv_change_index(ns, prefix))));
        }
    }
    out
}

/// The first read whose answers differ, described for a failure message.
fn first_difference(left: &[(String, Answer)], right: &[(String, Answer)]) -> Option<String> {
    left.iter()
        .zip(right)
        .find(|((_, a), (_, b))| a != b)
        .map(|((call, a), (_, b))| format!("{call}:\n  left:  {a:?}\n  right: {b:?}"))
}

// ---------------------------------------------------------------------------------------------
// A replica: the registry plus the durable rows its commands staged.

type Disk = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Clone, Default)]
struct Replica {
    registry: Registry,
    disk: Disk,
    index: u64,
}

impl Replica {
    /// Applies `cmd` at the next log index and writes its staged rows to disk, in order.
    fn apply(&mut self, cmd: &Command) -> CommandResult {
        self.index += 1;
        let mut writes = DataWrites::default();
        let result = self.registry.apply(self.index, cmd, &mut writes);
        for op in writes.into_ops() {
            match op {
                DataOp::Put(k, v) => {
                    self.disk.insert(k, v);
                }
                DataOp::Delete(k) => {
                    self.disk.remove(&k);
                }
            }
        }
        result
    }

    /// The view a restart would rebuild from the rows on disk.
    fn restarted(&self) -> Registry {
        rebuild(self.index, self.disk.iter().map(|(k, v)| (k.clone(), v.clone())))
    }
}

/// Rebuilds a view from durable rows through the store's public restore path.
fn rebuild(applied_index: u64, rows: impl Iterator<Item = (Vec<u8>, Vec<u8>)>) -> Registry {
    let (mut app, _applied) = RegistryApp::new(None);
    let mut rows = rows;
    app.restore(applied_index, &mut rows).expect("durable rows must decode");
    app.registry
}

/// Everything a retry must leave alone: every read (records included) and the durable rows.
#[derive(Debug, PartialEq)]
struct Snapshot {
    reads: Vec<(String, Answer)>,
    disk: Disk,
}

impl Snapshot {
    fn of(r: &Replica) -> Snapshot {
        Snapshot { reads: observe(&r.registry), disk: r.disk.clone() }
    }
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// After every command the registry answers every read, and returns the same result, as the
    /// reference model.
    #[test]
    fn registry_agrees_with_reference_model(log in steps(1..60)) {
        let mut replica = Replica::default();
        let mut model = Model::default();
        for (i, cmd) in stamp(&log).iter().enumerate() {
            let index = i as u64 + 1;
            let got = replica.apply(cmd);
            let want = model.apply(index, cmd);
            prop_assert_eq!(&got, &want, "result of command {} {:?}", index, cmd);
            prop_assert_eq!(replica.registry.applied_index(), index);
            let diff = first_difference(&observe(&replica.registry), &observe(&model));
            prop_assert!(diff.is_none(), "after command {} {:?}, registry (left) vs model (right) {}",
                index, cmd, diff.unwrap_or_default());
        }
    }

    /// A discovery watch never misses a change: whenever a command changes a service's answer
    /// (apart from `lastSeen`, which renewals move), the service's change index becomes that
    /// command's index; and an index that did not move means the answer did not change. Also
    /// after a restart part-way, where the index may only be higher.
    #[test]
    fn discovery_change_index_moves_with_every_change_of_an_answer(
        log in steps(1..60), restart_at in any::<prop::sample::Index>()
    ) {
        let commands = stamp(&log);
        let restart_at = restart_at.index(commands.len() + 1);
        let mut replica = Replica::default();
        let answer = |r: &Registry, s: &str| {
            let mut eps = r.discover(s, None, None);
            eps.iter_mut().for_each(|e| e.last_seen = 0);
            eps
        };
        for (i, cmd) in commands.iter().enumerate() {
            if i == restart_at {
                replica.registry = replica.restarted();
            }
            let before: Vec<(Vec<Endpoint>, u64)> =
                QUERY_SERVICES.iter().map(|s| (answer(&replica.registry, s), replica.registry.discovery_change_index(Some(s)))).collect();
            let any_before = replica.registry.discovery_change_index(None);
            replica.apply(cmd);
            let index = replica.index;
            for (s, (old, old_index)) in QUERY_SERVICES.iter().zip(before) {
                let now = answer(&replica.registry, s);
                let now_index = replica.registry.discovery_change_index(Some(s));
                if now != old {
                    prop_assert_eq!(now_index, index, "{} changed at {} by {:?}", s, index, cmd);
                    prop_assert_eq!(replica.registry.discovery_change_index(None), index);
                } else {
                    prop_assert!(now_index == old_index || now_index == index, "{} index moved backwards or sideways", s);
                }
            }
            prop_assert!(replica.registry.discovery_change_index(None) >= any_before);
        }
    }

    /// The rows the commands staged rebuild exactly the live view, after every command (restart)
    /// and after a trip through the snapshot encoding (snapshot install).
    #[test]
    fn durable_rows_rebuild_the_live_view(log in steps(1..60)) {
        let mut replica = Replica::default();
        for cmd in stamp(&log) {
            replica.apply(&cmd);
            prop_assert_eq!(&replica.restarted(), &replica.registry, "after {:?}", cmd);
        }
        let rows: Vec<(Vec<u8>, Vec<u8>)> = replica.disk.clone().into_iter().collect();
        let decoded = decode_rows(&encode_rows(&rows)).expect("snapshot rows decode");
        prop_assert_eq!(&decoded, &rows);
        prop_assert_eq!(&rebuild(replica.index, decoded.into_iter()), &replica.registry);
    }

    /// Replicas applying the same log agree on every result, the view and every byte on disk,
    /// also when one of them restarts from its rows part-way through.
    #[test]
    fn same_log_gives_identical_replicas(log in steps(1..60), restart_at in any::<prop::sample::Index>()) {
        let commands = stamp(&log);
        let restart_at = restart_at.index(commands.len() + 1);
        let (mut a, mut b, mut c) = (Replica::default(), Replica::default(), Replica::default());
        for (i, cmd) in commands.iter().enumerate() {
            if i == restart_at {
                c.registry = c.restarted();
            }
            let ra = a.apply(cmd);
            prop_assert_eq!(&ra, &b.apply(cmd), "command {}", i + 1);
            prop_assert_eq!(&ra, &c.apply(cmd), "command {} after a restart at {}", i + 1, restart_at);
        }
        prop_assert_eq!(&a.registry, &b.registry);
        prop_assert!(a.disk == b.disk, "disk rows differ between identical replicas");
        prop_assert_eq!(&a.registry, &c.registry);
        prop_assert!(a.disk == c.disk, "disk rows differ after a restart at {}", restart_at);
    }

    /// A command applied again (a client retry, proposed anew at the next index) changes nothing
    /// observable: no read, no record, no durable row.
    #[test]
    fn retrying_a_command_changes_nothing(prefix in steps(0..40), retried in step()) {
        let mut log = prefix;
        log.push(retried);
        let mut commands = stamp(&log);
        let Some(cmd) = commands.pop() else {
            unreachable!("the log holds at least the retried command");
        };
        let mut replica = Replica::default();
        for c in &commands {
            replica.apply(c);
        }
        let first = replica.apply(&cmd);
        let once = Snapshot::of(&replica);
        let second = replica.apply(&cmd);
        let twice = Snapshot::of(&replica);

        let diff = first_difference(&once.reads, &twice.reads);
        prop_assert!(diff.is_none(), "retry of {:?} changed a read (left: once, right: twice) {}",
            cmd, diff.unwrap_or_default());
        prop_assert_eq!(&rebuild(0, once.disk.clone().into_iter()), &rebuild(0, twice.disk.clone().into_iter()),
            "retry of {:?} changed durable rows", cmd);
        prop_assert!(once == twice, "retry of {:?} changed the state", cmd);
        // A put carrying a request id is answered as the first time, whatever it was.
        if matches!(cmd.op, Op::KvPut { request_id: Some(_), .. }) {
            prop_assert_eq!(&first, &second, "retry of {:?} answered differently", cmd);
        }
    }
}

/// The smallest case of a retry that once changed state, kept as a plain test so it reads as a
/// specification: a batch that writes one key twice (the retry used to bump version 2 -> 4).
#[test]
fn retried_batch_with_a_repeated_key_changes_nothing() {
    let write = |value: &str| KvWrite { key: "k0".to_string(), value: value.to_string(), kind: KvType::String };
    let cmd =
        Command { now_ms: START_MS, op: Op::KvBatch { ns: "a".to_string(), writes: vec![write("x"), write("y")] } };
    let mut replica = Replica::default();
    replica.apply(&cmd);
    let once = replica.registry.kv_get("a", "k0");
    replica.apply(&cmd);
    assert_eq!(replica.registry.kv_get("a", "k0"), once);
}

/// A late retry of a put, after another client wrote the key, must not write the old value back.
#[test]
fn late_retry_with_a_request_id_is_not_applied_again() {
    let put = |value: &str, id: &str, now_ms: u64| Command {
        now_ms,
        op: Op::KvPut {
            ns: "a".to_string(),
            write: KvWrite { key: "k0".to_string(), value: value.to_string(), kind: KvType::String },
            expect_version: None,
            request_id: Some(id.to_string()),
        },
    };
    let mut replica = Replica::default();
    let first = replica.apply(&put("x", "r0", START_MS));
    replica.apply(&put("y", "r1", START_MS + 1));
    let retry = replica.apply(&put("x", "r0", START_MS + 2));
    assert_eq!(retry, first, "the retry is answered as the first time");
    assert_eq!(replica.registry.kv_get("a", "k0").map(|i| i.value), Some("y".to_string()));
    // Past the window the id is forgotten and the same request is a new write.
    replica.apply(&put("x", "r0", START_MS + 3 + REQUEST_WINDOW_MS));
    assert_eq!(replica.registry.kv_get("a", "k0").map(|i| i.value), Some("x".to_string()));
}
