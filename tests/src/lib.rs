//! End-to-end test support: real `plum-controller` processes on loopback, each with its own
//! data directory, killed and restarted at will.
//!
//! The controller binary is looked up next to the test executable (`target/<profile>/`), or at
//! `PLUM_CONTROLLER_BIN`. `scripts/test.sh` builds it before running the tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub mod prom;

/// The cluster secret test replicas authenticate each other with (in `SECRET_FILE` of the
/// cluster's directory).
pub const TEST_SECRET: &str = "test-cluster-secret-0123456789\n";
pub const SECRET_FILE: &str = "cluster.secret";

/// Clusters from different tests must not compete for the two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn controller_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PLUM_CONTROLLER_BIN") {
        return PathBuf::from(p);
    }
    workspace_bin("plum-controller")
}

/// A binary of the workspace, next to the test executable (`target/<profile>/`).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let bin = exe.parent().and_then(Path::parent).expect("target dir").join(name);
    assert!(bin.exists(), "{} not found: build it first (scripts/test.sh does)", bin.display());
    bin
}

/// A node: a `plum-agent` process and the instances it started (each in its own process
/// group, found through the agent's pid files).
struct Agent {
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Agent {
    /// SIGKILL the agent and every instance it started: the machine is gone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in instance_pids(&self.data_dir) {
            // SAFETY: kill(2) on a process group an agent of this test started.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        }
    }
}

/// Pids of the instances an agent started, from its pid files.
pub fn instance_pids(agent_data_dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(agent_data_dir) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
        .collect()
}

/// A port that is free now, chosen below the kernel's ephemeral range so that outgoing
/// connections (which take ephemeral ports) cannot grab it before the replica binds it.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 20_000 + (std::process::id() % 1_000) as u16 * 2;
    for _ in 0..10_000 {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 10_000;
        let port = start + offset;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found between 20000 and 32000");
}

struct Replica {
    addr: String,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

pub struct TestCluster {
    _dir: tempfile::TempDir,
    replicas: BTreeMap<u64, Replica>,
    agents: BTreeMap<String, Agent>,
    peers: String,
    extra_args: Vec<String>,
    /// Client authentication on (`start_secured`); otherwise switched off explicitly.
    client_auth: bool,
    /// TLS (`start_tls`): certificates from `plum-certs` in `tls/`.
    tls: bool,
    /// With client authentication: `http` sends the bootstrap admin token.
    pub http: reqwest::Client,
    /// The replicas' `PLUM_LOG`.
    log_filter: String,
    _serial: MutexGuard<'static, ()>,
}

impl TestCluster {
    /// Starts `n` replicas with ids 1..=n, plus any extra controller flags, with client
    /// authentication switched off (`--insecure-no-client-auth`): these tests are about
    /// everything else.
    pub fn start(n: u64, extra_args: &[&str]) -> TestCluster {
        TestCluster::start_with(n, extra_args, false, false)
    }

    /// The same with the replicas' log filter (`PLUM_LOG`) set to `filter`.
    pub fn start_logging(n: u64, extra_args: &[&str], filter: &str) -> TestCluster {
        TestCluster::start_full(n, extra_args, false, false, filter)
    }

    /// A secured cluster (client authentication on) that also speaks only TLS, with a CA and
    /// certificate made by `plum-certs`; `http` trusts that CA.
    pub fn start_tls(n: u64, extra_args: &[&str]) -> TestCluster {
        TestCluster::secure(TestCluster::start_with(n, extra_args, true, true))
    }

    /// The same with client authentication on, as `scripts/cluster.sh` runs it: `http` carries
    /// the bootstrap admin token (`admin_token`), agents get agent tokens of their own.
    pub fn start_secured(n: u64, extra_args: &[&str]) -> TestCluster {
        TestCluster::secure(TestCluster::start_with(n, extra_args, true, false))
    }

    /// Waits for the bootstrap admin token and makes `http` send it.
    fn secure(mut cluster: TestCluster) -> TestCluster {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.admin_token_file().exists() {
            assert!(Instant::now() < deadline, "no admin token file was written");
            std::thread::sleep(Duration::from_millis(20));
        }
        cluster.http = cluster.client(Some(&cluster.admin_token()));
        cluster
    }

    /// An HTTP client for this cluster (trusting its CA when it speaks TLS) that sends `token`.
    pub fn client(&self, token: Option<&str>) -> reqwest::Client {
        TestCluster::client_for(token, self.tls.then(|| self.ca_file()).as_deref())
    }

    /// The CA certificate of a TLS cluster.
    pub fn ca_file(&self) -> PathBuf {
        self._dir.path().join("tls").join("ca.pem")
    }

    /// An HTTP client that sends `token` (none: anonymous).
    pub fn client_with_token(token: Option<&str>) -> reqwest::Client {
        TestCluster::client_for(token, None)
    }

    fn client_for(token: Option<&str>, ca: Option<&Path>) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token {
            let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")).expect("token header");
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = ca {
            builder = plum_sdk::tls::with_ca(builder, ca).expect("the test CA");
        }
        builder.no_proxy().default_headers(headers).timeout(Duration::from_secs(5)).build().expect("http client")
    }

    /// Where the replicas keep the bootstrap admin token (next to the cluster secret).
    pub fn admin_token_file(&self) -> PathBuf {
        self._dir.path().join("admin.token")
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.admin_token_file()).expect("admin token file").trim().to_string()
    }

    fn start_with(n: u64, extra_args: &[&str], client_auth: bool, tls: bool) -> TestCluster {
        TestCluster::start_full(n, extra_args, client_auth, tls, "info,openraft=warn")
    }

    fn start_full(n: u64, extra_args: &[&str], client_auth: bool, tls: bool, log_filter: &str) -> TestCluster {
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::TempDir::new().expect("temp dir");
        let mut replicas = BTreeMap::new();
        for id in 1..=n {
            replicas.insert(
                id,
                Replica {
                    addr: format!("127.0.0.1:{}", free_port()),
                    data_dir: dir.path().join(format!("data-{id}")),
                    log: dir.path().join(format!("replica-{id}.log")),
                    child: None,
                },
            );
        }
        let peers = replicas.iter().map(|(id, r)| format!("{id}={}", r.addr)).collect::<Vec<_>>().join(",");
        std::fs::write(dir.path().join(SECRET_FILE), TEST_SECRET).expect("cluster secret file");
        if tls {
            let made = Command::new(workspace_bin("plum-certs")).arg("--out").arg(dir.path().join("tls")).output();
            assert!(made.is_ok_and(|o| o.status.success()), "plum-certs failed");
        }
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().expect("http client");
        let mut cluster = TestCluster {
            _dir: dir,
            replicas,
            agents: BTreeMap::new(),
            peers,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            client_auth,
            tls,
            http,
            log_filter: log_filter.to_string(),
            _serial: serial,
        };
        let ids: Vec<u64> = cluster.replicas.keys().copied().collect();
        for id in ids {
            cluster.spawn(id);
        }
        cluster
    }

    fn spawn(&mut self, id: u64) {
        let peers = self.peers.clone();
        let extra = self.extra_args.clone();
        let tls = self.tls_args();
        let r_log_filter = self.log_filter.clone();
        let r = self.replicas.get_mut(&id).expect("known replica");
        assert!(r.child.is_none(), "replica {id} already running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&r.log).expect("log file");
        let child = Command::new(controller_bin())
            .args(["--id", &id.to_string(), "--listen", &r.addr, "--peers", &peers])
            .arg("--data-dir")
            .arg(&r.data_dir)
            .arg("--cluster-secret-file")
            .arg(self._dir.path().join(SECRET_FILE))
            .args((!self.client_auth).then_some("--insecure-no-client-auth"))
            .args(tls)
            .args(&extra)
            .env("PLUM_LOG", &r_log_filter)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn plum-controller");
        r.child = Some(child);
    }

    /// The TLS flags of a replica of a TLS cluster.
    fn tls_args(&self) -> Vec<PathBuf> {
        if !self.tls {
            return Vec::new();
        }
        let dir = self._dir.path().join("tls");
        let flag = |f: &str| PathBuf::from(f);
        vec![
            flag("--tls-cert"),
            dir.join("controller.pem"),
            flag("--tls-key"),
            dir.join("controller.key"),
            flag("--tls-ca"),
            dir.join("ca.pem"),
        ]
    }

    /// Adds a replica that is not in the initial peer list (to be joined as a learner).
    pub fn spawn_extra(&mut self, id: u64) -> String {
        let addr = format!("127.0.0.1:{}", free_port());
        let peers = format!("{},{id}={addr}", self.peers);
        let data_dir = self._dir.path().join(format!("data-{id}"));
        let log = self._dir.path().join(format!("replica-{id}.log"));
        self.replicas.insert(id, Replica { addr: addr.clone(), data_dir, log, child: None });
        let saved = std::mem::replace(&mut self.peers, peers);
        self.spawn(id);
        self.peers = saved;
        addr
    }

    /// The cluster secret file every replica of this cluster reads.
    pub fn secret_file(&self) -> PathBuf {
        self._dir.path().join(SECRET_FILE)
    }

    pub fn ids(&self) -> Vec<u64> {
        self.replicas.keys().copied().collect()
    }

    pub fn running(&self) -> Vec<u64> {
        self.replicas.iter().filter(|(_, r)| r.child.is_some()).map(|(id, _)| *id).collect()
    }

    pub fn url(&self, id: u64) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.replicas[&id].addr)
    }

    pub fn addr(&self, id: u64) -> String {
        self.replicas[&id].addr.clone()
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        self.replicas[&id].child.as_ref().map(Child::id)
    }

    /// SIGKILL: no chance to flush or hand anything over.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.replicas.get_mut(&id).and_then(|r| r.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit (bounded).
    pub fn terminate(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let mut child = self.replicas.get_mut(&id).and_then(|r| r.child.take())?;
        // SAFETY: kill(2) on the pid of a child we own and have not reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Waits (bounded) for a replica to exit on its own; `None` if it is still running.
    pub fn wait_exit(&mut self, id: u64, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let r = self.replicas.get_mut(&id).expect("known replica");
            let child = r.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                r.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Starts a `plum-agent` for node `node_id`, talking to every replica.
    pub fn start_agent(&mut self, node_id: &str) {
        self.spawn_agent(node_id, &[]);
    }

    /// The same, serving its metrics on a port of its own: returns their URL.
    pub fn start_agent_with_metrics(&mut self, node_id: &str) -> String {
        let addr = format!("127.0.0.1:{}", free_port());
        self.spawn_agent(node_id, &["--metrics-addr", &addr]);
        format!("http://{addr}/metrics")
    }

    fn spawn_agent(&mut self, node_id: &str, extra: &[&str]) {
        let data_dir = self._dir.path().join(format!("agent-{node_id}"));
        let log = self._dir.path().join(format!("agent-{node_id}.log"));
        let controllers: Vec<String> = self.ids().into_iter().map(|id| self.url(id)).collect();
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("agent log");
        let token_file = self.agent_token_file(node_id);
        let child = Command::new(workspace_bin("plum-agent"))
            .args(["--node-id", node_id, "--controllers", &controllers.join(",")])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(token_file.exists().then_some("--token-file"))
            .args(token_file.exists().then_some(&token_file))
            .args(self.tls.then_some("--ca-file"))
            .args(self.tls.then(|| self.ca_file()))
            .args(extra)
            .env("PLUM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn plum-agent");
        self.agents.insert(node_id.to_string(), Agent { data_dir, log, child: Some(child) });
    }

    /// Where `start_agent` looks for the node's agent token (`issue_agent_token` writes it).
    fn agent_token_file(&self, node_id: &str) -> PathBuf {
        self._dir.path().join(format!("agent-{node_id}.token"))
    }

    /// Creates an `agent` token for `node_id` (as admin) and keeps it for `start_agent`.
    pub async fn issue_agent_token(&self, node_id: &str) -> String {
        let leader = self.wait_leader(Duration::from_secs(20)).await;
        let body = json!({"name": format!("agent {node_id}"), "role": "agent", "nodeId": node_id});
        let (status, created) =
            self.call(leader, reqwest::Method::POST, "/v1/tokens", Some(body)).await.expect("create agent token");
        assert_eq!(status, 201, "{created}");
        let token = created["token"].as_str().expect("token").to_string();
        std::fs::write(self.agent_token_file(node_id), format!("{token}\n")).expect("agent token file");
        token
    }

    /// Starts agents for `nodes`, each with an agent token of its own (a secured cluster), and
    /// waits until their nodes are healthy.
    pub async fn start_agents_with_tokens(&mut self, nodes: &[&str], timeout: Duration) {
        for node in nodes {
            self.issue_agent_token(node).await;
            self.start_agent(node);
        }
        self.wait_nodes_healthy(nodes, timeout).await;
    }

    /// Waits until every node of `nodes` is known and healthy.
    pub async fn wait_nodes_healthy(&self, nodes: &[&str], timeout: Duration) {
        wait_until(timeout, "every agent node healthy", || async {
            let known: Vec<Value> = self.get_json(1, "/v1/nodes").await.unwrap_or_default();
            nodes.iter().all(|id| known.iter().any(|n| n["nodeId"] == *id && n["health"] == "Healthy"))
        })
        .await;
    }

    /// SIGKILL a node's agent alone (its instances keep running) and start it again.
    pub fn restart_agent(&mut self, node_id: &str) {
        if let Some(mut child) = self.agents.get_mut(node_id).and_then(|a| a.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.start_agent(node_id);
    }

    /// SIGKILL a node: its agent and every instance it runs.
    pub fn kill_node(&mut self, node_id: &str) {
        if let Some(a) = self.agents.get_mut(node_id) {
            a.kill();
        }
    }

    /// The data directory of a node's agent (its pid files are there).
    pub fn agent_dir(&self, node_id: &str) -> PathBuf {
        self.agents[node_id].data_dir.clone()
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing, like a machine cut off
    /// from the network (connections are accepted by the kernel, then hang).
    pub fn pause(&self, id: u64) {
        self.signal(id, libc::SIGSTOP);
    }

    /// SIGCONT after [`TestCluster::pause`].
    pub fn resume(&self, id: u64) {
        self.signal(id, libc::SIGCONT);
    }

    fn signal(&self, id: u64, sig: i32) {
        let pid = self.pid(id).unwrap_or_else(|| panic!("replica {id} is not running"));
        // SAFETY: kill(2) on the pid of a child we own and have not reaped yet.
        unsafe { libc::kill(pid as i32, sig) };
    }

    pub fn restart(&mut self, id: u64) {
        self.spawn(id);
    }

    /// Deletes a stopped replica's data directory.
    pub fn wipe(&mut self, id: u64) {
        let r = &self.replicas[&id];
        assert!(r.child.is_none(), "stop replica {id} before wiping it");
        let _ = std::fs::remove_dir_all(&r.data_dir);
    }

    pub fn log_of(&self, id: u64) -> String {
        std::fs::read_to_string(&self.replicas[&id].log).unwrap_or_default()
    }

    pub async fn get_json<T: DeserializeOwned>(&self, id: u64, path: &str) -> Result<T, String> {
        let resp = self.http.get(format!("{}{path}", self.url(id))).send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("GET {path} -> {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("GET {path}: {e}: {text}"))
    }

    /// Sends a request and returns (status, JSON body or Null).
    pub async fn call(
        &self,
        id: u64,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut req = self.http.request(method, format!("{}{path}", self.url(id)));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// The leader as seen by any running replica, once all running replicas agree.
    pub async fn leader(&self) -> Option<u64> {
        let mut seen = None;
        for id in self.running() {
            let status: Value = self.get_json(id, "/v1/cluster").await.ok()?;
            let leader = status["leaderId"].as_u64()?;
            if seen.is_some_and(|s| s != leader) {
                return None;
            }
            seen = Some(leader);
        }
        seen.filter(|l| self.running().contains(l))
    }

    pub async fn wait_leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader().await {
                return leader;
            }
            assert!(Instant::now() < deadline, "no leader all running replicas agree on after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Replica `id`'s entry in `/v1/cluster` as replica `via` reports it (a replica that lost
    /// its data knows no members until it has caught up, so ask another one about it).
    pub async fn member(&self, via: u64, id: u64) -> Option<Value> {
        let status: Value = self.get_json(via, "/v1/cluster").await.ok()?;
        status["members"].as_array()?.iter().find(|m| m["id"] == json!(id)).cloned()
    }

    /// Applied index a replica reports for itself.
    pub async fn applied(&self, id: u64) -> Option<u64> {
        let status: Value = self.get_json(id, "/v1/cluster").await.ok()?;
        status["members"].as_array()?.iter().find(|m| m["id"] == json!(id))?["appliedIndex"].as_u64()
    }

    pub async fn put_kv(&self, id: u64, ns: &str, key: &str, value: &str) -> Result<u16, String> {
        let (status, _) =
            self.call(id, reqwest::Method::PUT, &format!("/v1/kv/{ns}/{key}"), Some(json!({ "value": value }))).await?;
        Ok(status)
    }

    /// Replica `id`'s `/metrics`, read.
    pub async fn metrics(&self, id: u64) -> Result<prom::Scrape, String> {
        self.scrape(&format!("{}/metrics", self.url(id))).await
    }

    /// Any `/metrics` URL (an agent's), read with this cluster's client.
    pub async fn scrape(&self, url: &str) -> Result<prom::Scrape, String> {
        let resp = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("GET {url} -> {status}: {text}"));
        }
        prom::Scrape::parse(&text)
    }

    pub async fn get_kv(&self, id: u64, ns: &str, key: &str) -> Option<String> {
        let item: Value = self.get_json(id, &format!("/v1/kv/{ns}/{key}")).await.ok()?;
        item["value"].as_str().map(str::to_string)
    }
}

impl TestCluster {
    /// With `PLUM_TEST_KEEP_LOGS=<dir>`, a failed test's whole logs are copied there (the
    /// console only gets their tails; the test directory is removed).
    fn keep_logs(&self) {
        let Some(dir) = std::env::var_os("PLUM_TEST_KEEP_LOGS").map(PathBuf::from) else { return };
        let logs = self.agents.values().map(|a| &a.log).chain(self.replicas.values().map(|r| &r.log));
        for log in logs {
            let name = log.file_name().map(|n| n.to_os_string()).unwrap_or_default();
            if std::fs::create_dir_all(&dir).and_then(|_| std::fs::copy(log, dir.join(&name))).is_err() {
                eprintln!("could not keep {}", log.display());
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            self.keep_logs();
        }
        for (node, a) in self.agents.iter_mut() {
            a.kill();
            if failed {
                let log = std::fs::read_to_string(&a.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                eprintln!("---- agent {node} log (last {} lines) ----", tail.len());
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        for (id, r) in self.replicas.iter_mut() {
            if let Some(mut child) = r.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            if failed {
                let log = std::fs::read_to_string(&r.log).unwrap_or_default();
                // Backtrace frames say little here; the panic line and the log lines do.
                let is_frame = |l: &&str| {
                    let t = l.trim_start();
                    t.starts_with("at ")
                        || t.split_once(": ").is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
                };
                let tail: Vec<&str> = log.lines().filter(|l| !is_frame(l)).rev().take(40).collect();
                eprintln!("---- replica {id} log (last {} lines) ----", tail.len());
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Three controllers and an agent per node, every node healthy.
pub async fn start_with_agents(nodes: &[&str], timeout: Duration) -> TestCluster {
    let mut cluster = TestCluster::start(3, &[]);
    cluster.wait_leader(timeout).await;
    for node in nodes {
        cluster.start_agent(node);
    }
    cluster.wait_nodes_healthy(nodes, timeout).await;
    cluster
}

/// A deployment of `plum-echo` as service `echo` (readiness: `GET /health`).
pub fn echo_spec(replicas: u32, standby: u32) -> Value {
    json!({"name": "echo", "version": "1.0.0", "replicas": replicas, "standby": standby,
           "command": workspace_bin("plum-echo").display().to_string(),
           "service": {"name": "echo", "protocol": "http", "readiness": {"httpPath": "/health"}}})
}

/// Polls `check` until it holds, failing the test after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
