//! The Rust runner of the shared SDK conformance suite (`sdk/conformance/`): every scenario of
//! `scenarios.json`, through the Rust SDK's public API, against the scripted fake controller
//! (`fake_controller.py`) or, for a `cluster` scenario, a real local 3-replica cluster
//! (`real_cluster.py`, which runs this workspace's `plum-controller`), started as a child
//! process per scenario. The runner contract is `sdk/conformance/README.md`;
//! `sdk/python/tests/test_conformance.py` is the Python runner.
//!
//! One test runs the scenarios one after the other (their timing expectations assume nothing
//! else of this test competes for the CPU) and fails if any failed. Each scenario's result is
//! written to stderr as it ends, also when the test passes. `PLUM_CONFORMANCE_SCENARIO=a,b`
//! runs only those; `PLUM_CONFORMANCE_DIR` points at another copy of the suite;
//! `PLUM_CONFORMANCE_CLUSTER=0` skips the cluster scenarios (reported as skipped). Needs
//! `python3` (3.10+) on `PATH`, and for the cluster scenarios a built `plum-controller`
//! (`cargo test --workspace` builds it; else `PLUM_CONTROLLER_BIN`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plum_sdk::ClientError;
use plum_sdk::backoff::Backoff;
use plum_sdk::breaker::BreakerPolicy;
use plum_sdk::client::{Client, ClientOptions};
use plum_sdk::controllers::{Options, Request};
use plum_sdk::discovery::{DiscoveryOptions, Query};
use plum_sdk::registration::Registrar;
use plum_sdk::types::{EndpointSpec, RegisterRequest};
use reqwest::Method;
use serde_json::{Map, Value, json};

/// The ops this runner drives through the SDK (the contract's whole list). A scenario using
/// another is reported as skipped, naming it.
const SUPPORTED: &[&str] = &[
    "kv.put",
    "kv.get",
    "kv.cas",
    "kv.delete",
    "kv.list",
    "kv.watch",
    "kv.putMany",
    "write",
    "read",
    "discovery.lookup",
    "register",
    "close",
    "sleep",
    "control",
];
/// The longest one scenario may take, fake start and stop included.
const SCENARIO_LIMIT: Duration = Duration::from_secs(60);
/// The same for a cluster scenario (real replicas start, stop and elect).
const CLUSTER_SCENARIO_LIMIT: Duration = Duration::from_secs(180);
/// How long the fake may take to write its ports file.
const START_LIMIT: Duration = Duration::from_secs(10);
/// How long a real cluster may take to elect a leader and write its ports file.
const CLUSTER_START_LIMIT: Duration = Duration::from_secs(90);
/// A control action (`wait: true` ones restart whole clusters) or the verdict (which waits for
/// scheduled actions) may take this long.
const CONTROL_LIMIT: Duration = Duration::from_secs(90);
/// The server wait of a `kv.watch` op's polls (the contract's 1 s).
const KV_WATCH_WAIT: Duration = Duration::from_secs(1);

/// Written straight to stderr: libtest's capture only catches `print!`/`eprint!`, and skips
/// and results must show even when the test passes.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn suite_dir() -> PathBuf {
    std::env::var_os("PLUM_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance"))
}

/// Fails the test with a clear message when `python3` cannot be run or is older than 3.10.
fn require_python() {
    let check = "import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)";
    match Command::new("python3").args(["-c", check]).stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "python3 on PATH is older than 3.10 or broken ({s}): the conformance suite's fake controller \
             (sdk/conformance/fake_controller.py) needs Python 3.10+"
        ),
        Err(e) => panic!(
            "python3 not found on PATH ({e}): the conformance suite's fake controller \
             (sdk/conformance/fake_controller.py) needs Python 3.10+"
        ),
    }
}

/// The `plum-controller` the cluster scenarios run: `PLUM_CONTROLLER_BIN`, else the one this
/// workspace built next to this test (`target/<profile>/`). `None`: `real_cluster.py` looks
/// further and says what is missing.
fn controller_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PLUM_CONTROLLER_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/<test> -> target/<profile>/plum-controller
    Some(exe.parent()?.parent()?.join("plum-controller")).filter(|p| p.exists())
}

fn is_cluster(scenario: &Value) -> bool {
    scenario.get("cluster").is_some()
}

/// The scenario's controllers: the fake, or `real_cluster.py` with its replicas; a child
/// process of this test. Killed (by its own handle, i.e. its PID) when dropped while still
/// running (the cluster's replicas die with it).
struct Fake {
    child: Child,
    /// Holds the ports file and the fake's stderr; removed on drop.
    dir: tempfile::TempDir,
    replicas: Vec<String>,
    control: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Fake {
    async fn start(suite: &Path, scenario: &Value) -> Result<Fake, String> {
        let dir = tempfile::Builder::new().prefix("plum-conf-").tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let ports = dir.path().join("ports.json");
        let stderr = std::fs::File::create(dir.path().join("stderr")).map_err(|e| format!("stderr file: {e}"))?;
        let (launcher, start_limit) = if is_cluster(scenario) {
            ("real_cluster.py", CLUSTER_START_LIMIT)
        } else {
            ("fake_controller.py", START_LIMIT)
        };
        let mut command = Command::new("python3");
        command
            .arg(suite.join(launcher))
            .args(["--scenario", text(scenario, "name"), "--ports-file"])
            .arg(&ports)
            .arg("--scenarios")
            .arg(suite.join("scenarios.json"));
        if let Some(bin) = controller_bin().filter(|_| is_cluster(scenario)) {
            command.arg("--controller").arg(bin);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start python3 {launcher}: {e}"))?;
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
        let mut fake = Fake { child, dir, replicas: Vec::new(), control: String::new(), token: None, http };
        let started = Instant::now();
        while !ports.exists() {
            if let Ok(Some(status)) = fake.child.try_wait() {
                return Err(format!("{launcher} exited before it started ({status}){}", fake.stderr()));
            }
            if started.elapsed() > start_limit {
                return Err(format!("{launcher} did not start within {start_limit:?}{}", fake.stderr()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let info: Value = std::fs::read_to_string(&ports)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| "unreadable ports file".to_string())?;
        fake.replicas = info["replicas"]
            .as_array()
            .map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        fake.control = info["control"].as_str().unwrap_or_default().to_string();
        fake.token = info["token"].as_str().map(str::to_string);
        if fake.replicas.is_empty() || fake.control.is_empty() {
            return Err(format!("the ports file lacks replicas or control: {info}"));
        }
        Ok(fake)
    }

    /// What the fake wrote to stderr, for failure messages.
    fn stderr(&self) -> String {
        match std::fs::read_to_string(self.dir.path().join("stderr")) {
            Ok(t) if !t.trim().is_empty() => format!("\nfake controller stderr:\n{}", t.trim_end()),
            _ => String::new(),
        }
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.control);
        let resp = self.http.get(url).timeout(CONTROL_LIMIT).send().await.map_err(|e| format!("GET {path}: {e}"))?;
        resp.json().await.map_err(|e| format!("GET {path}: {e}"))
    }

    /// `POST /shutdown`, then waits for the process; kills it after 5 s.
    async fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.http.post(format!("{}/shutdown", self.control)).send().await;
            let asked = Instant::now();
            while matches!(self.child.try_wait(), Ok(None)) && asked.elapsed() < Duration::from_secs(5) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.kill();
    }

    fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `defaults.client` overridden by the scenario's `client`.
fn client_options(defaults: &Value, scenario: &Value, token: Option<String>) -> ClientOptions {
    let mut c = defaults["client"].as_object().cloned().unwrap_or_default();
    if let Some(over) = scenario["client"].as_object() {
        c.extend(over.clone());
    }
    let ms = |k: &str| Duration::from_millis(c.get(k).and_then(Value::as_u64).unwrap_or_else(|| panic!("client.{k}")));
    let transport = Options {
        attempt_timeout: ms("attemptTimeoutMs"),
        deadline: ms("deadlineMs"),
        connect_timeout: ms("connectTimeoutMs"),
        backoff: Backoff { base: ms("backoffBaseMs"), max: ms("backoffMaxMs") },
        breaker: BreakerPolicy {
            failures: c.get("breakerFailures").and_then(Value::as_u64).expect("client.breakerFailures") as u32,
            cool_down: ms("breakerCoolDownMs"),
            max_cool_down: Duration::from_secs(30),
        },
        token,
        ..Options::default()
    };
    let discovery = DiscoveryOptions {
        watch_wait: ms("watchWaitMs"),
        max_staleness: Some(ms("maxStalenessMs")),
        client_service: None,
    };
    ClientOptions { transport, discovery }
}

/// The contract's name for how a step ended.
fn outcome_of(r: &Result<Map<String, Value>, ClientError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(ClientError::OutcomeUnknown(_)) => "outcome_unknown".into(),
        Err(ClientError::Unreachable(_)) => "unreachable".into(),
        Err(ClientError::Unauthorized(_)) => "unauthorized".into(),
        Err(ClientError::Forbidden(_)) => "forbidden".into(),
        Err(ClientError::Status { status: 404, .. }) => "not_found".into(),
        Err(ClientError::Status { status: 409, .. }) => "conflict".into(),
        Err(ClientError::Status { .. }) => "status".into(),
        Err(e) => format!("error ({e})"),
    }
}

/// The client a scenario's steps run on, the registrars its `register` steps started, and the
/// way to the launcher's control port (`control` steps).
struct Runner<'f> {
    client: Option<Client>,
    registrars: Vec<Registrar>,
    fake: &'f Fake,
}

fn text<'a>(step: &'a Value, field: &str) -> &'a str {
    step[field].as_str().unwrap_or_else(|| panic!("step {step}: `{field}` must be a string"))
}

fn number(step: &Value, field: &str) -> u64 {
    step[field].as_u64().unwrap_or_else(|| panic!("step {step}: `{field}` must be a number"))
}

impl Runner<'_> {
    fn client(&self) -> Result<&Client, ClientError> {
        self.client.as_ref().ok_or_else(|| ClientError::Config("the client is closed".into()))
    }

    /// One step through the SDK: the fields the contract checks (`value`, `version`, `count`,
    /// `stale`, `indices`) or the SDK's error.
    async fn run(&mut self, step: &Value) -> Result<Map<String, Value>, ClientError> {
        let mut out = Map::new();
        match text(step, "op") {
            "kv.put" => {
                let w = self.client()?.kv().put(text(step, "ns"), text(step, "key"), text(step, "value")).await?;
                out.insert("version".into(), json!(w.version));
            }
            "kv.cas" => {
                let kv = self.client()?.kv();
                let (ns, key, value) = (text(step, "ns"), text(step, "key"), text(step, "value"));
                let w = kv.compare_and_set(ns, key, value, number(step, "expectVersion")).await?;
                out.insert("version".into(), json!(w.version));
            }
            "kv.get" => {
                let item = self.client()?.kv().get(text(step, "ns"), text(step, "key")).await?;
                out.insert("value".into(), item.map_or(Value::Null, |i| Value::String(i.value)));
            }
            "kv.delete" => self.client()?.kv().delete(text(step, "ns"), text(step, "key")).await?,
            "kv.list" => {
                let prefix = step["prefix"].as_str().unwrap_or("");
                let items = self.client()?.kv().list(text(step, "ns"), prefix).await?;
                out.insert("count".into(), json!(items.len()));
            }
            "kv.putMany" => self.put_many(step, &mut out).await?,
            "kv.watch" => {
                let prefix = step["prefix"].as_str().unwrap_or("");
                let mut watch = self
                    .client()?
                    .kv()
                    .watch(text(step, "ns"), prefix, number(step, "fromIndex"))
                    .with_wait(KV_WATCH_WAIT);
                let (mut indices, mut values) = (Vec::new(), Vec::new());
                for _ in 0..number(step, "changes") {
                    let change = watch.next().await?;
                    indices.push(json!(change.index));
                    if let Some(key) = step["key"].as_str() {
                        let value = change.items.into_iter().find(|i| i.key == key).map(|i| i.value);
                        values.push(json!(value));
                    }
                }
                out.insert("indices".into(), Value::Array(indices));
                if step.get("key").is_some() {
                    out.insert("values".into(), Value::Array(values));
                }
            }
            "control" => self.control(step).await?,
            op @ ("write" | "read") => {
                let method = step["method"].as_str().unwrap_or(if op == "read" { "GET" } else { "POST" });
                let method = Method::from_bytes(method.as_bytes()).map_err(|e| ClientError::Config(e.to_string()))?;
                let idempotent = step["idempotent"].as_bool().unwrap_or(op == "read");
                let body = step.get("body").filter(|b| !b.is_null());
                let req = Request::write(method, text(step, "path"), body, idempotent)?;
                self.client()?.controllers().send_text(req).await?;
            }
            "discovery.lookup" => {
                let d = self.client()?.discover(text(step, "service"), &Query::default()).await?;
                out.insert("count".into(), json!(d.endpoints.len()));
                out.insert("stale".into(), json!(d.stale));
            }
            "register" => {
                let ttl = Duration::from_millis(step["ttlMs"].as_u64().unwrap_or(10_000));
                let registrar = self.client()?.registrar(ttl);
                let instance = RegisterRequest {
                    instance_id: text(step, "instanceId").to_string(),
                    ip: Some("127.0.0.1".into()),
                    endpoints: vec![EndpointSpec {
                        service_name: text(step, "service").to_string(),
                        port: number(step, "port") as u32,
                        protocol: "http".into(),
                        ..EndpointSpec::default()
                    }],
                    ..RegisterRequest::default()
                };
                // Kept (heartbeating) until `close` or the end of the scenario, even if this failed.
                let result = registrar.register(vec![instance]).await;
                self.registrars.push(registrar);
                result?;
            }
            "close" => self.close().await?,
            op => return Err(ClientError::Config(format!("unsupported op {op}"))),
        }
        Ok(out)
    }

    /// `kv.putMany`: keys `prefix0..` one after another, `intervalMs` apart; the first error
    /// ends it. Reports how many were acknowledged, the highest version any put answered
    /// (above 1: a write was applied twice) and the longest single put.
    async fn put_many(&self, step: &Value, out: &mut Map<String, Value>) -> Result<(), ClientError> {
        let (ns, prefix) = (text(step, "ns"), text(step, "prefix"));
        let interval = Duration::from_millis(step["intervalMs"].as_u64().unwrap_or(0));
        let (mut count, mut version, mut longest) = (0u64, 0u64, Duration::ZERO);
        for n in 0..number(step, "count") {
            let started = Instant::now();
            let written = self.client()?.kv().put(ns, &format!("{prefix}{n}"), &format!("v{n}")).await?;
            longest = longest.max(started.elapsed());
            count += 1;
            version = version.max(written.version);
            out.insert("count".into(), json!(count));
            out.insert("version".into(), json!(version));
            out.insert("maxCallMs".into(), json!(longest.as_millis() as u64));
            tokio::time::sleep(interval).await;
        }
        Ok(())
    }

    /// `control`: the step, without `op` and `expect`, to the launcher's `POST /action`.
    async fn control(&self, step: &Value) -> Result<(), ClientError> {
        let mut body = step.as_object().cloned().unwrap_or_default();
        body.remove("op");
        body.remove("expect");
        let url = format!("{}/action", self.fake.control);
        let resp = self.fake.http.post(url).json(&body).timeout(CONTROL_LIMIT).send().await;
        let resp = resp.map_err(|e| ClientError::Unreachable(format!("control port: {e}")))?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        Err(ClientError::Status { status, body })
    }

    /// The client's clean shutdown: every registrar deregisters its instances and stops, then
    /// the client (its discovery watches) is dropped.
    async fn close(&mut self) -> Result<(), ClientError> {
        let mut first_error = None;
        for registrar in self.registrars.drain(..) {
            if let Err(e) = registrar.shutdown().await {
                first_error.get_or_insert(e);
            }
        }
        self.client = None;
        first_error.map_or(Ok(()), Err)
    }
}

/// The step's `expect` against what happened.
fn check(step: &Value, result: &Result<Map<String, Value>, ClientError>, elapsed: Duration) -> Vec<String> {
    let outcome = outcome_of(result);
    let (result, error) = match result {
        Ok(r) => (r, String::new()),
        Err(e) => (&Map::new(), format!(" ({e})")),
    };
    let expect = &step["expect"];
    let what = step.get("key").or_else(|| step.get("service")).and_then(Value::as_str).unwrap_or("");
    let at = format!("step {} {what}", text(step, "op"));
    let mut bad = Vec::new();
    if let Some(want) = expect["outcome"].as_str()
        && outcome != want
    {
        bad.push(format!("{at}: outcome {outcome}, expected {want}{error}"));
    }
    if outcome == "ok" {
        for field in ["value", "version", "count", "stale", "indices", "values"] {
            if let Some(want) = expect.get(field) {
                match result.get(field) {
                    Some(got) if got == want => {}
                    Some(got) => bad.push(format!("{at}: {field} {got}, expected {want}")),
                    None => bad.push(format!("{at}: {field} <missing>, expected {want}")),
                }
            }
        }
    }
    if let (Some(max), Some(longest)) = (expect["maxCallMs"].as_u64(), result.get("maxCallMs").and_then(Value::as_u64))
        && longest > max
    {
        bad.push(format!("{at}: longest call {longest} ms, at most {max} expected"));
    }
    let ms = elapsed.as_millis() as u64;
    if let Some(max) = expect["maxElapsedMs"].as_u64()
        && ms > max
    {
        bad.push(format!("{at}: took {ms} ms, at most {max} expected"));
    }
    if let Some(min) = expect["minElapsedMs"].as_u64()
        && ms < min
    {
        bad.push(format!("{at}: took {ms} ms, at least {min} expected"));
    }
    bad
}

/// One scenario: start the fake, run the steps, collect the client-side failures and the
/// fake's verdict, stop the fake. Returns every failure.
async fn run_scenario(suite: &Path, defaults: &Value, scenario: &Value) -> Vec<String> {
    let mut fake = match Fake::start(suite, scenario).await {
        Ok(f) => f,
        Err(e) => return vec![e],
    };
    let mut failures = run_steps(&fake, defaults, scenario).await;
    match fake.get("/verdict").await {
        Ok(v) => {
            if v["ok"].as_bool() != Some(true) {
                let listed = v["failures"].as_array().cloned().unwrap_or_default();
                failures.extend(listed.iter().map(|f| format!("server: {}", f.as_str().unwrap_or(&f.to_string()))));
                if listed.is_empty() {
                    failures.push(format!("server: verdict not ok: {v}"));
                }
            }
        }
        Err(e) => failures.push(format!("verdict: {e}")),
    }
    if !failures.is_empty() {
        match fake.get("/report").await {
            // A real cluster's report: its actions and each replica's log tail.
            Ok(report) if report.get("received").is_none() => failures.push(format!("cluster: {report:#}")),
            Ok(report) => failures.push(received_summary(&report)),
            Err(_) => {}
        }
        let stderr = fake.stderr();
        if !stderr.is_empty() {
            failures.push(stderr.trim_start().to_string());
        }
    }
    fake.stop().await;
    failures
}

/// What each replica of the fake received, in one line.
fn received_summary(report: &Value) -> String {
    let received: Vec<String> = report["received"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let redirect = if r["redirect"].as_bool() == Some(true) { " (redirect)" } else { "" };
            format!(
                "{} {} {}{redirect}",
                r["replica"],
                r["method"].as_str().unwrap_or(""),
                r["target"].as_str().unwrap_or("")
            )
        })
        .collect();
    format!("received: [{}]", received.join(", "))
}

async fn run_steps(fake: &Fake, defaults: &Value, scenario: &Value) -> Vec<String> {
    let options = client_options(defaults, scenario, fake.token.clone());
    let urls: Vec<&str> = fake.replicas.iter().map(String::as_str).collect();
    let client = match Client::new(&urls, options) {
        Ok(c) => c,
        Err(e) => return vec![format!("client: {e}")],
    };
    let mut runner = Runner { client: Some(client), registrars: Vec::new(), fake };
    let mut failures = Vec::new();
    for step in scenario["steps"].as_array().into_iter().flatten() {
        if text(step, "op") == "sleep" {
            tokio::time::sleep(Duration::from_millis(number(step, "ms"))).await;
            continue;
        }
        let started = Instant::now();
        let result = runner.run(step).await;
        failures.extend(check(step, &result, started.elapsed()));
    }
    // As the Python runner: the client is closed before the verdict is asked for.
    if let Err(e) = runner.close().await {
        failures.push(format!("close at the end: {e}"));
    }
    failures
}

#[test]
fn every_scenario_of_the_conformance_suite() {
    require_python();
    let suite = suite_dir();
    let text = std::fs::read_to_string(suite.join("scenarios.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", suite.join("scenarios.json").display()));
    let all: Value = serde_json::from_str(&text).expect("scenarios.json is JSON");
    let only: Option<Vec<String>> = std::env::var("PLUM_CONFORMANCE_SCENARIO")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let scenarios: Vec<&Value> = all["scenarios"]
        .as_array()
        .expect("scenarios.json: `scenarios` is a list")
        .iter()
        .filter(|s| only.as_ref().is_none_or(|o| o.iter().any(|n| s["name"].as_str() == Some(n))))
        .collect();
    assert!(!scenarios.is_empty(), "no scenario selected (PLUM_CONFORMANCE_SCENARIO={only:?})");

    let (mut passed, mut skipped, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for scenario in scenarios {
        let name = scenario["name"].as_str().expect("every scenario has a name").to_string();
        let mut unsupported: Vec<&str> = scenario["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["op"].as_str())
            .filter(|op| !SUPPORTED.contains(op))
            .collect();
        if !unsupported.is_empty() {
            unsupported.sort_unstable();
            unsupported.dedup();
            say(&format!("conformance: SKIP {name}: unsupported ops {unsupported:?}"));
            skipped.push(name);
            continue;
        }
        if is_cluster(scenario) && std::env::var("PLUM_CONFORMANCE_CLUSTER").is_ok_and(|v| v == "0") {
            say(&format!("conformance: SKIP {name}: PLUM_CONFORMANCE_CLUSTER=0 (no real cluster)"));
            skipped.push(name);
            continue;
        }
        let limit = if is_cluster(scenario) { CLUSTER_SCENARIO_LIMIT } else { SCENARIO_LIMIT };
        // A runtime of its own per scenario: no task of one outlives it into the next.
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let started = Instant::now();
        let failures = rt.block_on(async {
            match tokio::time::timeout(limit, run_scenario(&suite, &all["defaults"], scenario)).await {
                Ok(f) => f,
                // The fake is dropped with the future: killed.
                Err(_) => vec![format!("did not finish within {limit:?}")],
            }
        });
        rt.shutdown_timeout(Duration::from_secs(2));
        let ms = started.elapsed().as_millis();
        if failures.is_empty() {
            say(&format!("conformance: PASS {name} ({ms} ms)"));
            passed.push(name);
        } else {
            say(&format!("conformance: FAIL {name} ({ms} ms)\n    {}", failures.join("\n    ")));
            failed.push(name);
        }
    }
    say(&format!(
        "conformance: {} passed, {} skipped{}, {} failed{}",
        passed.len(),
        skipped.len(),
        if skipped.is_empty() { String::new() } else { format!(" ({})", skipped.join(", ")) },
        failed.len(),
        if failed.is_empty() { String::new() } else { format!(" ({})", failed.join(", ")) },
    ));
    assert!(failed.is_empty(), "conformance scenarios failed: {failed:?} (details above)");
}
