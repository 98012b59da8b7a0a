//! Load from many concurrent clients, spread over every replica: discovery reads,
//! registrations, and node heartbeats (the original Plum's 50-node test).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

use crate::stats::{ms, summarize};

pub struct LoadOptions {
    pub urls: Vec<String>,
    pub clients: usize,
    pub duration: Duration,
}

pub struct LoadReport {
    pub name: &'static str,
    pub ok: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    /// CPU time this bench process used during the run (it shares the cores with the
    /// controllers: its share says how much of the machine the numbers describe).
    pub bench_cpu: Duration,
}

/// Why requests failed, by kind (`status 503`, `timeout`, `connect`, ...): an error count
/// alone explains nothing.
static ERROR_KINDS: std::sync::Mutex<std::collections::BTreeMap<String, usize>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Counts one failed request by its kind.
pub fn note_error(kind: String) {
    *ERROR_KINDS.lock().unwrap_or_else(|p| p.into_inner()).entry(kind).or_insert(0) += 1;
}

/// The kind of a request's outcome that was not the expected status.
pub fn error_kind(result: &Result<reqwest::Response, reqwest::Error>) -> String {
    match result {
        Ok(r) => format!("status_{}", r.status().as_u16()),
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(e) if e.is_connect() => "connect".into(),
        Err(e) if e.is_request() => "request".into(),
        Err(_) => "other".into(),
    }
}

impl LoadReport {
    pub fn line(self) -> String {
        let per_sec = self.ok as f64 / self.elapsed.as_secs_f64();
        let s = summarize(self.latencies);
        let cpu_pct = 100.0 * self.bench_cpu.as_secs_f64() / self.elapsed.as_secs_f64();
        format!(
            "{} ok={} errors={} seconds={:.1} per_sec={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} bench_cpu_pct={cpu_pct:.0}",
            self.name,
            self.ok,
            self.errors,
            self.elapsed.as_secs_f64(),
            per_sec,
            ms(s.p50),
            ms(s.p99),
            ms(s.max)
        ) + &error_kinds()
    }
}

fn error_kinds() -> String {
    let kinds = ERROR_KINDS.lock().unwrap_or_else(|p| p.into_inner());
    if kinds.is_empty() {
        return String::new();
    }
    format!(" error_kinds={}", kinds.iter().map(|(k, n)| format!("{k}:{n}")).collect::<Vec<_>>().join(","))
}

/// Runs `clients` tasks until the duration is over; each calls `op(client, seq, url)` in a loop.
/// `op` returns the latency of a successful request, `None` for a failed one.
async fn drive<F, Fut>(name: &'static str, opts: &LoadOptions, op: F) -> LoadReport
where
    F: Fn(usize, u64, String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<Duration>> + Send,
{
    let op = Arc::new(op);
    let cpu_before = crate::procfs::cpu_time("self");
    let started = Instant::now();
    let until = started + opts.duration;
    let mut tasks = Vec::new();
    for c in 0..opts.clients {
        let op = op.clone();
        // Each client sticks to one replica, clients spread evenly over the replicas.
        let url = opts.urls[c % opts.urls.len()].clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut lat) = (0usize, 0usize, Vec::new());
            let mut seq = 0u64;
            while Instant::now() < until {
                seq += 1;
                match op(c, seq, url.clone()).await {
                    Some(latency) => {
                        ok += 1;
                        lat.push(latency);
                    }
                    None => errors += 1,
                }
            }
            (ok, errors, lat)
        }));
    }
    let mut report = LoadReport {
        name,
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        bench_cpu: Duration::ZERO,
    };
    for t in tasks {
        if let Ok((ok, errors, lat)) = t.await {
            report.ok += ok;
            report.errors += errors;
            report.latencies.extend(lat);
        }
    }
    report.elapsed = started.elapsed();
    report.bench_cpu = crate::procfs::cpu_time("self").saturating_sub(cpu_before);
    report
}

/// Registers `services` x `per_service` instances to discover.
async fn seed_services(http: &reqwest::Client, url: &str, services: usize, per_service: usize) -> Result<()> {
    for s in 0..services {
        for i in 0..per_service {
            let body = json!({"instanceId": format!("bench-s{s}-i{i}"), "ip": format!("10.8.{s}.{i}"),
                "endpoints": [{"serviceName": format!("bench-svc-{s}"), "port": 8000 + i, "protocol": "http", "version": "v1"}]});
            let resp = http.post(format!("{url}/v1/services/register")).json(&body).send().await?;
            if resp.status() != 204 {
                bail!("seeding registration failed: {}", resp.status());
            }
            // Keep them alive for the length of the run (instance TTL is seconds).
        }
    }
    Ok(())
}

pub async fn discovery(opts: &LoadOptions, services: usize, per_service: usize) -> Result<LoadReport> {
    let http = crate::target::http_client(Duration::from_secs(2));
    seed_services(&http, &opts.urls[0], services, per_service).await?;
    // Renew the seeded instances during the run so none expires mid-measurement.
    let renew = {
        let (http, url, until) = (http.clone(), opts.urls[0].clone(), Instant::now() + opts.duration);
        tokio::spawn(async move {
            while Instant::now() < until {
                for s in 0..services {
                    for i in 0..per_service {
                        let _ = http
                            .post(format!("{url}/v1/services/heartbeat"))
                            .json(&json!({"instanceId": format!("bench-s{s}-i{i}")}))
                            .send()
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    // Let every replica apply the registrations before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = drive("discovery", opts, move |c, seq, url| {
        let http = http.clone();
        async move {
            let svc = (c + seq as usize) % services;
            let t = Instant::now();
            match http.get(format!("{url}/v1/discovery?service=bench-svc-{svc}")).send().await {
                Ok(r) if r.status() == 200 => r.bytes().await.ok().map(|_| t.elapsed()),
                other => {
                    note_error(error_kind(&other));
                    None
                }
            }
        }
    })
    .await;
    renew.abort();
    Ok(report)
}

/// Sends `req`: its latency when answered `expected`, else `None` (its error kind noted).
async fn timed(req: reqwest::RequestBuilder, expected: u16) -> Option<Duration> {
    let t = Instant::now();
    match req.send().await {
        Ok(r) if r.status() == expected => Some(t.elapsed()),
        other => {
            note_error(error_kind(&other));
            None
        }
    }
}

pub async fn registrations(opts: &LoadOptions) -> Result<LoadReport> {
    let http = crate::target::http_client(Duration::from_secs(5));
    let run = std::process::id();
    Ok(drive("registrations", opts, move |c, seq, url| {
        let http = http.clone();
        async move {
            let body = json!({"instanceId": format!("reg-{run}-{c}-{seq}"), "ip": "10.7.0.1",
                "endpoints": [{"serviceName": format!("reg-svc-{}", c % 10), "port": 9000, "protocol": "http", "version": "v1"}]});
            timed(http.post(format!("{url}/v1/services/register")).json(&body), 204).await
        }
    })
    .await)
}

/// KV writes: each client puts its own keys (a new key, then overwrites), with a request id.
pub async fn kv_puts(opts: &LoadOptions) -> Result<LoadReport> {
    let run = std::process::id();
    Ok(puts("kv_puts", opts, move |http, put| {
        let body = json!({"value": put.value, "requestId": format!("{run}-{}-{}", put.client, put.seq)});
        http.put(format!("{}/v1/kv/bench-{run}/{}", put.url, put.key)).json(&body)
    })
    .await)
}

/// One put of [`puts`]: client `client`'s `seq`-th request, to `url`.
pub struct Put<'a> {
    pub url: &'a str,
    pub client: usize,
    pub seq: u64,
    /// `k{client}-{seq % 100}`: each client a new key for its first hundred puts, then overwrites.
    pub key: String,
    /// `seq`, as text.
    pub value: String,
}

/// Closed-loop puts from `opts.clients` clients sharing one HTTP client (its connections
/// reused), spread over `opts.urls`; `request` builds the store's request for a [`Put`], which
/// counts as acknowledged when answered `200`. Plum's `kv-put` and etcd's `etcd-put` both run
/// here, so their figures mean the same.
pub async fn puts<R>(name: &'static str, opts: &LoadOptions, request: R) -> LoadReport
where
    R: Fn(&reqwest::Client, Put<'_>) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let http = crate::target::http_client(Duration::from_secs(5));
    drive(name, opts, move |client, seq, url| {
        let put = Put { url: &url, client, seq, key: format!("k{client}-{}", seq % 100), value: seq.to_string() };
        timed(request(&http, put), 200)
    })
    .await
}

/// `clients` fake nodes, each heartbeating every `interval` (what an agent does).
/// Fake nodes per simulated host (each host sends from its own loopback address).
const NODES_PER_HOST: usize = 100;

pub async fn heartbeats(opts: &LoadOptions, interval: Duration) -> Result<LoadReport> {
    let hosts: Vec<reqwest::Client> = (0..opts.clients.div_ceil(NODES_PER_HOST))
        .map(|h| crate::target::host_client(Duration::from_secs(2), h))
        .collect();
    let run = std::process::id();
    Ok(drive("heartbeats", opts, move |c, _seq, url| {
        let http = hosts[c / NODES_PER_HOST].clone();
        async move {
            let started = Instant::now();
            // Like our agent: a TTL of four intervals (1 s at 250 ms), so one late heartbeat
            // is not a death (a TTL of one interval expired nodes between their heartbeats).
            let ttl_ms = interval.as_millis() as u64 * 4;
            let body = json!({"nodeId": format!("hb-{run}-{c}"), "ip": "10.6.0.1", "ttlMs": ttl_ms});
            let sent = http.post(format!("{url}/v1/nodes/heartbeat")).json(&body).send().await;
            let ok = matches!(&sent, Ok(r) if r.status() == 200);
            if !ok {
                note_error(error_kind(&sent));
            }
            let latency = started.elapsed();
            tokio::time::sleep(interval.saturating_sub(latency)).await;
            ok.then_some(latency)
        }
    })
    .await)
}

/// Node-death detection: a node with one endpoint heartbeats for a second (declaring a 1 s TTL,
/// as our agent does), then stops; measures
/// the time from its last acknowledged heartbeat until discovery (asked on another replica) no
/// longer returns the endpoint. One trial at a time.
pub async fn expiry(urls: &[String], trials: usize, interval: Duration) -> Result<Vec<Duration>> {
    let http = crate::target::http_client(Duration::from_secs(2));
    let run = std::process::id();
    let mut samples = Vec::new();
    for t in 0..trials {
        let node = format!("exp-{run}-{t}");
        let service = format!("exp-svc-{run}-{t}");
        let (write, read) = (&urls[t % urls.len()], &urls[(t + 1) % urls.len()]);
        let beat = || {
            http.post(format!("{write}/v1/nodes/heartbeat"))
                .json(&json!({"nodeId": node, "ip": "10.5.0.1", "ttlMs": 1000}))
                .send()
        };
        if !matches!(beat().await, Ok(r) if r.status() == 200) {
            bail!("first heartbeat of {node} failed");
        }
        let body = json!({"instanceId": format!("{node}-i"), "nodeId": node, "ip": "10.5.0.1",
            "endpoints": [{"serviceName": service, "port": 80}]});
        let reg = http.post(format!("{write}/v1/services/register")).json(&body).send().await?;
        if reg.status() != 204 {
            bail!("registration failed: {}", reg.status());
        }
        let mut last_ack = Instant::now();
        let beat_until = last_ack + Duration::from_secs(1);
        while Instant::now() < beat_until {
            tokio::time::sleep(interval).await;
            if matches!(beat().await, Ok(r) if r.status() == 200) {
                last_ack = Instant::now();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let eps: Vec<serde_json::Value> =
                http.get(format!("{read}/v1/discovery?service={service}")).send().await?.json().await?;
            if eps.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                bail!("node {node} still discoverable 30 s after its last heartbeat");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples.push(last_ack.elapsed());
    }
    Ok(samples)
}

/// A registration storm: `nodes` nodes, spread over the replicas and over simulated hosts, all
/// send their first heartbeat at the same moment. Returns how long until every one was
/// acknowledged, how many failed, and how many Raft entries the cluster used for them.
pub async fn storm(urls: &[String], nodes: usize) -> Result<String> {
    let hosts: Vec<reqwest::Client> =
        (0..nodes.div_ceil(NODES_PER_HOST)).map(|h| crate::target::host_client(Duration::from_secs(30), h)).collect();
    let applied = || async {
        let status = crate::target::cluster_status(&crate::target::http_client(Duration::from_secs(2)), urls).await;
        status.and_then(|s| {
            let leader = s["leaderId"].as_u64()?;
            s["members"].as_array()?.iter().find(|m| m["id"] == leader)?["appliedIndex"].as_u64()
        })
    };
    let before = applied().await;
    let run = std::process::id();
    let started = Instant::now();
    let beats = (0..nodes).map(|n| {
        let http = hosts[n / NODES_PER_HOST].clone();
        let url = format!("{}/v1/nodes/heartbeat", urls[n % urls.len()]);
        tokio::spawn(async move {
            let body = json!({"nodeId": format!("storm-{run}-{n}"), "ip": "10.7.0.1", "ttlMs": 60_000});
            let sent = http.post(url).json(&body).send().await;
            let ok = matches!(&sent, Ok(r) if r.status() == 200);
            if !ok {
                note_error(error_kind(&sent));
            }
            (ok, started.elapsed())
        })
    });
    let results: Vec<(bool, Duration)> = futures::future::join_all(beats).await.into_iter().flatten().collect();
    let failed = results.iter().filter(|(ok, _)| !ok).count();
    let last = results.iter().map(|(_, at)| *at).max().unwrap_or_default();
    // Let the leader's applied index settle past the storm's entries.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let entries = match (before, applied().await) {
        (Some(b), Some(a)) => (a - b).to_string(),
        _ => "unknown".into(),
    };
    Ok(format!(
        "storm nodes={nodes} failed={failed} all_acknowledged_ms={:.0} raft_entries={entries}{}",
        ms(last),
        error_kinds()
    ))
}
