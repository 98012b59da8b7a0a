//! Fuzz tests of the binary decoders, run by `cargo test` within a small budget:
//!
//! 1. the MessagePack codec between replicas (`cluster::codec`: `/internal/v1/*` and `/raft/*`
//!    bodies and their answers): arbitrary bytes and mutated valid encodings decode to a value
//!    or an error, never a panic; what decodes encodes again; a forwarded proposal that decodes
//!    and passes the leader's checks can be applied without a panic;
//! 2. the stored rows (`state/rows.rs`, `Registry::from_rows` through `RegistryApp::restore`):
//!    mutated rows and row sets restore to a registry or an error, never a panic, and every read
//!    of a registry they restore to answers.
//!
//! Inputs are mostly mutations (bit flips, MessagePack markers, huge lengths, truncation,
//! insertion, duplication, splicing with another seed) of valid encodings of real messages,
//! which get much further into the decoders than random bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::entry::RaftEntry;
use openraft::errors::{Fatal, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::SnapshotMeta;
use openraft::testing::common::{blank_ent, log_id};
use openraft::type_config::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::{BasicNode, Membership, StoredMembership};
use plum_raft_store::{DataOp, DataWrites, StateMachineApp, decode_rows, encode_rows};
use plum_registry::cluster::codec;
use plum_registry::cluster::internal::{
    ProposeReply, ProposeRequest, ReadIndexReply, RenewReply, RenewRequest, ReplicaStatus,
};
use plum_registry::cluster::network::SnapshotTransfer;
use plum_registry::cluster::rejoin::VoteStanding;
use plum_registry::cluster::types::TypeConfig;
use plum_registry::liveness::{DefaultTtls, Tracker};
use plum_registry::state::{
    AssignmentRecord, Command, CommandResult, DeploymentRecord, EndpointRecord, InstanceRecord, InstanceReport,
    KvRecord, KvWrite, NodeRecord, Op, Placed, Registry, RegistryApp, RequestRecord, Takeover,
};
use plum_types::{
    Artifact, ConfigRef, Dependency, DependencyCondition, DeploymentRequest, HealthReport, KvType, Placement,
    Readiness, ReschedulePause, ServiceSpec,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use serde::Serialize;
use serde::de::DeserializeOwned;

// ---------------------------------------------------------------------------------------------
// Mutations of valid encodings.

// The mutations and the bounded runner are shared with the store's fuzz tests: `plum-fuzzing`.
use plum_fuzzing::{Mutation, fuzz, mutate, mutation, near};

/// What every decoded network message must satisfy: it encodes again, to bytes that decode.
fn reencodes<T: Serialize + DeserializeOwned>(value: &T) -> Result<T, TestCaseError> {
    let bytes = codec::encode(value).map_err(|e| TestCaseError::fail(format!("decoded value does not encode: {e}")))?;
    codec::decode::<T>(&bytes).map_err(|e| TestCaseError::fail(format!("re-encoded value does not decode: {e}")))
}

/// Decodes `bytes` as `T` with the codec the replicas use; `Ok(None)` when it is refused.
fn decoded<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<Option<T>, TestCaseError> {
    match codec::decode::<T>(bytes) {
        Ok(v) => {
            reencodes(&v)?;
            Ok(Some(v))
        }
        Err(_) => Ok(None),
    }
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    codec::encode(v).expect("seed encodes")
}

// ---------------------------------------------------------------------------------------------
// Seeds: real messages and a registry with something of every kind.

const NOW: u64 = 1_700_000_000_000;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn endpoint(service: &str, port: u16, ip: &str) -> EndpointRecord {
    EndpointRecord {
        service_name: service.into(),
        port,
        protocol: "http".into(),
        version: "1.2.0".into(),
        labels: labels(&[("zone", "a")]),
        healthy: true,
        ip: ip.into(),
    }
}

fn spec(name: &str, version: &str, replicas: u32, standby: u32) -> DeploymentRequest {
    DeploymentRequest {
        name: name.into(),
        version: version.into(),
        replicas,
        command: "/bin/echo".into(),
        args: vec!["--port".into(), "${PORT}".into()],
        env: labels(&[("MODE", "prod")]),
        service: Some(ServiceSpec {
            name: name.into(),
            protocol: "http".into(),
            readiness: Some(Readiness { http_path: Some("/healthz".into()), tcp: false }),
        }),
        placement: Placement { labels: labels(&[("zone", "a")]) },
        artifact: Some(Artifact { url: "http://files/echo.tgz".into(), sha256: "ab".repeat(32) }),
        fencing: Some("stop".into()),
        standby,
        request_id: Some("r1".into()),
        depends_on: vec![Dependency {
            service: "db".into(),
            version: Some(">=1.2 <2".into()),
            condition: DependencyCondition::Started,
            min_healthy: 2,
            timeout_ms: 60_000,
            optional: true,
        }],
        restart: Some("on-failure".into()),
        config_refs: vec![ConfigRef {
            namespace: "prod".into(),
            key: "web/url".into(),
            env: Some("WEB_URL".into()),
            file: Some("web.conf".into()),
        }],
        roll_on_config_change: true,
    }
}

fn placed(instance: &str, node: &str) -> Placed {
    Placed { instance_id: instance.into(), node_id: node.into() }
}

fn register(id: &str, node: &str, endpoints: Vec<EndpointRecord>) -> Op {
    Op::RegisterInstance {
        instance_id: id.into(),
        node_id: node.into(),
        ip: "10.0.0.1".into(),
        endpoints,
        ttl_ms: 2_000,
        replace: false,
        upstreams: vec!["db".into()],
    }
}

/// Operations of every kind, in an order that makes each of them do something when applied.
fn seed_ops() -> Vec<Op> {
    let node = |id: &str, ip: &str, can_run: bool| Op::UpsertNode {
        node_id: id.into(),
        ip: ip.into(),
        labels: labels(&[("zone", "a")]),
        can_run,
        ttl_ms: 1_000,
        capacity: 4,
    };
    let report = |id: &str, phase: &str| Op::ReportInstance {
        report: InstanceReport {
            instance_id: id.into(),
            node_id: "n1".into(),
            phase: phase.into(),
            port: 31_000,
            healthy: true,
            exit_code: Some(0),
        },
    };
    vec![
        node("n1", "10.0.0.1", true),
        node("n2", "10.0.0.2", true),
        node("n3", "10.0.0.3", false),
        register("i1", "n1", vec![endpoint("web", 80, ""), endpoint("api", 81, "10.0.0.9")]),
        register("i2", "", vec![endpoint("web", 8080, "")]),
        register("i3", "n2", vec![endpoint("db", 5432, "")]),
        Op::SetHealth {
            instance_id: "i1".into(),
            reports: vec![HealthReport { service_name: "web".into(), port: Some(80), healthy: false }],
            ttl_ms: Some(3_000),
        },
        Op::Renew { nodes: vec![("n1".into(), NOW + 10)], instances: vec![("i1".into(), NOW + 10)] },
        Op::KvPut {
            ns: "app".into(),
            write: KvWrite { key: "color".into(), value: "red".into(), kind: KvType::String },
            expect_version: None,
            request_id: Some("req-1".into()),
        },
        Op::KvPut {
            ns: "app".into(),
            write: KvWrite { key: "limit".into(), value: "10".into(), kind: KvType::Int },
            expect_version: Some(0),
            request_id: None,
        },
        Op::KvBatch {
            ns: "cfg".into(),
            writes: vec![
                KvWrite { key: "a".into(), value: "1.5".into(), kind: KvType::Double },
                KvWrite { key: "b".into(), value: "aGk=".into(), kind: KvType::Bytes },
            ],
        },
        Op::KvDelete { ns: "app".into(), key: "limit".into(), expect_version: Some(1) },
        Op::CreateDeployment {
            deployment_id: "web-r1".into(),
            spec: Box::new(spec("web", "1.0.0", 2, 1)),
            placements: vec![placed("web-r1-0", "n1"), placed("web-r1-1", "n2")],
            standby: vec![placed("web-r1-standby-0", "n1")],
        },
        Op::CreateDeployment {
            deployment_id: "job-r2".into(),
            spec: Box::new(spec("job", "3", 1, 0)),
            placements: vec![placed("job-r2-0", "")],
            standby: vec![],
        },
        report("web-r1-0", "Running"),
        report("web-r1-1", "Starting"),
        Op::UpdateDeployment {
            deployment_id: "web-r1".into(),
            spec: Box::new(spec("web", "2.0.0", 2, 1)),
            in_place: false,
        },
        Op::UpdateDeployment {
            deployment_id: "job-r2".into(),
            spec: Box::new(spec("job", "1.0.0", 1, 0)),
            in_place: true,
        },
        Op::RolloutStep {
            deployment_id: "web-r1".into(),
            remove: None,
            add: Some(placed("web-r1-g2-0", "n2")),
            outcome: None,
            add_standby: false,
        },
        Op::ScaleDeployment {
            deployment_id: "job-r2".into(),
            replicas: 2,
            add: vec![placed("job-r2-s0", "n1")],
            remove: vec![],
            force: false,
        },
        Op::Reassign { moves: vec![placed("job-r2-0", "n2")] },
        Op::RollConfig { deployment_id: "web-r1".into() },
        Op::ObserveEdges { edges: vec![("web".into(), "db".into())] },
        Op::SetReschedulePause {
            pause: Some(ReschedulePause { since_ms: NOW, nodes: vec!["n3".into()], reason: "mass loss".into() }),
        },
        Op::ExpireNodes {
            nodes: vec![("n2".into(), NOW)],
            moves: vec![placed("web-r1-1", "n1")],
            takeovers: vec![Takeover { standby: "web-r1-standby-0".into(), replaces: "web-r1-1".into() }],
        },
        Op::ExpireInstances { instances: vec![("i2".into(), NOW)] },
        Op::Batch {
            ops: vec![
                register("i4", "n1", vec![endpoint("web", 9090, "")]),
                Op::SetHealth { instance_id: "i4".into(), reports: vec![], ttl_ms: None },
            ],
        },
        Op::DeregisterInstance { instance_id: "i3".into() },
    ]
}

/// Operations that only make sense on top of the seed state, or that remove it.
fn extra_ops() -> Vec<Op> {
    vec![
        Op::ForgetInstances { instances: vec![("i2".into(), NOW)] },
        Op::DeleteNode { node_id: "n3".into() },
        Op::DeleteDeployment { deployment_id: "job-r2".into(), force: true },
        Op::SetReschedulePause { pause: None },
        Op::RolloutStep {
            deployment_id: "web-r1".into(),
            remove: Some("web-r1-0".into()),
            add: None,
            outcome: Some("Done".into()),
            add_standby: true,
        },
    ]
}

fn commands() -> Vec<Command> {
    seed_ops().into_iter().enumerate().map(|(i, op)| Command { now_ms: NOW + i as u64 * 100, op }).collect()
}

/// Durable rows (key, value), in key order.
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// The seed registry, and the durable rows its commands left (key order).
fn seeded() -> (Registry, Rows) {
    let (mut app, _applied) = RegistryApp::new(None);
    let mut rows = BTreeMap::new();
    for (i, cmd) in commands().iter().enumerate() {
        let mut writes = DataWrites::default();
        app.apply(i as u64 + 1, cmd, &mut writes);
        for op in writes.into_ops() {
            match op {
                DataOp::Put(k, v) => {
                    rows.insert(k, v);
                }
                DataOp::Delete(k) => {
                    rows.remove(&k);
                }
            }
        }
    }
    (app.registry, rows.into_iter().collect())
}

fn vote(term: u64, node: u64) -> VoteOf<TypeConfig> {
    VoteOf::<TypeConfig>::new(term, node)
}

fn lid(term: u64, index: u64) -> LogIdOf<TypeConfig> {
    log_id::<TypeConfig>(term, 1, index)
}

fn membership() -> Membership<u64, BasicNode> {
    let nodes: BTreeMap<u64, BasicNode> =
        (1..=3).map(|id| (id, BasicNode { addr: format!("127.0.0.1:700{id}") })).collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes).expect("membership")
}

fn entries() -> Vec<EntryOf<TypeConfig>> {
    let mut out =
        vec![blank_ent::<TypeConfig>(2, 1, 5), EntryOf::<TypeConfig>::new_membership(lid(2, 6), membership())];
    out.extend(
        commands()
            .into_iter()
            .take(6)
            .enumerate()
            .map(|(i, c)| EntryOf::<TypeConfig>::new_normal(lid(2, 7 + i as u64), c)),
    );
    out
}

fn snapshot_meta() -> SnapshotMeta<openraft::type_config::alias::CommittedLeaderIdOf<TypeConfig>, u64, BasicNode> {
    SnapshotMeta {
        last_log_id: Some(lid(2, 30)),
        last_membership: StoredMembership::new(Some(lid(2, 6)), membership()),
    }
}

fn append_requests() -> Vec<AppendEntriesRequest<TypeConfig>> {
    let all = entries();
    vec![
        AppendEntriesRequest { vote: vote(2, 1), prev_log_id: None, entries: vec![], leader_commit: None },
        AppendEntriesRequest {
            vote: vote(2, 1),
            prev_log_id: Some(lid(1, 4)),
            entries: all.clone(),
            leader_commit: Some(lid(2, 5)),
        },
        AppendEntriesRequest {
            vote: vote(3, 2),
            prev_log_id: Some(lid(2, 8)),
            entries: all[2..4].to_vec(),
            leader_commit: Some(lid(2, 8)),
        },
    ]
}

fn snapshot_transfers(rows: &[(Vec<u8>, Vec<u8>)]) -> Vec<SnapshotTransfer> {
    vec![
        SnapshotTransfer { vote: vote(2, 1), meta: snapshot_meta(), data: encode_rows(rows) },
        SnapshotTransfer { vote: vote(2, 1), meta: snapshot_meta(), data: encode_rows(&rows[..3.min(rows.len())]) },
    ]
}

fn propose_seeds() -> Vec<Vec<u8>> {
    seed_ops().into_iter().chain(extra_ops()).map(|op| enc(&ProposeRequest { op })).collect()
}

/// A registry app in the seed state, told of lease changes like a leader's.
fn seeded_app(registry: &Registry) -> RegistryApp {
    let tracker = Arc::new(Tracker::new(DefaultTtls {
        node: Duration::from_millis(1_000),
        instance: Duration::from_millis(2_000),
    }));
    let (mut app, _applied) = RegistryApp::new(Some(tracker));
    app.registry = registry.clone();
    app
}

/// Every read the API serves, over every id the registry knows and a few it does not.
fn read_everything(r: &Registry) {
    let nodes: Vec<String> = r.node_records().map(|n| n.node_id.clone()).chain(["nx".to_string()]).collect();
    for id in &nodes {
        let _ = (r.node(id), r.node_record(id), r.assignments_of(id));
    }
    let _ = (r.nodes(), r.deployments(NOW), r.reschedule_pause(), r.placement_index(), r.applied_index());
    for service in r.services().into_iter().chain(["nope".to_string()]) {
        let _ = r.discover(&service, None, None);
        let _ = r.discover(&service, Some("1.2.0"), Some("http"));
        let _ = r.discovery_change_index(Some(&service));
    }
    let _ = (r.discovery_change_index(None), r.discovery_changed_since(0));
    for ns in r.kv_namespaces().into_iter().chain(["none".to_string()]) {
        for key in r.kv_keys(&ns) {
            let _ = r.kv_get(&ns, &key);
        }
        let _ = (r.kv_list(&ns, ""), r.kv_list(&ns, "c"), r.kv_change_index(&ns, ""));
    }
    for d in r.deployment_records() {
        let _ = r.deployment(&d.deployment_id, NOW);
    }
    let _ = r.instance_records().count() + r.assignment_records().count();
}

// ---------------------------------------------------------------------------------------------
// 1. The codec between replicas.

/// `/internal/v1/propose`: a proposal from another replica. What decodes and passes the checks
/// a leader makes (`Op::check`) is applied by every replica, so applying it must not panic.
#[test]
fn forwarded_proposals_decode_or_fail_and_apply_without_panic() {
    let (registry, _) = seeded();
    fuzz("ProposeRequest", 3000, near(propose_seeds()), |bytes| {
        let Some(req) = decoded::<ProposeRequest>(&bytes)? else { return Ok(()) };
        if req.op.check().is_ok() {
            let mut app = seeded_app(&registry);
            let mut writes = DataWrites::default();
            app.apply(registry.applied_index() + 1, &Command { now_ms: NOW + 60_000, op: req.op }, &mut writes);
            read_everything(&app.registry);
        }
        Ok(())
    });
}

/// The log entry payload as raft-store stores it, and the result sent back to the proposer.
#[test]
fn commands_and_results_decode_or_fail() {
    let mut seeds: Vec<Vec<u8>> = commands().iter().map(enc).collect();
    let results = [
        CommandResult::Done,
        CommandResult::NodeBusy { instances: vec!["i1".into(), "i2".into()] },
        CommandResult::KvWritten {
            record: KvRecord {
                value: "red".into(),
                kind: KvType::String,
                updated_ms: NOW,
                version: 2,
                create_index: 3,
                mod_index: 9,
            },
        },
        CommandResult::KvConflict { current: 4 },
        CommandResult::Changed { count: 3 },
        CommandResult::Deployment { deployment_id: "web-r1".into() },
        CommandResult::NotFound,
        CommandResult::Busy { reason: "rolling update in progress".into() },
    ];
    seeds.extend(results.iter().map(enc));
    fuzz("Command / CommandResult", 2000, near(seeds), |bytes| {
        decoded::<Command>(&bytes)?;
        decoded::<CommandResult>(&bytes)?;
        Ok(())
    });
}

/// `/internal/v1/renew`, `/internal/v1/status`, and the answers a replica decodes from another.
#[test]
fn internal_messages_and_replies_decode_or_fail() {
    let status = ReplicaStatus {
        id: 2,
        initialized: true,
        state: "follower".into(),
        term: 7,
        leader: Some(1),
        last_log_index: Some(40),
        applied_index: Some(39),
        voters: vec![1, 2, 3],
        committed: Some(39),
        standing: VoteStanding::open(),
    };
    let seeds = vec![
        enc(&RenewRequest { nodes: vec!["n1".into(), "n2".into()], instances: vec!["i1".into()] }),
        enc(&RenewRequest::default()),
        enc(&RenewReply::Recorded),
        enc(&RenewReply::NotLeader { leader: Some(3) }),
        enc(&ReadIndexReply::Index(42)),
        enc(&ReadIndexReply::NotLeader { leader: None }),
        enc(&ReadIndexReply::Failed { error: "no quorum".into() }),
        enc(&ProposeReply::Applied { result: CommandResult::Changed { count: 1 }, index: 12 }),
        enc(&ProposeReply::NotLeader { leader: Some(2) }),
        enc(&ProposeReply::Indeterminate { error: "lost".into() }),
        enc(&ProposeReply::Failed { error: "malformed".into() }),
        enc(&status),
        enc(&()),
    ];
    fuzz("internal messages", 2500, near(seeds), |bytes| {
        decoded::<RenewRequest>(&bytes)?;
        decoded::<RenewReply>(&bytes)?;
        decoded::<ReadIndexReply>(&bytes)?;
        decoded::<ProposeReply>(&bytes)?;
        decoded::<ReplicaStatus>(&bytes)?;
        decoded::<()>(&bytes)?;
        Ok(())
    });
}

/// `/raft/append`, `/raft/vote`, `/raft/pre-vote`, `/raft/transfer-leader` and their answers.
#[test]
fn raft_rpcs_and_answers_decode_or_fail() {
    type Answer<T> = Result<T, RaftError<TypeConfig>>;
    let mut seeds: Vec<Vec<u8>> = append_requests().iter().map(enc).collect();
    seeds.extend([
        enc(&VoteRequest::<TypeConfig>::new(vote(3, 2), Some(lid(2, 9)))),
        enc(&VoteRequest::<TypeConfig>::new(vote(1, 1), None)),
        enc(&TransferLeaderRequest::<TypeConfig>::new(vote(2, 1), 3, Some(lid(2, 9)))),
        enc(&Answer::Ok(AppendEntriesResponse::<TypeConfig>::Success)),
        enc(&Answer::Ok(AppendEntriesResponse::<TypeConfig>::PartialSuccess(Some(lid(2, 8))))),
        enc(&Answer::Ok(AppendEntriesResponse::<TypeConfig>::Conflict)),
        enc(&Answer::Ok(AppendEntriesResponse::<TypeConfig>::HigherVote(vote(4, 3)))),
        enc(&Answer::<AppendEntriesResponse<TypeConfig>>::Err(RaftError::Fatal(Fatal::Stopped))),
        enc(&Answer::Ok(VoteResponse::<TypeConfig>::new(vote(3, 2), Some(lid(2, 9)), true))),
        enc(&Answer::Ok(SnapshotResponse::<TypeConfig>::new(vote(3, 2)))),
        enc(&Answer::<TransferLeaderResponse<TypeConfig>>::Ok(Ok(()))),
    ]);
    fuzz("raft RPCs", 3000, near(seeds), |bytes| {
        decoded::<AppendEntriesRequest<TypeConfig>>(&bytes)?;
        decoded::<VoteRequest<TypeConfig>>(&bytes)?;
        decoded::<TransferLeaderRequest<TypeConfig>>(&bytes)?;
        decoded::<Answer<AppendEntriesResponse<TypeConfig>>>(&bytes)?;
        decoded::<Answer<VoteResponse<TypeConfig>>>(&bytes)?;
        decoded::<Answer<SnapshotResponse<TypeConfig>>>(&bytes)?;
        decoded::<Answer<TransferLeaderResponse<TypeConfig>>>(&bytes)?;
        Ok(())
    });
}

/// `/raft/snapshot`: the transfer, and its data the way installing it reads it (rows, then the
/// registry rebuilt from them).
#[test]
fn snapshot_transfers_decode_or_fail_and_their_data_restores_or_fails() {
    let (_, rows) = seeded();
    let seeds: Vec<Vec<u8>> = snapshot_transfers(&rows).iter().map(enc).collect();
    fuzz("SnapshotTransfer", 1500, near(seeds), |bytes| {
        let Some(transfer) = decoded::<SnapshotTransfer>(&bytes)? else { return Ok(()) };
        if let Ok(rows) = decode_rows(&transfer.data) {
            let (mut app, _applied) = RegistryApp::new(None);
            if app.restore(30, &mut rows.into_iter()).is_ok() {
                read_everything(&app.registry);
            }
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// 2. Stored rows.

/// Each record type, decoded the way `rows::decode` does (`rmp_serde::from_slice`), from mutated
/// rows of every kind.
#[test]
fn stored_records_decode_or_fail() {
    let (_, rows) = seeded();
    let seeds: Vec<Vec<u8>> = rows.iter().map(|(_, v)| v.clone()).collect();
    fuzz("stored records", 3000, near(seeds), |bytes| {
        let _ = rmp_serde::from_slice::<NodeRecord>(&bytes);
        let _ = rmp_serde::from_slice::<InstanceRecord>(&bytes);
        let _ = rmp_serde::from_slice::<KvRecord>(&bytes);
        let _ = rmp_serde::from_slice::<RequestRecord>(&bytes);
        let _ = rmp_serde::from_slice::<DeploymentRecord>(&bytes);
        let _ = rmp_serde::from_slice::<AssignmentRecord>(&bytes);
        let _ = rmp_serde::from_slice::<ReschedulePause>(&bytes);
        let _ = rmp_serde::from_slice::<u64>(&bytes);
        Ok(())
    });
}

/// A change to the stored rows of a registry.
#[derive(Debug, Clone)]
enum RowChange {
    /// Mutates the value of one row.
    Value(Index, Vec<Mutation>),
    /// Mutates the key of one row.
    Key(Index, Vec<Mutation>),
    /// Gives a row the value of another (often of another kind).
    Swap(Index, Index),
    /// Drops a row.
    Drop(Index),
    /// Adds a row under a known prefix with the value of an existing row.
    Add(Index, Vec<u8>, Index),
}

const PREFIXES: &[&[u8]] = &[b"n/", b"i/", b"k/", b"d/", b"r/", b"D/", b"A/", b"P/", b"S/", b"x/", b""];

fn row_change() -> impl Strategy<Value = RowChange> {
    let key_tail = prop_oneof![
        Just(Vec::new()),
        Just(b"n1".to_vec()),
        Just(b"app\0color".to_vec()),
        Just(b"app".to_vec()),
        Just(vec![0xff, 0xfe]),
        vec(any::<u8>(), 0..8),
    ];
    prop_oneof![
        6 => (any::<Index>(), vec(mutation(), 1..4)).prop_map(|(i, m)| RowChange::Value(i, m)),
        2 => (any::<Index>(), vec(mutation(), 1..3)).prop_map(|(i, m)| RowChange::Key(i, m)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| RowChange::Swap(a, b)),
        1 => any::<Index>().prop_map(RowChange::Drop),
        2 => (any::<Index>(), key_tail, any::<Index>()).prop_map(|(p, k, v)| RowChange::Add(p, k, v)),
    ]
}

fn change_rows(base: &[(Vec<u8>, Vec<u8>)], changes: &[RowChange]) -> Rows {
    let values: Vec<Vec<u8>> = base.iter().map(|(_, v)| v.clone()).collect();
    let mut rows: BTreeMap<Vec<u8>, Vec<u8>> = base.iter().cloned().collect();
    for change in changes {
        let keys: Vec<Vec<u8>> = rows.keys().cloned().collect();
        if keys.is_empty() {
            break;
        }
        match change {
            RowChange::Value(i, m) => {
                let k = &keys[i.index(keys.len())];
                let v = mutate(&rows[k], m, &values);
                rows.insert(k.clone(), v);
            }
            RowChange::Key(i, m) => {
                let k = &keys[i.index(keys.len())];
                let v = rows.remove(k).unwrap_or_default();
                rows.insert(mutate(k, m, &values), v);
            }
            RowChange::Swap(a, b) => {
                let (ka, kb) = (&keys[a.index(keys.len())], &keys[b.index(keys.len())]);
                let v = rows[kb].clone();
                rows.insert(ka.clone(), v);
            }
            RowChange::Drop(i) => {
                rows.remove(&keys[i.index(keys.len())]);
            }
            RowChange::Add(p, tail, v) => {
                let mut k = PREFIXES[p.index(PREFIXES.len())].to_vec();
                k.extend_from_slice(tail);
                rows.insert(k, values[v.index(values.len())].clone());
            }
        }
    }
    rows.into_iter().collect()
}

/// Restart and snapshot install: `RegistryApp::restore` over changed rows builds a registry or
/// reports an error; a registry it builds answers every read.
#[test]
fn changed_row_sets_restore_or_fail() {
    let (registry, rows) = seeded();
    let restored = {
        let (mut app, _applied) = RegistryApp::new(None);
        app.restore(registry.applied_index(), &mut rows.clone().into_iter()).expect("the seed rows restore");
        app.registry
    };
    assert_eq!(restored, registry, "the seed rows give back the registry that wrote them");
    fuzz("restore", 2000, vec(row_change(), 1..5), |changes| {
        let changed = change_rows(&rows, &changes);
        let (mut app, _applied) = RegistryApp::new(None);
        if app.restore(registry.applied_index(), &mut changed.into_iter()).is_ok() {
            read_everything(&app.registry);
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// 3. Deep nesting and the peer-authentication header.

/// `{"op": Batch{ops: [Batch{ops: [... Batch{ops: []}]}]}}`, `depth` batches deep.
fn nested_proposal(depth: usize) -> Vec<u8> {
    const BATCH_OPS: &[u8] = &[0x81, 0xa5, b'B', b'a', b't', b'c', b'h', 0x81, 0xa3, b'o', b'p', b's'];
    let mut out = vec![0x81, 0xa2, b'o', b'p'];
    for _ in 0..depth {
        out.extend_from_slice(BATCH_OPS);
        out.push(0x91);
    }
    out.extend_from_slice(BATCH_OPS);
    out.push(0x90);
    out
}

/// Decodes on a thread with the stack of a tokio worker (2 MiB), where the routes decode.
fn decode_on_worker_stack<T: DeserializeOwned + Send + 'static>(bytes: Vec<u8>) -> Result<T, String> {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || codec::decode::<T>(&bytes).map_err(|e| e.to_string()))
        .expect("thread")
        .join()
        .expect("decoding does not panic")
}

/// Regression: a proposal nested 300 batches deep (3.9 KB) overflowed the stack of the task
/// decoding it in a debug build (the process aborts; rmp-serde's own depth limit, 1024, comes
/// later). The codec now refuses nesting beyond what real messages use.
#[test]
fn a_deeply_nested_proposal_is_refused_not_a_stack_overflow() {
    let refused = decode_on_worker_stack::<ProposeRequest>(nested_proposal(300));
    assert!(refused.is_err_and(|e| e.contains("depth")), "nested 300 deep");
    let command = decode_on_worker_stack::<Command>(
        [&[0x82, 0xa6, b'n', b'o', b'w', b'_', b'm', b's', 0x01][..], &nested_proposal(300)[1..]].concat(),
    );
    assert!(command.is_err());
    let shallow = decode_on_worker_stack::<ProposeRequest>(nested_proposal(5)).expect("5 deep decodes");
    assert!(matches!(shallow.op, Op::Batch { .. }));
}

/// Any nesting depth: a value or an error, on a worker's stack.
#[test]
fn nested_proposals_of_any_depth_decode_or_fail() {
    fuzz("nesting", 24, 0usize..1200, |depth| {
        let _ = decode_on_worker_stack::<ProposeRequest>(nested_proposal(depth));
        Ok(())
    });
    // The deepest real messages still decode: an append carrying every kind of operation (a
    // deployment's spec, a batch of registrations with labelled endpoints) and a membership
    // change, answers, and a snapshot transfer.
    let (_, rows) = seeded();
    let mut entries: Vec<EntryOf<TypeConfig>> = commands()
        .into_iter()
        .chain(extra_ops().into_iter().map(|op| Command { now_ms: NOW, op }))
        .enumerate()
        .map(|(i, c)| EntryOf::<TypeConfig>::new_normal(lid(3, 40 + i as u64), c))
        .collect();
    entries.push(EntryOf::<TypeConfig>::new_membership(lid(3, 99), membership()));
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: vote(3, 1),
        prev_log_id: Some(lid(3, 39)),
        entries,
        leader_commit: Some(lid(3, 39)),
    };
    let decoded = decode_on_worker_stack::<AppendEntriesRequest<TypeConfig>>(enc(&append)).expect("append decodes");
    assert_eq!(decoded.entries.len(), append.entries.len());
    let reply = ProposeReply::Applied { result: CommandResult::NodeBusy { instances: vec!["i1".into()] }, index: 3 };
    decode_on_worker_stack::<ProposeReply>(enc(&reply)).expect("reply decodes");
    for t in snapshot_transfers(&rows) {
        decode_on_worker_stack::<SnapshotTransfer>(enc(&t)).expect("snapshot transfer decodes");
    }
}

/// Regression: a node row under another node's key (`n/n2` holding node `n1`) panicked in a
/// debug build (`debug_assert_eq!` in `Registry::from_rows`) on restart or snapshot install;
/// it is now an error like any other corrupt row.
#[test]
fn a_node_row_under_another_nodes_key_is_an_error_not_a_panic() {
    let (registry, _) = seeded();
    let n1 = registry.node_record("n1").expect("n1").clone();
    let value = rmp_serde::to_vec_named(&n1).unwrap();
    let (mut app, _applied) = RegistryApp::new(None);
    let restored = app.restore(7, &mut vec![(b"n/n2".to_vec(), value.clone())].into_iter());
    assert!(restored.is_err_and(|e| e.to_string().contains("n/n2")));
    app.restore(7, &mut vec![(b"n/n1".to_vec(), value)].into_iter()).expect("the right key restores");
    assert_eq!(app.registry.node_record("n1"), Some(&n1));
}

/// The `x-plum-peer-auth` header in front of every `/raft/*` and `/internal/*` handler:
/// mutated and random headers, bodies, paths are refused (never a panic); only the header as
/// signed, for the request as signed, passes, and only once.
#[test]
fn peer_auth_headers_are_refused_unless_signed_for_the_request() {
    use plum_registry::cluster::peer_auth::PeerAuth;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "fuzz-secret-0123456789abcdef\n").unwrap();
    let auth = PeerAuth::from_file(&file).expect("secret");
    let body = enc(&ProposeRequest { op: Op::DeleteNode { node_id: "n1".into() } });
    let signed = auth.sign("POST", "/internal/v1/propose", &body).expect("signs");
    let change = (
        vec(mutation(), 0..4),
        prop_oneof![Just(None), vec(mutation(), 1..3).prop_map(Some)],
        prop_oneof![4 => Just("/internal/v1/propose"), 1 => Just("/internal/v1/renew"), 1 => Just("/raft/append")],
        prop_oneof![4 => Just("POST"), 1 => Just("GET")],
    );
    fuzz("peer auth", 2000, change, |(header_muts, body_muts, path, method)| {
        let header = mutate(signed.as_bytes(), &header_muts, &[signed.as_bytes().to_vec()]);
        let Ok(header) = String::from_utf8(header) else { return Ok(()) };
        let sent_body = body_muts.map_or(body.clone(), |m| mutate(&body, &m, std::slice::from_ref(&body)));
        // A fresh verifier each time: the signed header is not a replay of an earlier case.
        let fresh = PeerAuth::from_file(&file).expect("secret");
        let verdict =
            fresh.verify(method, path, Some(&header), &sent_body, plum_registry::cluster::peer_auth::unix_ms());
        if verdict.is_ok() {
            // The same time, nonce and MAC; the same request.
            let fields = |h: &str| -> Option<(u64, String, String)> {
                let parts: Vec<&str> = h.split(' ').collect();
                Some((parts.get(1)?.parse().ok()?, parts.get(2)?.to_string(), parts.get(3)?.to_string()))
            };
            prop_assert_eq!(fields(&header), fields(&signed), "accepted a changed header {:?}", header);
            prop_assert!(sent_body == body && path == "/internal/v1/propose" && method == "POST");
            prop_assert!(
                fresh
                    .verify(method, path, Some(&header), &sent_body, plum_registry::cluster::peer_auth::unix_ms())
                    .is_err(),
                "a replay passes"
            );
        }
        Ok(())
    });
    fuzz("peer auth (random headers)", 1000, ".{0,120}", |header| {
        prop_assert!(
            auth.verify("POST", "/raft/vote", Some(&header), b"", plum_registry::cluster::peer_auth::unix_ms())
                .is_err()
        );
        Ok(())
    });
}
