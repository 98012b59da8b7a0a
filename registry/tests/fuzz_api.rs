//! Fuzz tests of the HTTP API, run by `cargo test` within a small budget: one replica runs
//! in-process (a single-voter cluster on loopback, started once for this test binary and shared
//! by every property), and random requests close to real ones go to every route:
//!
//! - JSON bodies built from the real field names of the `plum-types` request types, with values
//!   that are valid, at the limits, just past them, of the wrong type, or missing; sometimes
//!   mutated bytewise, cut short, gzipped, falsely labelled as gzip, or a gzip bomb;
//! - path segments from ids the replica knows and from arbitrary (also invalid UTF-8) text;
//! - query strings from the real parameter names, with junk and unescaped text, for the lenient
//!   query parser;
//! - random methods and paths; and the replica-only routes, with and without a valid signature.
//!
//! Every answer must come within the time limit (no hang), never be a 5xx other than the
//! documented `503` (`retryable` or `outcomeUnknown`), and every 4xx of the public API must be a
//! JSON error. A request refused as malformed (400, 401, 405, 413, 415, or 404 for a read or an
//! unknown route) must not move the replica's applied index: nothing was applied. Background
//! work of the replica (placing waiting instances, rolling updates) may move the index at any
//! time; when it moved during a refused request, the check waits until the replica is quiet and
//! sends the request again.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};
use plum_fuzzing::{mutate_with, mutation};
use plum_registry::cluster::codec;
use plum_registry::cluster::internal::{ProposeReply, ProposeRequest, RenewReply, RenewRequest};
use plum_registry::cluster::network::SnapshotTransfer;
use plum_registry::cluster::peer_auth::{self, PeerAuth};
use plum_registry::cluster::types::TypeConfig;
use plum_registry::config::{Args, ControllerConfig};
use plum_registry::state::{EndpointRecord, Op};
use plum_types::{ErrorBody, MembershipChange};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------------
// The replica under test.

/// How long any answer may take: far beyond a write's commit on a loaded machine; long polls
/// are always sent with a short `timeoutMs`.
const HANG: Duration = Duration::from_secs(10);
/// The replica is quiet when its applied index has not moved for this long.
const QUIET: Duration = Duration::from_millis(1500);
const DAY_MS: u64 = 86_400_000;

struct Replica {
    rt: tokio::runtime::Runtime,
    base: String,
    http: reqwest::Client,
    /// Signs requests to the replica-only routes like a peer would.
    peer: PeerAuth,
    /// One case at a time: another case's writes must not move the index during a check.
    turn: Mutex<()>,
}

static REPLICA: OnceLock<Replica> = OnceLock::new();
static DATA_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_data_dir() {
    if let Some(dir) = DATA_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The replica, started on first use: liveness timings of a day, so no record expires and no
/// renewal is flushed while the tests run (the background moves the index as little as it can).
fn replica() -> &'static Replica {
    REPLICA.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("plum-fuzz-api-").tempdir().expect("temp dir").keep();
        DATA_DIR.set(dir.clone()).expect("set once");
        // SAFETY: registers a plain function without arguments, run once at process exit.
        unsafe { libc::atexit(remove_data_dir) };
        let secret = dir.join("cluster.secret");
        std::fs::write(&secret, "fuzz-api-cluster-secret-0123456789\n").expect("secret");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let args = Args {
            id: Some(1),
            listen: Some(addr),
            data_dir: Some(dir.clone()),
            peers: Some(format!("1={addr}")),
            cluster_secret_file: Some(secret.clone()),
            node_ttl_ms: Some(DAY_MS),
            instance_ttl_ms: Some(DAY_MS),
            min_ttl_ms: Some(DAY_MS),
            max_ttl_ms: Some(DAY_MS),
            dead_retention_ms: Some(DAY_MS),
            renew_flush_ms: Some(DAY_MS / 2),
            // Client authentication stays on, so the client guard reads every mutated
            // `Authorization` header; requests without one act as admin to reach every handler.
            anonymous_role: Some("admin".into()),
            ..Args::default()
        };
        let config = ControllerConfig::from_args(args).expect("config");
        rt.spawn(plum_registry::server::run(config, listener, std::future::pending()));
        let http = reqwest::Client::builder()
            .no_proxy()
            .no_gzip()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HANG)
            .build()
            .expect("client");
        let peer = PeerAuth::from_file(&secret).expect("peer auth");
        let r = Replica { rt, base: format!("http://{addr}"), http, peer, turn: Mutex::new(()) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !r.write_works() {
            assert!(Instant::now() < deadline, "the replica did not start taking writes");
            std::thread::sleep(Duration::from_millis(100));
        }
        r
    })
}

/// An answer, its body read (inflated when gzipped), except for event streams.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// A request as sent: method, path with query (escaped), headers, body; `sign`: signed like a
/// peer's, afresh each time it is sent (a resent signature would be a replay).
#[derive(Clone)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    sign: bool,
}

impl std::fmt::Debug for Req {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body: String = String::from_utf8_lossy(&self.body).chars().take(3000).collect();
        let signed = if self.sign { " (signed)" } else { "" };
        write!(f, "{} {}{signed} {:?} body ({} bytes): {body:?}", self.method, self.path, self.headers, self.body.len())
    }
}

fn req(method: &str, path: &str, body: Vec<u8>) -> Req {
    Req { method: method.into(), path: path.into(), headers: vec![], body, sign: false }
}

impl Replica {
    async fn send_async(&self, req: &Req) -> Result<Answer, String> {
        let method = reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|e| e.to_string())?;
        let mut builder = self.http.request(method, format!("{}{}", self.base, req.path)).body(req.body.clone());
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        if req.sign {
            let signature = self.peer.sign(&req.method, &req.path, &req.body).expect("signs");
            builder = builder.header(peer_auth::HEADER, signature);
        }
        let resp = builder.send().await.map_err(|e| format!("no answer: {e:?}"))?;
        let status = resp.status().as_u16();
        let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let gzipped = header(reqwest::header::CONTENT_ENCODING) == "gzip";
        if content_type.starts_with("text/event-stream") {
            // Streams never end: the answer is its head.
            return Ok(Answer { status, content_type, body: Vec::new() });
        }
        let mut body = resp.bytes().await.map_err(|e| format!("body not read: {e:?}"))?.to_vec();
        // An answer to HEAD says gzip and has no body.
        if gzipped && !body.is_empty() {
            let mut inflated = Vec::new();
            flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut inflated).map_err(|e| format!("bad gzip: {e}"))?;
            body = inflated;
        }
        Ok(Answer { status, content_type, body })
    }

    fn send(&self, req: &Req) -> Result<Answer, TestCaseError> {
        let answered = self.rt.block_on(async { tokio::time::timeout(HANG, self.send_async(req)).await });
        match answered {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(TestCaseError::fail(format!("{e} (a panic in the handler?)"))),
            Err(_) => Err(TestCaseError::fail(format!("no answer within {HANG:?}: a hang"))),
        }
    }

    /// The replica's applied index (header of a read).
    fn applied(&self) -> u64 {
        let read = || async {
            let resp =
                self.http.get(format!("{}/v1/services/list", self.base)).send().await.map_err(|e| e.to_string())?;
            let index = resp.headers().get(plum_types::headers::APPLIED_INDEX).and_then(|v| v.to_str().ok());
            index.and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| format!("no applied index in a {}", resp.status()))
        };
        let mut last = String::new();
        for _ in 0..3 {
            match self.rt.block_on(read()) {
                Ok(index) => return index,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cannot read the applied index: {last}")
    }

    fn write_works(&self) -> bool {
        let put = req("PUT", "/v1/kv/fuzz/alive", br#"{"value": "yes"}"#.to_vec());
        self.rt.block_on(self.send_async(&put)).is_ok_and(|a| a.status == 200)
    }

    /// Waits until the applied index has not moved for [`QUIET`] (at most 30 s).
    fn settle(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = self.applied();
        let mut since = Instant::now();
        while since.elapsed() < QUIET && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.applied();
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
        last
    }
}

// ---------------------------------------------------------------------------------------------
// What every answer must be.

static REFUSED: AtomicUsize = AtomicUsize::new(0);
static RESENT: AtomicUsize = AtomicUsize::new(0);

fn is_peer_route(path: &str) -> bool {
    path.starts_with("/raft/") || path.starts_with("/internal/")
}

fn route_of(req: &Req) -> &str {
    req.path.split('?').next().unwrap_or_default()
}

/// Status and shape: no 5xx but the documented 503s; a JSON error for every 4xx of the API.
fn well_formed(req: &Req, a: &Answer) -> Result<(), TestCaseError> {
    let error_body = || serde_json::from_slice::<ErrorBody>(&a.body).ok().filter(|e| !e.error.is_empty());
    if a.status >= 500 {
        let documented = a.status == 503 && error_body().is_some_and(|e| e.retryable || e.outcome_unknown);
        prop_assert!(documented, "{} answered {}: {}", req.method, a.status, String::from_utf8_lossy(&a.body));
    }
    let public = !is_peer_route(route_of(req));
    if req.method == "HEAD" {
        return Ok(());
    }
    if public && (400..500).contains(&a.status) {
        prop_assert!(a.content_type.starts_with("application/json"), "{} without JSON: {:?}", a.status, a);
        prop_assert!(error_body().is_some(), "{} is not a JSON error: {}", a.status, String::from_utf8_lossy(&a.body));
    }
    if public && (200..300).contains(&a.status) && a.content_type.starts_with("application/json") {
        prop_assert!(serde_json::from_slice::<Value>(&a.body).is_ok(), "bad JSON in a {}", a.status);
    }
    Ok(())
}

/// Answers that refuse a request as malformed, before anything is proposed.
fn refused_as_malformed(req: &Req, a: &Answer) -> bool {
    let unknown_route =
        a.status == 404 && serde_json::from_slice::<ErrorBody>(&a.body).is_ok_and(|e| e.error == "no such route");
    let read = matches!(req.method.as_str(), "GET" | "HEAD");
    let failed_proposal = route_of(req) == "/internal/v1/propose"
        && a.status == 200
        && matches!(codec::decode::<ProposeReply>(&a.body), Ok(ProposeReply::Failed { .. }));
    matches!(a.status, 400 | 401 | 403 | 405 | 413 | 415)
        || unknown_route
        || (a.status == 404 && read)
        || failed_proposal
}

/// Sends `req` and checks its answer; a refused request must not move the applied index.
fn check(req: &Req) -> Result<Answer, TestCaseError> {
    let r = replica();
    let _turn = r.turn.lock().unwrap_or_else(|p| p.into_inner());
    let before = r.applied();
    let answer = r.send(req)?;
    well_formed(req, &answer)?;
    if !refused_as_malformed(req, &answer) {
        return Ok(answer);
    }
    REFUSED.fetch_add(1, Ordering::Relaxed);
    if r.applied() == before {
        return Ok(answer);
    }
    // Moved: by this request, or by the replica's own background work meanwhile. Again, quietly.
    for _ in 0..3 {
        RESENT.fetch_add(1, Ordering::Relaxed);
        let before = r.settle();
        let again = r.send(req)?;
        well_formed(req, &again)?;
        prop_assert_eq!(again.status, answer.status, "the same request answered differently");
        if r.applied() == before {
            return Ok(answer);
        }
    }
    Err(TestCaseError::fail(format!("refused with {} but the applied index moved each time", answer.status)))
}

/// Runs `cases` requests from `strategy` through [`check`]; a failure is shrunk and reported.
fn fuzz<S: Strategy>(what: &str, cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let r = replica();
    let config = Config { cases, failure_persistence: None, max_shrink_iters: 256, ..Config::default() };
    let started = Instant::now();
    // The replica keeps state between cases, so a shrunk input may fail for another reason than
    // the first one: both are reported.
    let first = Mutex::new(None::<String>);
    let run = TestRunner::new(config).run(&strategy, |input| {
        let shown = format!("{input:?}");
        let result = test(input);
        if let Err(e) = &result {
            first.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| format!("{e}\n  input: {shown}"));
        }
        result
    });
    let first = first.into_inner().unwrap_or_else(|p| p.into_inner()).unwrap_or_default();
    match run {
        Ok(()) => {}
        Err(TestError::Fail(why, input)) => {
            panic!("{what}: first failure: {first}\nafter shrinking: {why}\n  input: {input:?}")
        }
        Err(e) => panic!("{what}: {e}"),
    }
    assert!(r.write_works(), "{what}: the replica still takes writes afterwards");
    eprintln!(
        "{what}: {cases} cases in {:?} ({} refused so far, {} sent again after background writes)",
        started.elapsed(),
        REFUSED.load(Ordering::Relaxed),
        RESENT.load(Ordering::Relaxed)
    );
}

// ---------------------------------------------------------------------------------------------
// JSON bodies from the real field names.

#[derive(Debug, Clone, Copy)]
enum F {
    /// A node id (known ones often).
    Node,
    /// An instance id.
    Inst,
    /// A service name.
    Service,
    Ip,
    Short,
    Text,
    Port,
    Ttl,
    U32,
    U64,
    I32,
    Bool,
    Labels,
    KvValue,
    KvType,
    KvKey,
    RequestId,
    DeployName,
    Command,
    Sha,
    Fencing,
    /// Replicas and standbys.
    Count,
    Addr,
    MemberId,
    /// A token role.
    Role,
    Obj(&'static [(&'static str, F)]),
    Arr(&'static F),
}

const ENDPOINT: &[(&str, F)] = &[
    ("serviceName", F::Service),
    ("port", F::Port),
    ("protocol", F::Short),
    ("version", F::Short),
    ("labels", F::Labels),
    ("ip", F::Ip),
    ("nodeId", F::Node),
    ("healthy", F::Bool),
];
const NODE_HEARTBEAT: &[(&str, F)] = &[
    ("nodeId", F::Node),
    ("ip", F::Ip),
    ("addr", F::Ip),
    ("labels", F::Labels),
    ("canRunInstances", F::Bool),
    ("ttlMs", F::Ttl),
    ("capacity", F::U32),
];
const REGISTER: &[(&str, F)] = &[
    ("instanceId", F::Inst),
    ("nodeId", F::Node),
    ("ip", F::Ip),
    ("endpoints", F::Arr(&F::Obj(ENDPOINT))),
    ("ttlMs", F::Ttl),
    ("replace", F::Bool),
];
const SERVICE_HEARTBEAT: &[(&str, F)] = &[
    ("instanceId", F::Inst),
    ("health", F::Arr(&F::Obj(ENDPOINT))),
    ("endpoints", F::Arr(&F::Obj(ENDPOINT))),
    ("ttlMs", F::Ttl),
];
const REGISTER_BATCH: &[(&str, F)] = &[("items", F::Arr(&F::Obj(REGISTER)))];
const HEARTBEAT_BATCH: &[(&str, F)] = &[("items", F::Arr(&F::Obj(SERVICE_HEARTBEAT)))];
const KV_PUT: &[(&str, F)] =
    &[("value", F::KvValue), ("type", F::KvType), ("expectVersion", F::U64), ("requestId", F::RequestId)];
const KV_BATCH_ITEM: &[(&str, F)] = &[("key", F::KvKey), ("value", F::KvValue), ("type", F::KvType)];
const KV_BATCH: &[(&str, F)] = &[("items", F::Arr(&F::Obj(KV_BATCH_ITEM))), ("requestId", F::RequestId)];
const READINESS: &[(&str, F)] = &[("httpPath", F::Text), ("tcp", F::Bool)];
const SERVICE_SPEC: &[(&str, F)] = &[("name", F::Service), ("protocol", F::Short), ("readiness", F::Obj(READINESS))];
const PLACEMENT: &[(&str, F)] = &[("labels", F::Labels)];
const ARTIFACT: &[(&str, F)] = &[("url", F::Text), ("sha256", F::Sha)];
const DEPLOYMENT: &[(&str, F)] = &[
    ("name", F::DeployName),
    ("version", F::Short),
    ("replicas", F::Count),
    ("command", F::Command),
    ("args", F::Arr(&F::Text)),
    ("env", F::Labels),
    ("service", F::Obj(SERVICE_SPEC)),
    ("placement", F::Obj(PLACEMENT)),
    ("artifact", F::Obj(ARTIFACT)),
    ("fencing", F::Fencing),
    ("standby", F::Count),
    ("requestId", F::RequestId),
];
/// What a PATCH may change (all but `name` and `requestId`).
const DEPLOYMENT_PATCH: &[(&str, F)] = &[
    ("version", F::Short),
    ("replicas", F::Count),
    ("command", F::Command),
    ("args", F::Arr(&F::Text)),
    ("env", F::Labels),
    ("service", F::Obj(SERVICE_SPEC)),
    ("placement", F::Obj(PLACEMENT)),
    ("fencing", F::Fencing),
    ("standby", F::Count),
];
const INSTANCE_STATUS: &[(&str, F)] = &[
    ("instanceId", F::Inst),
    ("nodeId", F::Node),
    ("phase", F::Short),
    ("exitCode", F::I32),
    ("healthy", F::Bool),
    ("port", F::Port),
    ("tsUnix", F::U64),
];
const MEMBERSHIP: &[(&str, F)] = &[("id", F::MemberId), ("apiAddr", F::Addr)];
const TOKEN: &[(&str, F)] = &[("name", F::Short), ("role", F::Role), ("nodeId", F::Node)];

const NODES: &[&str] = &["n1", "n2", "n3", "agent-1"];
const INSTANCES: &[&str] = &["i1", "i2", "i3", "web-r1-0", "web-r1-standby-0", "job-r2-0"];
const SERVICES: &[&str] = &["web", "api", "db"];
const NAMESPACES: &[&str] = &["app", "cfg", "fuzz"];
const KEYS: &[&str] = &["color", "limit", "a/b", "keys", "batch", "key"];
/// Ids of deployments created with a `requestId` (`{name}-{requestId}`).
const DEPLOYMENTS: &[&str] = &["web-r1", "job-r2", "web-r2", "job-r1"];

fn text(xs: &'static [&'static str]) -> BoxedStrategy<String> {
    select(xs).prop_map(str::to_string).boxed()
}

/// Text that breaks the rules: empty, control characters, NUL, too long, odd Unicode.
fn bad_text() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        Just("a\u{0}b".to_string()),
        Just("line\nbreak".to_string()),
        Just("tab\there".to_string()),
        Just("\u{7f}".to_string()),
        Just("x".repeat(129)),
        Just("y".repeat(257)),
        Just("z".repeat(513)),
        Just("\u{202e}reversed\u{fe0f}".to_string()),
        Just(" ".to_string()),
        ".{0,12}",
    ]
    .boxed()
}

fn id(known: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![6 => text(known), 2 => "[a-z0-9][a-z0-9._-]{0,10}", 2 => bad_text()].boxed()
}

fn number(xs: &'static [i128]) -> BoxedStrategy<Value> {
    select(xs)
        .prop_map(|n| match (u64::try_from(n), i64::try_from(n)) {
            (Ok(u), _) => json!(u),
            (_, Ok(i)) => json!(i),
            // Beyond 64 bits: as a float, which no integer field takes.
            _ => json!(n as f64),
        })
        .boxed()
}

/// Any JSON value, shallow: the wrong type for most fields.
fn junk() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(Value::Array),
            vec(("[a-zA-Z]{1,6}", inner), 0..3).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

fn labels() -> BoxedStrategy<Value> {
    let key = prop_oneof![6 => text(&["zone", "tier", "gpu"]), 1 => bad_text()];
    let value = prop_oneof![6 => text(&["a", "b", "true"]), 1 => bad_text()];
    prop_oneof![
        12 => vec((key, value), 0..4).prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k, Value::from(v))).collect())),
        // More labels than allowed.
        1 => Just(Value::Object((0..65).map(|i| (format!("k{i}"), json!("v"))).collect())),
    ]
    .boxed()
}

fn good(f: F) -> BoxedStrategy<Value> {
    let s = |st: BoxedStrategy<String>| st.prop_map(Value::from).boxed();
    match f {
        F::Node => s(id(NODES)),
        F::Inst => s(id(INSTANCES)),
        F::Service => s(id(SERVICES)),
        F::Ip => s(prop_oneof![6 => text(&["10.0.0.1", "10.0.0.2", "::1"]), 1 => bad_text()].boxed()),
        F::Short => s(prop_oneof![6 => text(&["http", "grpc", "1.0.0", "2.0.0", "Running"]), 1 => bad_text()].boxed()),
        F::Text => s(prop_oneof![3 => ".{0,16}", 1 => bad_text()].boxed()),
        F::Port => number(&[0, 1, 80, 8080, 65535, 65536, 4_294_967_295, 4_294_967_296, -1]),
        F::Ttl => number(&[0, 1, 500, 1000, DAY_MS as i128, u64::MAX as i128, u64::MAX as i128 + 1, -5]),
        F::U32 => number(&[0, 1, 4, 4_294_967_295, 4_294_967_296, -1]),
        F::U64 => number(&[0, 1, 2, 7, u64::MAX as i128, u64::MAX as i128 + 1, -1]),
        F::I32 => number(&[0, 1, -1, 137, i32::MAX as i128, i32::MIN as i128, 1 << 31]),
        F::Bool => prop_oneof![6 => any::<bool>().prop_map(Value::from), 1 => Just(Value::Null)].boxed(),
        F::Labels => labels(),
        F::KvValue => prop_oneof![
            8 => text(&["red", "12", " 12 ", "-3", "1.5", "1e3", "NaN", "true", "false", "aGk=", "***", ""]),
            1 => Just("v".repeat(256 * 1024 + 1)),
            1 => bad_text(),
        ]
        .prop_map(Value::from)
        .boxed(),
        F::KvType => s(text(&["", "string", "int", "double", "bool", "bytes", "float", "INT"])),
        F::KvKey => s(id(KEYS)),
        F::RequestId => s(prop_oneof![4 => text(&["r1", "r2", "req-1"]), 1 => bad_text()].boxed()),
        F::DeployName => {
            s(prop_oneof![6 => text(&["web", "job", "a.b_c-d"]), 1 => text(&["bad name", "a/b"]), 1 => bad_text()]
                .boxed())
        }
        F::Command => s(text(&["/bin/true", "/bin/echo", "bin/relative", "", "/bin/\u{7}"])),
        F::Sha => {
            s(prop_oneof![Just("ab".repeat(32)), Just("zz".repeat(32)), Just("ab".to_string()), Just(String::new())]
                .boxed())
        }
        F::Fencing => s(text(&["stop", "none", "kill", ""])),
        F::Count => prop_oneof![
            12 => (0u32..4).prop_map(Value::from),
            1 => number(&[999, 1000, 1001, 4_294_967_295, 4_294_967_296, -1]),
        ]
        .boxed(),
        F::Addr => s(text(&["127.0.0.1:9", "nohost", "http://127.0.0.1:1/", ""])),
        F::MemberId => number(&[0, 1, 2, 9, u64::MAX as i128, -1]),
        F::Role => s(text(&["", "read", "agent", "write", "admin", "root", "Admin"])),
        F::Obj(fields) => object(fields),
        F::Arr(item) => prop_oneof![
            12 => vec(value(*item), 0..4).prop_map(Value::Array),
            // Past the limits of endpoints (64) and batch items (1000).
            1 => (tame(*item), select(&[65usize, 1001][..])).prop_map(|(v, n)| Value::Array(vec![v; n])),
        ]
        .boxed(),
    }
}

/// A valid value for the field (requests built only from these mostly succeed, so the fuzz
/// reaches the state that later requests act on: nodes, instances, keys, deployments).
fn tame(f: F) -> BoxedStrategy<Value> {
    let s = |xs: &'static [&'static str]| text(xs).prop_map(Value::from).boxed();
    match f {
        F::Node => s(NODES),
        F::Inst => s(INSTANCES),
        F::Service => s(SERVICES),
        F::Ip => s(&["10.0.0.1", "10.0.0.2"]),
        F::Short => s(&["http", "1.2.0", "2.0.0", "Running"]),
        F::Text => s(&["--port", "/healthz", "x"]),
        F::Port => (1u32..65536).prop_map(Value::from).boxed(),
        F::Ttl => select(&[500u64, 1000, DAY_MS][..]).prop_map(Value::from).boxed(),
        F::U32 | F::Count => (0u32..4).prop_map(Value::from).boxed(),
        F::U64 => (0u64..4).prop_map(Value::from).boxed(),
        F::I32 => (-1i32..2).prop_map(Value::from).boxed(),
        F::Bool => any::<bool>().prop_map(Value::from).boxed(),
        F::Labels => vec((s(&["zone", "tier"]), s(&["a", "b"])), 0..3)
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.as_str().unwrap().to_string(), v)).collect()))
            .boxed(),
        F::KvValue => s(&["red", "12", "1.5", "true", "aGk="]),
        F::KvType => s(&["", "string", "int", "double", "bool", "bytes"]),
        F::KvKey => s(KEYS),
        F::RequestId => s(&["r1", "r2"]),
        F::DeployName => s(&["web", "job"]),
        F::Command => s(&["/bin/true", "/bin/echo"]),
        F::Sha => Just(Value::from("ab".repeat(32))).boxed(),
        F::Fencing => s(&["stop", "none"]),
        F::Addr => s(&["127.0.0.1:9"]),
        F::MemberId => select(&[0u64, 2, 9][..]).prop_map(Value::from).boxed(),
        F::Role => s(&["read", "agent", "write", "admin"]),
        F::Obj(fields) => fields_of(fields, 0.8, tame),
        F::Arr(item) => vec(tame(*item), 0..3).prop_map(Value::Array).boxed(),
    }
}

/// An object with some of `fields` (each with probability `p`), values from `v`.
fn fields_of(fields: &'static [(&'static str, F)], p: f64, v: fn(F) -> BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    let members: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .iter()
        .map(|(name, f)| proptest::option::weighted(p, v(*f).prop_map(move |v| (name.to_string(), v))).boxed())
        .collect();
    members.prop_map(|m| Value::Object(m.into_iter().flatten().collect())).boxed()
}

/// A field's value: mostly of the right type, sometimes anything.
fn value(f: F) -> BoxedStrategy<Value> {
    prop_oneof![10 => good(f), 1 => junk()].boxed()
}

/// An object with some of `fields`, maybe an unknown one; sometimes not an object at all.
fn object(fields: &'static [(&'static str, F)]) -> BoxedStrategy<Value> {
    let members: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .iter()
        .map(|(name, f)| proptest::option::weighted(0.7, value(*f).prop_map(move |v| (name.to_string(), v))).boxed())
        .collect();
    let extra = proptest::option::weighted(0.1, ("[a-zA-Z]{1,8}", junk()));
    prop_oneof![
        15 => (members, extra).prop_map(|(members, extra)| {
            Value::Object(members.into_iter().flatten().chain(extra).collect::<Map<_, _>>())
        }),
        1 => junk(),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Bytes: mutations, encodings.

const JSON_BYTES: &[u8] = b"{}[]\":,\\ 0123456789-+.eEntrufalsu\x00\x7f\xff";

// Byte mutations are shared with the codec fuzzers (`plum-fuzzing`), with JSON's own bytes.

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

const MAX_SENT_BODY: usize = 1_300_000;

/// 3 MiB of spaces, gzipped to a few KiB: past every body limit once inflated.
fn bomb() -> Vec<u8> {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| gzip(&vec![b' '; 3 * 1024 * 1024])).clone()
}

/// How a body travels.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    Plain,
    Gzip,
    /// Says gzip, is not.
    FalseGzip,
    /// An encoding the API does not read.
    Brotli,
    /// A small gzip that inflates past the body limit.
    Bomb,
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![
        40 => Just(Encoding::Plain),
        4 => Just(Encoding::Gzip),
        1 => Just(Encoding::FalseGzip),
        1 => Just(Encoding::Brotli),
        1 => Just(Encoding::Bomb),
    ]
}

const ODD_BODIES: &[&[u8]] = &[b"", b"   ", b"null", b"[]", b"{}", b"\"x\"", b"{\"a\":", b"\xff\xfe"];

/// A JSON body for `schema`: serialised, sometimes mutated, empty or random.
fn json_body(schema: &'static [(&'static str, F)]) -> BoxedStrategy<Vec<u8>> {
    let doc =
        prop_oneof![object(schema), fields_of(schema, 0.8, tame)].prop_map(|v| serde_json::to_vec(&v).expect("json"));
    prop_oneof![
        16 => doc.clone(),
        4 => (doc, vec(mutation(), 1..4)).prop_map(|(d, m)| mutate_with(&d, &m, &[], JSON_BYTES)),
        1 => select(ODD_BODIES).prop_map(<[u8]>::to_vec),
        1 => vec(any::<u8>(), 0..40),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Paths, queries, headers, whole requests.

/// Escapes everything but unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn escape(bytes: &[u8]) -> String {
    percent_encode(bytes, COMPONENT).to_string()
}

/// A path segment: a known id, arbitrary text, or bytes that are not UTF-8.
fn segment(known: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        8 => id(known).prop_map(|s| escape(s.as_bytes())),
        1 => vec(any::<u8>(), 1..6).prop_map(|b| escape(&b)),
        1 => Just("%FF%FE".to_string()),
        1 => Just("%".to_string()),
    ]
    .boxed()
}

#[derive(Debug, Clone, Copy)]
enum Q {
    Node,
    Inst,
    Service,
    Version,
    Protocol,
    Num,
    Flag,
    Strategy,
    Prefix,
}

fn query_value(q: Q) -> BoxedStrategy<String> {
    let num = prop_oneof![
        4 => (0u64..50).prop_map(|n| n.to_string()),
        1 => text(&["-1", "abc", "1.5", "", "18446744073709551615", "18446744073709551616", "0x10", "+3"]),
    ];
    match q {
        Q::Node => id(NODES),
        Q::Inst => id(INSTANCES),
        Q::Service => id(SERVICES),
        Q::Version => text(&["1.2.0", "^1.2", "~1.4.0", ">=1.0, <2.0", "*", "^one", ">>", "v2", ",", "=", ""]),
        Q::Protocol => text(&["http", "grpc", ""]),
        Q::Num => num.boxed(),
        Q::Flag => text(&["true", "1", "yes", "false", "no", "", "TRUE"]),
        Q::Strategy => text(&["random", "lazy", "first", ""]),
        Q::Prefix => prop_oneof![text(&["", "c", "a/", "col"]), ".{0,6}"].boxed(),
    }
}

/// Query pairs the lenient parser must take: escaped, sent raw, or junk.
fn query(params: &'static [(&'static str, Q)]) -> BoxedStrategy<Vec<String>> {
    let known: Vec<BoxedStrategy<Option<String>>> = params
        .iter()
        .map(|(name, q)| {
            let v = query_value(*q);
            proptest::option::weighted(
                0.5,
                prop_oneof![
                    6 => v.clone().prop_map(move |v| format!("{name}={}", escape(v.as_bytes()))),
                    // Unescaped, the way some clients send it (only what a URL can carry).
                    1 => v.prop_map(move |v| format!("{name}={}", v.replace(['#', '&', '%', '\n', '\t', '\0'], ""))),
                ],
            )
            .boxed()
        })
        .collect();
    // No extra key can spell `watch` or `timeoutMs`: a long poll must be asked for explicitly.
    let extra = vec(("[a-vx-z]{1,5}", ".{0,6}").prop_map(|(k, v)| format!("{k}={}", escape(v.as_bytes()))), 0..2);
    let junk = vec(select(&["", "&", "=", "==x", "%", "%zz", "k=%FF%FE", "novalue", "a=b=c", "+=+"][..]), 0..2);
    (known, extra, junk)
        .prop_map(|(known, extra, junk)| {
            known.into_iter().flatten().chain(extra).chain(junk.into_iter().map(str::to_string)).collect()
        })
        .boxed()
}

/// With `watch` on, a short (or malformed) `timeoutMs` goes last, so no long poll waits 30 s.
fn bound_long_polls(pairs: &mut Vec<String>, short: u64, malformed: bool) {
    let watching = pairs.iter().any(|p| matches!(p.as_str(), "watch=true" | "watch=1" | "watch=yes"));
    if watching {
        pairs.push(if malformed { "timeoutMs=-1".to_string() } else { format!("timeoutMs={short}") });
    }
}

#[derive(Debug, Clone, Copy)]
enum Body {
    None,
    Json(&'static [(&'static str, F)]),
}

#[derive(Debug)]
struct Route {
    /// With `{node}`, `{ns}`, `{key}`, `{dep}`, `{member}` placeholders.
    path: &'static str,
    methods: &'static [&'static str],
    bodies: &'static [Body],
    query: &'static [(&'static str, Q)],
}

const READ: &[(&str, Q)] = &[("consistent", Q::Flag)];
const WRITE: &[(&str, Q)] = &[("redirect", Q::Flag)];
const DISCOVERY: &[(&str, Q)] = &[
    ("service", Q::Service),
    ("version", Q::Version),
    ("protocol", Q::Protocol),
    ("limit", Q::Num),
    ("watch", Q::Flag),
    ("index", Q::Num),
    ("consistent", Q::Flag),
    ("strategy", Q::Strategy),
];

const SERVICE_ROUTES: &[Route] = &[
    Route { path: "/v1/nodes/heartbeat", methods: &["POST"], bodies: &[Body::Json(NODE_HEARTBEAT)], query: WRITE },
    Route { path: "/v1/nodes", methods: &["GET"], bodies: &[Body::None], query: READ },
    Route { path: "/v1/nodes/{node}", methods: &["GET", "DELETE"], bodies: &[Body::None], query: READ },
    Route { path: "/v1/services/register", methods: &["POST"], bodies: &[Body::Json(REGISTER)], query: WRITE },
    Route {
        path: "/v1/services/heartbeat",
        methods: &["POST"],
        bodies: &[Body::Json(SERVICE_HEARTBEAT)],
        query: WRITE,
    },
    Route {
        path: "/v1/services/register/batch",
        methods: &["POST"],
        bodies: &[Body::Json(REGISTER_BATCH)],
        query: WRITE,
    },
    Route {
        path: "/v1/services/heartbeat/batch",
        methods: &["POST"],
        bodies: &[Body::Json(HEARTBEAT_BATCH)],
        query: WRITE,
    },
    Route { path: "/v1/services", methods: &["DELETE"], bodies: &[Body::None], query: &[("instanceId", Q::Inst)] },
    Route { path: "/v1/services/list", methods: &["GET"], bodies: &[Body::None], query: READ },
];

const DISCOVERY_ROUTES: &[Route] = &[
    Route { path: "/v1/discovery", methods: &["GET"], bodies: &[Body::None], query: DISCOVERY },
    Route { path: "/v1/discovery/random", methods: &["GET"], bodies: &[Body::None], query: DISCOVERY },
    Route { path: "/v1/discovery/one", methods: &["GET"], bodies: &[Body::None], query: DISCOVERY },
    Route {
        path: "/v1/discovery/stream",
        methods: &["GET"],
        bodies: &[Body::None],
        query: &[("service", Q::Service), ("index", Q::Num)],
    },
    Route { path: "/healthz", methods: &["GET"], bodies: &[Body::None], query: &[] },
    Route { path: "/metrics", methods: &["GET"], bodies: &[Body::None], query: &[] },
];

const KV_ROUTES: &[Route] = &[
    Route { path: "/v1/kv", methods: &["GET"], bodies: &[Body::None], query: READ },
    Route {
        path: "/v1/kv/{ns}",
        methods: &["GET"],
        bodies: &[Body::None],
        query: &[("prefix", Q::Prefix), ("watch", Q::Flag), ("index", Q::Num), ("consistent", Q::Flag)],
    },
    Route {
        path: "/v1/kv/{ns}/keys",
        methods: &["GET", "PUT", "DELETE"],
        bodies: &[Body::Json(KV_PUT)],
        query: &[("expectVersion", Q::Num)],
    },
    Route {
        path: "/v1/kv/{ns}/batch",
        methods: &["POST", "GET", "PUT", "DELETE"],
        bodies: &[Body::Json(KV_BATCH), Body::Json(KV_PUT)],
        query: &[("expectVersion", Q::Num)],
    },
    Route {
        path: "/v1/kv/{ns}/key/{key}",
        methods: &["GET", "PUT", "DELETE"],
        bodies: &[Body::Json(KV_PUT)],
        query: &[("expectVersion", Q::Num), ("redirect", Q::Flag)],
    },
    Route {
        path: "/v1/kv/{ns}/{key}",
        methods: &["GET", "PUT", "DELETE"],
        bodies: &[Body::Json(KV_PUT)],
        query: &[("expectVersion", Q::Num), ("consistent", Q::Flag)],
    },
];

const DEPLOYMENT_ROUTES: &[Route] = &[
    // Agents heartbeat their node, poll their assignments, report.
    Route { path: "/v1/nodes/heartbeat", methods: &["POST"], bodies: &[Body::Json(NODE_HEARTBEAT)], query: WRITE },
    Route { path: "/v1/deployments", methods: &["GET", "POST"], bodies: &[Body::Json(DEPLOYMENT)], query: READ },
    Route {
        path: "/v1/deployments/{dep}",
        methods: &["GET", "DELETE", "PATCH"],
        bodies: &[Body::Json(DEPLOYMENT), Body::Json(DEPLOYMENT_PATCH)],
        query: READ,
    },
    Route { path: "/v1/deployments/{dep}/rollback", methods: &["POST"], bodies: &[Body::None], query: &[] },
    Route {
        path: "/v1/assignments",
        methods: &["GET"],
        bodies: &[Body::None],
        query: &[("nodeId", Q::Node), ("watch", Q::Flag), ("index", Q::Num)],
    },
    Route { path: "/v1/stream", methods: &["GET"], bodies: &[Body::None], query: &[("nodeId", Q::Node)] },
    Route { path: "/v1/instances/status", methods: &["POST"], bodies: &[Body::Json(INSTANCE_STATUS)], query: WRITE },
];

const CLUSTER_ROUTES: &[Route] = &[
    Route { path: "/v1/cluster", methods: &["GET"], bodies: &[Body::None], query: &[] },
    Route { path: "/v1/cluster/learners", methods: &["POST"], bodies: &[Body::Json(MEMBERSHIP)], query: &[] },
    Route { path: "/v1/cluster/voters", methods: &["POST"], bodies: &[Body::Json(MEMBERSHIP)], query: &[] },
    Route { path: "/v1/cluster/members/{member}", methods: &["DELETE"], bodies: &[Body::None], query: &[] },
    Route { path: "/v1/cluster/transfer-leader", methods: &["POST"], bodies: &[Body::Json(MEMBERSHIP)], query: &[] },
    Route { path: "/v1/cluster/reschedule", methods: &["POST"], bodies: &[Body::None], query: &[] },
    Route { path: "/v1/failovers", methods: &["GET"], bodies: &[Body::None], query: &[("consistent", Q::Flag)] },
    Route { path: "/v1/tokens", methods: &["GET", "POST"], bodies: &[Body::Json(TOKEN)], query: &[] },
    Route { path: "/v1/tokens/{member}", methods: &["DELETE"], bodies: &[Body::None], query: &[] },
    Route { path: "/v1/auth/whoami", methods: &["GET"], bodies: &[Body::None], query: &[] },
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "FUZZ"];

fn headers() -> BoxedStrategy<Vec<(String, String)>> {
    let content_type = proptest::option::weighted(
        0.3,
        select(&["application/json", "text/plain", "application/x-www-form-urlencoded", "x/y; charset=latin1"][..]),
    );
    let redirect = proptest::option::weighted(0.1, select(&["1", "true", "no"][..]));
    let accept_gzip = proptest::option::weighted(0.15, Just("gzip"));
    let last_event = proptest::option::weighted(0.1, select(&["3", "-1", "abc", "99999999999999999999"][..]));
    // Unusable, malformed and well-formed but unknown tokens: all refused (401) before a handler.
    let authorization = proptest::option::weighted(
        0.1,
        select(
            &[
                "Bearer nonsense",
                "Basic dXNlcjpwYXNz",
                "Bearer",
                "bearer plum_0123456789ab_0000000000000000000000000000000000000000000000000000000000000000",
                "Bearer plum_0123456789ab_00",
            ][..],
        ),
    );
    (content_type, redirect, accept_gzip, last_event, authorization)
        .prop_map(|(ct, redirect, gz, last, authorization)| {
            let mut h = Vec::new();
            let mut add = |k: &str, v: Option<&str>| {
                if let Some(v) = v {
                    h.push((k.to_string(), v.to_string()));
                }
            };
            add("content-type", ct);
            add(plum_types::headers::REDIRECT, redirect);
            add("accept-encoding", gz);
            add("last-event-id", last);
            add("authorization", authorization);
            h
        })
        .boxed()
}

fn route_request(route: &'static Route) -> BoxedStrategy<Req> {
    let method = prop_oneof![12 => select(route.methods), 1 => select(METHODS)];
    let placeholders: Vec<BoxedStrategy<String>> = ["{node}", "{ns}", "{key}", "{dep}", "{member}"]
        .iter()
        .map(|p| match *p {
            "{node}" => segment(NODES),
            "{ns}" => segment(NAMESPACES),
            "{key}" => segment(KEYS),
            "{dep}" => segment(DEPLOYMENTS),
            _ => prop_oneof![
                select(&["1", "2", "0", "18446744073709551616", "-1", "x"][..]).prop_map(str::to_string),
                segment(NODES)
            ]
            .boxed(),
        })
        .collect();
    let body = select(route.bodies).prop_flat_map(|b| match b {
        Body::None => prop_oneof![9 => Just(Vec::new()), 1 => json_body(NODE_HEARTBEAT)].boxed(),
        Body::Json(schema) => json_body(schema),
    });
    (method, placeholders, query(route.query), (0u64..200, proptest::bool::weighted(0.2)), body, encoding(), headers())
        .prop_map(move |(method, segs, mut pairs, (short, malformed), body, enc, mut headers)| {
            let mut path = route.path.to_string();
            for (p, seg) in ["{node}", "{ns}", "{key}", "{dep}", "{member}"].iter().zip(segs) {
                path = path.replace(p, &seg);
            }
            bound_long_polls(&mut pairs, short, malformed);
            if !pairs.is_empty() {
                path = format!("{path}?{}", pairs.join("&"));
            }
            let body = match enc {
                Encoding::Plain => body,
                Encoding::Gzip => {
                    headers.push(("content-encoding".into(), "gzip".into()));
                    gzip(&body)
                }
                Encoding::FalseGzip => {
                    headers.push(("content-encoding".into(), "gzip".into()));
                    body
                }
                Encoding::Brotli => {
                    headers.push(("content-encoding".into(), "br".into()));
                    body
                }
                Encoding::Bomb => {
                    headers.push(("content-encoding".into(), "gzip".into()));
                    bomb()
                }
            };
            let mut body = body;
            // Past the 1 MiB limit, but not so far that the client is still sending when the
            // replica answers 413 and closes (the client then reports a broken pipe).
            body.truncate(MAX_SENT_BODY);
            Req { method: method.to_string(), path, headers, body, sign: false }
        })
        .boxed()
}

fn requests(routes: &'static [Route]) -> BoxedStrategy<Req> {
    (0..routes.len()).prop_flat_map(move |i| route_request(&routes[i])).boxed()
}

/// Requests that would change the cluster's membership for real (add a learner that does not
/// exist, demote or remove the only voter): not sent. Everything else about these routes is.
fn changes_membership(req: &Req) -> bool {
    let route = route_of(req);
    if req.method == "DELETE" && route.starts_with("/v1/cluster/members/") {
        // As the route sees it: unescaped (`%2B1` is `+1`, which parses as 1).
        let id = route.rsplit('/').next().map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy());
        return id.is_some_and(|id| id.parse::<u64>().is_ok_and(|id| id == 1));
    }
    if req.method != "POST" {
        return false;
    }
    let mut body = req.body.clone();
    if req.headers.iter().any(|(k, v)| k == "content-encoding" && v == "gzip") {
        let mut inflated = Vec::new();
        if flate2::read::GzDecoder::new(&req.body[..]).read_to_end(&mut inflated).is_err() {
            return false;
        }
        body = inflated;
    }
    let Ok(change) = serde_json::from_slice::<MembershipChange>(&body) else { return false };
    match route {
        "/v1/cluster/learners" => change.id != 0 && change.api_addr.is_some(),
        "/v1/cluster/voters" => change.id == 1,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Properties of the public API.

fn run_routes(what: &str, cases: u32, routes: &'static [Route]) {
    fuzz(what, cases, requests(routes), |req| {
        if changes_membership(&req) {
            return Ok(());
        }
        check(&req).map(|_| ())
    });
}

/// Node heartbeats, registrations, instance heartbeats (single and batched), deregistration.
#[test]
fn node_and_service_requests() {
    run_routes("nodes and services", 500, SERVICE_ROUTES);
}

/// Discovery: filters, versions and ranges, strategies, limits, long polls, the event stream.
#[test]
fn discovery_requests() {
    run_routes("discovery", 300, DISCOVERY_ROUTES);
}

/// The config store: single keys, literal `keys`/`batch` keys, batches, CAS, watches.
#[test]
fn kv_requests() {
    run_routes("kv", 500, KV_ROUTES);
}

/// Deployments (create, patch, delete), the agents' assignments, stream and status reports.
#[test]
fn deployment_and_agent_requests() {
    run_routes("deployments and agents", 500, DEPLOYMENT_ROUTES);
}

/// Membership and rescheduling: bad bodies and ids (real membership changes are not sent).
#[test]
fn cluster_admin_requests() {
    run_routes("cluster admin", 150, CLUSTER_ROUTES);
}

/// Any route with any method, and paths no route has.
#[test]
fn any_method_any_path() {
    let unknown = (vec(segment(NODES), 0..4), select(METHODS))
        .prop_map(|(segs, m)| req(m, &format!("/{}", segs.join("/")), vec![]));
    let prefixed = (select(&["/v1/", "/v1/kv/app/color/", "/v2/", "/raft", "/internal/v1/", "//"][..]), segment(KEYS))
        .prop_map(|(p, s)| req("GET", &format!("{p}{s}"), vec![]));
    let all: Vec<&'static Route> =
        [SERVICE_ROUTES, DISCOVERY_ROUTES, KV_ROUTES, DEPLOYMENT_ROUTES].iter().flat_map(|r| r.iter()).collect();
    let any_route = select(all).prop_flat_map(|route| {
        (route_request(route), select(METHODS)).prop_map(|(mut req, m)| {
            req.method = m.to_string();
            req
        })
    });
    let strategy = prop_oneof![2 => unknown, 1 => prefixed, 4 => any_route];
    fuzz("any method, any path", 300, strategy, |req| {
        if changes_membership(&req) {
            return Ok(());
        }
        check(&req).map(|_| ())
    });
}

// ---------------------------------------------------------------------------------------------
// The replica-only routes.

/// A valid body for each replica-only route, to mutate.
fn peer_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let op = |op: Op| enc(&ProposeRequest { op });
    let endpoint = EndpointRecord {
        service_name: "web".into(),
        port: 80,
        protocol: "http".into(),
        version: "1".into(),
        labels: Default::default(),
        healthy: true,
        ip: String::new(),
    };
    let vote = openraft::type_config::alias::VoteOf::<TypeConfig>::new(1, 2);
    let log_id = openraft::testing::common::log_id::<TypeConfig>(1, 2, 3);
    let nodes = std::collections::BTreeMap::from([(1u64, openraft::BasicNode { addr: "127.0.0.1:1".into() })]);
    let membership = openraft::Membership::new(vec![BTreeSet::from([1u64])], nodes).expect("membership");
    let transfer = SnapshotTransfer {
        vote,
        meta: openraft::storage::SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: openraft::StoredMembership::new(Some(log_id), membership),
        },
        data: plum_raft_store::encode_rows(&[(b"P/".to_vec(), vec![7])]),
    };
    let append = openraft::raft::AppendEntriesRequest::<TypeConfig> {
        vote,
        prev_log_id: Some(log_id),
        entries: vec![],
        leader_commit: None,
    };
    vec![
        ("/internal/v1/propose", op(Op::DeleteNode { node_id: "n9".into() })),
        (
            "/internal/v1/propose",
            op(Op::RegisterInstance {
                instance_id: "i9".into(),
                node_id: String::new(),
                ip: "10.0.0.9".into(),
                endpoints: vec![endpoint],
                ttl_ms: 0,
                replace: false,
                upstreams: vec![],
            }),
        ),
        ("/internal/v1/propose", op(Op::Batch { ops: vec![Op::DeregisterInstance { instance_id: "i9".into() }] })),
        ("/internal/v1/renew", enc(&RenewRequest { nodes: vec!["n1".into()], instances: vec!["i1".into()] })),
        ("/internal/v1/read-index", enc(&())),
        ("/internal/v1/status", enc(&())),
        ("/raft/append", enc(&append)),
        ("/raft/vote", enc(&openraft::raft::VoteRequest::<TypeConfig>::new(vote, Some(log_id)))),
        ("/raft/pre-vote", enc(&openraft::raft::VoteRequest::<TypeConfig>::new(vote, None))),
        ("/raft/transfer-leader", enc(&openraft::raft::TransferLeaderRequest::<TypeConfig>::new(vote, 1, None))),
        ("/raft/snapshot", enc(&transfer)),
    ]
}

fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    codec::encode(v).expect("encodes")
}

/// Whether a signed body for `route` would be acted on (a vote, an append, a snapshot, a
/// proposal that passes the checks): the replica would do what a peer asks. Such bodies are
/// checked by `fuzz_codecs` and not sent here.
fn acted_on(route: &str, body: &[u8]) -> bool {
    match route {
        "/internal/v1/propose" => codec::decode::<ProposeRequest>(body).is_ok_and(|p| p.op.check().is_ok()),
        "/raft/append" => codec::decode::<openraft::raft::AppendEntriesRequest<TypeConfig>>(body).is_ok(),
        "/raft/vote" | "/raft/pre-vote" => codec::decode::<openraft::raft::VoteRequest<TypeConfig>>(body).is_ok(),
        "/raft/transfer-leader" => codec::decode::<openraft::raft::TransferLeaderRequest<TypeConfig>>(body).is_ok(),
        "/raft/snapshot" => codec::decode::<SnapshotTransfer>(body).is_ok(),
        _ => false,
    }
}

#[derive(Debug, Clone, Copy)]
enum Signature {
    None,
    /// Signed for this request.
    Valid,
    /// Signed, then the body changed.
    ForOtherBody,
    /// Garbage in the header.
    Garbage,
}

/// `/raft/*` and `/internal/*`: without a valid signature a 401 and nothing applied; with one,
/// a malformed body is a 400, a proposal failing the checks is refused, and nothing is applied.
#[test]
fn replica_only_routes() {
    let seeds = Arc::new(peer_seeds());
    let muts = prop_oneof![1 => Just(Vec::new()), 6 => vec(mutation(), 1..5)];
    let sig = prop_oneof![
        6 => Just(Signature::Valid),
        2 => Just(Signature::None),
        1 => Just(Signature::ForOtherBody),
        1 => Just(Signature::Garbage),
    ];
    let strategy = (any::<Index>(), muts, sig, ".{0,40}");
    let skipped = AtomicUsize::new(0);
    fuzz("replica-only routes", 500, strategy, |(seed, muts, sig, garbage)| {
        let (route, seed) = &seeds[seed.index(seeds.len())];
        let msgpack: Vec<u8> = (0u8..=255).collect();
        let body = mutate_with(seed, &muts, &[], &msgpack);
        if matches!(sig, Signature::Valid) && acted_on(route, &body) {
            skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let header = match sig {
            Signature::None | Signature::Valid => None,
            Signature::ForOtherBody => replica().peer.sign("POST", route, b"something else"),
            Signature::Garbage => Some(garbage.chars().filter(|c| !c.is_control()).collect()),
        };
        let headers: Vec<(String, String)> = header.into_iter().map(|h| (peer_auth::HEADER.to_string(), h)).collect();
        let sign = matches!(sig, Signature::Valid);
        let answer = check(&Req { method: "POST".into(), path: route.to_string(), headers, body, sign })?;
        if !matches!(sig, Signature::Valid) {
            prop_assert_eq!(answer.status, 401, "unsigned request answered {}", answer.status);
            return Ok(());
        }
        match *route {
            "/internal/v1/propose" => match codec::decode::<ProposeReply>(&answer.body) {
                Ok(ProposeReply::Failed { .. }) => {}
                other => prop_assert_eq!(answer.status, 400, "proposal answered {:?}", other),
            },
            "/internal/v1/renew" => {
                let reply = codec::decode::<RenewReply>(&answer.body);
                prop_assert!(answer.status == 400 || reply.is_ok(), "renew answered {}", answer.status);
            }
            "/internal/v1/read-index" | "/internal/v1/status" => prop_assert_eq!(answer.status, 200),
            _ => prop_assert_eq!(answer.status, 400, "undecodable RPC answered {}", answer.status),
        }
        Ok(())
    });
    eprintln!("replica-only routes: {} signed bodies a replica would act on were not sent", skipped.into_inner());
}

// ---------------------------------------------------------------------------------------------
// Regressions.

/// `POST /v1/deployments` placed `standby` warm standbys one by one before proposing, with no
/// bound: `"standby": 4294967295` built four billion placements under the registry's read lock
/// (memory exhausted, every other request waiting). Replicas and standbys together are now
/// bounded like the instances of a deployment (1000), a 400 before anything is placed.
#[test]
fn a_deployment_with_billions_of_standbys_is_refused() {
    for body in [
        json!({"name": "huge", "command": "/bin/true", "standby": 4_294_967_295u32}),
        json!({"name": "huge", "command": "/bin/true", "replicas": 1000, "standby": 1}),
    ] {
        let answer =
            check(&req("POST", "/v1/deployments", body.to_string().into_bytes())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer.status, 400, "{}", String::from_utf8_lossy(&answer.body));
    }
    let fine = json!({"name": "small", "command": "/bin/true", "replicas": 1, "standby": 2});
    let created =
        check(&req("POST", "/v1/deployments", fine.to_string().into_bytes())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(created.status, 201);
}

/// Found by the fuzzer: a bad `index` or `timeoutMs` was refused only after the node had been
/// marked as running an agent (a write). Now refused before anything is written.
#[test]
fn a_refused_assignments_request_writes_nothing() {
    let beat = br#"{"nodeId": "regress-loadtool", "ip": "10.0.0.9"}"#.to_vec();
    let answer = check(&req("POST", "/v1/nodes/heartbeat", beat)).expect("heartbeat");
    assert_eq!(answer.status, 200);
    for query in ["watch=true&index=abc", "watch=true&timeoutMs=-1"] {
        let answer = check(&req("GET", &format!("/v1/assignments?nodeId=regress-loadtool&{query}"), vec![]))
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        assert_eq!(answer.status, 400, "{query}");
    }
    let node = check(&req("GET", "/v1/nodes/regress-loadtool", vec![])).expect("node");
    let node: serde_json::Value = serde_json::from_slice(&node.body).expect("node JSON");
    assert_eq!(node["canRunInstances"], false, "still a heartbeat-only node: {node}");
}

/// Found by the fuzzer: a 128-character name and a 128-character request id made a
/// 257-character deployment id that could be created but not deleted (ids are at most 256).
#[test]
fn a_deployment_id_too_long_to_address_is_refused_at_create() {
    let body = format!(r#"{{"name":"{}","requestId":"{}","command":"/bin/true"}}"#, "n".repeat(128), "r".repeat(128));
    let answer = check(&req("POST", "/v1/deployments", body.into_bytes())).expect("create");
    assert_eq!(answer.status, 400, "{}", String::from_utf8_lossy(&answer.body));
    let fits = format!(r#"{{"name":"{}","requestId":"{}","command":"/bin/true"}}"#, "n".repeat(100), "r".repeat(100));
    let answer = check(&req("POST", "/v1/deployments", fits.into_bytes())).expect("create");
    assert_eq!(answer.status, 201, "{}", String::from_utf8_lossy(&answer.body));
    let id = format!("{}-{}", "n".repeat(100), "r".repeat(100));
    let answer = check(&req("DELETE", &format!("/v1/deployments/{id}"), vec![])).expect("delete");
    assert!(answer.status < 300, "deleted: {}", answer.status);
}

/// Found by the fuzzer: a path segment that is not UTF-8 was refused by axum's extractor with a
/// plain-text 400; every error of the API is a JSON object.
#[test]
fn a_path_that_is_not_utf8_gets_a_json_error() {
    for path in ["/v1/kv/%80", "/v1/deployments/%80", "/v1/kv/app/key/%ff%fe"] {
        let answer = check(&req("GET", path, vec![])).expect("answer");
        assert_eq!(answer.status, 400, "{path}");
        assert!(answer.content_type.starts_with("application/json"), "{path}: {}", answer.content_type);
        let body: ErrorBody = serde_json::from_slice(&answer.body).expect("a JSON error");
        assert!(body.error.contains("UTF-8"), "{path}: {}", body.error);
    }
}
