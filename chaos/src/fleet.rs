//! A simulated fleet: N nodes heartbeating at an agent's interval with the TTL an agent
//! declares, each with M instances registered and heartbeating, plus discovery readers and KV
//! writers; against every replica or one. What the original Plum's load tool meant to test
//! (its 50 nodes), measured per operation, with the cluster's own marks and the original
//! tool's verdicts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio::sync::Mutex;

use crate::stats::{ms, summarize};

/// Fake nodes per simulated host (each host sends from its own loopback address).
const NODES_PER_HOST: usize = 100;
/// Services the instances spread over (readers look them up).
const SERVICES: usize = 10;

pub struct FleetOptions {
    pub urls: Vec<String>,
    pub nodes: usize,
    pub instances_per_node: usize,
    pub interval: Duration,
    pub duration: Duration,
    pub readers: usize,
    pub writers: usize,
    /// Pause between one reader's (writer's) requests.
    pub client_pause: Duration,
}

/// Outcomes of one kind of operation.
#[derive(Default)]
struct Samples {
    ok: Vec<Duration>,
    errors: usize,
}

#[derive(Default)]
struct Book {
    ops: BTreeMap<&'static str, Samples>,
}

impl Book {
    fn add(&mut self, op: &'static str, outcome: Option<Duration>) {
        let s = self.ops.entry(op).or_default();
        match outcome {
            Some(l) => s.ok.push(l),
            None => s.errors += 1,
        }
    }

    fn merge(&mut self, other: Book) {
        for (op, s) in other.ops {
            let mine = self.ops.entry(op).or_default();
            mine.ok.extend(s.ok);
            mine.errors += s.errors;
        }
    }
}

#[derive(Debug, Serialize)]
pub struct OpStats {
    pub ok: usize,
    pub errors: usize,
    pub per_sec: f64,
    pub success_pct: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct FleetReport {
    pub nodes: usize,
    pub instances_per_node: usize,
    pub interval_ms: u64,
    pub seconds: f64,
    /// Nodes with at least one acknowledged heartbeat.
    pub nodes_with_success: usize,
    pub ops: BTreeMap<&'static str, OpStats>,
    pub bench_cpu_pct: f64,
    /// The original tool's three bars.
    pub verdicts: Verdicts,
}

#[derive(Debug, Serialize)]
pub struct Verdicts {
    /// At least 90 % of the nodes (45 of 50) had a heartbeat acknowledged.
    pub nodes_ok: bool,
    /// The node heartbeats' mean latency is under 100 ms.
    pub latency_ok: bool,
    /// More than 95 % of node heartbeats succeeded.
    pub success_ok: bool,
}

async fn timed(req: reqwest::RequestBuilder, expect: u16) -> Option<Duration> {
    let started = Instant::now();
    match req.send().await {
        Ok(r) if r.status().as_u16() == expect => Some(started.elapsed()),
        _ => None,
    }
}

pub async fn run(opts: &FleetOptions) -> FleetReport {
    let run = std::process::id();
    let until = Instant::now() + opts.duration;
    let stop = Arc::new(AtomicBool::new(false));
    let hosts: Vec<reqwest::Client> = (0..opts.nodes.div_ceil(NODES_PER_HOST))
        .map(|h| crate::target::host_client(Duration::from_secs(2), h))
        .collect();
    let cpu_before = crate::procfs::cpu_time("self");
    let started = Instant::now();
    let mut nodes = Vec::new();
    for n in 0..opts.nodes {
        let node = Node {
            http: hosts[n / NODES_PER_HOST].clone(),
            url: opts.urls[n % opts.urls.len()].clone(),
            id: format!("fleet-{run}-n{n}"),
            run,
            index: n,
            instances: opts.instances_per_node,
            interval: opts.interval,
        };
        nodes.push(tokio::spawn(node.run(until)));
    }
    let http = crate::target::http_client(Duration::from_secs(2));
    let book = Arc::new(Mutex::new(Book::default()));
    let mut clients = Vec::new();
    for r in 0..opts.readers {
        let (http, url, book, stop, pause) =
            (http.clone(), opts.urls[r % opts.urls.len()].clone(), book.clone(), stop.clone(), opts.client_pause);
        clients.push(tokio::spawn(async move {
            let mut seq = r;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let service = format!("fleet-{run}-svc{}", seq % SERVICES);
                let outcome = timed(http.get(format!("{url}/v1/discovery?service={service}")), 200).await;
                book.lock().await.add("discovery", outcome);
                tokio::time::sleep(pause).await;
            }
        }));
    }
    for w in 0..opts.writers {
        let (http, url, book, stop, pause) =
            (http.clone(), opts.urls[w % opts.urls.len()].clone(), book.clone(), stop.clone(), opts.client_pause);
        clients.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let body = json!({"value": seq.to_string(), "requestId": format!("fleet-{run}-{w}-{seq}")});
                let outcome =
                    timed(http.put(format!("{url}/v1/kv/fleet-{run}/w{w}-{}", seq % 50)).json(&body), 200).await;
                book.lock().await.add("kv_put", outcome);
                tokio::time::sleep(pause).await;
            }
        }));
    }
    let mut total = Book::default();
    let mut nodes_with_success = 0;
    for n in nodes {
        if let Ok((node_book, succeeded)) = n.await {
            total.merge(node_book);
            nodes_with_success += usize::from(succeeded);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    total.merge(std::mem::take(&mut *book.lock().await));
    let elapsed = started.elapsed();
    let bench_cpu = crate::procfs::cpu_time("self").saturating_sub(cpu_before);
    report(opts, total, nodes_with_success, elapsed, bench_cpu)
}

fn report(opts: &FleetOptions, book: Book, nodes_with_success: usize, elapsed: Duration, cpu: Duration) -> FleetReport {
    let secs = elapsed.as_secs_f64().max(0.001);
    let ops: BTreeMap<&'static str, OpStats> = book
        .ops
        .into_iter()
        .map(|(op, s)| {
            let ok = s.ok.len();
            let sum = summarize(s.ok);
            let stats = OpStats {
                ok,
                errors: s.errors,
                per_sec: ok as f64 / secs,
                success_pct: 100.0 * ok as f64 / (ok + s.errors).max(1) as f64,
                mean_ms: ms(sum.mean),
                p50_ms: ms(sum.p50),
                p90_ms: ms(sum.p90),
                p99_ms: ms(sum.p99),
                max_ms: ms(sum.max),
            };
            (op, stats)
        })
        .collect();
    let beats = ops.get("node_heartbeat");
    let verdicts = Verdicts {
        nodes_ok: nodes_with_success * 10 >= opts.nodes * 9,
        latency_ok: beats.is_some_and(|b| b.ok > 0 && b.mean_ms < 100.0),
        success_ok: beats.is_some_and(|b| b.success_pct > 95.0),
    };
    FleetReport {
        nodes: opts.nodes,
        instances_per_node: opts.instances_per_node,
        interval_ms: opts.interval.as_millis() as u64,
        seconds: secs,
        nodes_with_success,
        ops,
        bench_cpu_pct: 100.0 * cpu.as_secs_f64() / secs,
        verdicts,
    }
}

impl FleetReport {
    /// A table for people, then the original tool's verdicts as one line.
    pub fn table(&self) -> String {
        let mut t = format!(
            "fleet nodes={} instances_per_node={} interval_ms={} seconds={:.0} nodes_with_success={} bench_cpu_pct={:.0}\n",
            self.nodes,
            self.instances_per_node,
            self.interval_ms,
            self.seconds,
            self.nodes_with_success,
            self.bench_cpu_pct
        );
        t += &format!(
            "{:<20} {:>10} {:>8} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}\n",
            "operation", "ok", "errors", "per_sec", "success%", "p50_ms", "p90_ms", "p99_ms", "max_ms"
        );
        for (op, s) in &self.ops {
            t += &format!(
                "{op:<20} {:>10} {:>8} {:>9.0} {:>9.2} {:>8.2} {:>8.2} {:>8.2} {:>8.1}\n",
                s.ok, s.errors, s.per_sec, s.success_pct, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms
            );
        }
        t + &self.verdict_line()
    }

    pub fn verdict_line(&self) -> String {
        let pass = |ok: bool| if ok { "pass" } else { "FAIL" };
        let beats = self.ops.get("node_heartbeat");
        format!(
            "original_verdicts nodes_ok={}/{} (>=90%: {}) mean_latency_ms={:.2} (<100: {}) success_pct={:.2} (>95: {})",
            self.nodes_with_success,
            self.nodes,
            pass(self.verdicts.nodes_ok),
            beats.map_or(0.0, |b| b.mean_ms),
            pass(self.verdicts.latency_ok),
            beats.map_or(0.0, |b| b.success_pct),
            pass(self.verdicts.success_ok)
        )
    }
}

/// One simulated node: registers its instances, then heartbeats them and itself every interval.
struct Node {
    http: reqwest::Client,
    url: String,
    id: String,
    run: u32,
    index: usize,
    instances: usize,
    interval: Duration,
}

impl Node {
    async fn run(self, until: Instant) -> (Book, bool) {
        let mut book = Book::default();
        let mut succeeded = false;
        // Agents do not start in lockstep: spread the first beats over one interval.
        let offset = self.interval.mul_f64((self.index % 100) as f64 / 100.0);
        tokio::time::sleep(offset).await;
        // Like our agent: a TTL of four intervals, so one late heartbeat is not a death.
        let ttl_ms = self.interval.as_millis() as u64 * 4;
        let ip = format!("10.{}.{}.{}", 100 + self.index / 65_536, (self.index / 256) % 256, self.index % 256);
        let instance_ids: Vec<String> = (0..self.instances).map(|i| format!("{}-i{i}", self.id)).collect();
        let beat = json!({"nodeId": self.id, "ip": ip, "ttlMs": ttl_ms});
        let outcome = timed(self.http.post(format!("{}/v1/nodes/heartbeat", self.url)).json(&beat), 200).await;
        succeeded |= outcome.is_some();
        book.add("node_heartbeat", outcome);
        for (i, instance) in instance_ids.iter().enumerate() {
            let body = json!({"instanceId": instance, "nodeId": self.id, "ip": ip, "ttlMs": ttl_ms,
                "endpoints": [{"serviceName": format!("fleet-{}-svc{}", self.run, (self.index + i) % SERVICES),
                    "port": 8000 + i, "protocol": "http", "version": "v1"}]});
            let outcome = timed(self.http.post(format!("{}/v1/services/register", self.url)).json(&body), 204).await;
            book.add("instance_register", outcome);
        }
        let mut next = Instant::now() + self.interval;
        while next < until {
            tokio::time::sleep_until(next.into()).await;
            next += self.interval;
            let outcome = timed(self.http.post(format!("{}/v1/nodes/heartbeat", self.url)).json(&beat), 200).await;
            succeeded |= outcome.is_some();
            book.add("node_heartbeat", outcome);
            for instance in &instance_ids {
                let body = json!({"instanceId": instance, "ttlMs": ttl_ms});
                let outcome =
                    timed(self.http.post(format!("{}/v1/services/heartbeat", self.url)).json(&body), 204).await;
                book.add("instance_heartbeat", outcome);
            }
        }
        (book, succeeded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(nodes: usize) -> FleetOptions {
        FleetOptions {
            urls: vec![],
            nodes,
            instances_per_node: 1,
            interval: Duration::from_secs(1),
            duration: Duration::from_secs(1),
            readers: 0,
            writers: 0,
            client_pause: Duration::ZERO,
        }
    }

    #[test]
    fn the_original_bars_are_applied_to_node_heartbeats() {
        let mut book = Book::default();
        for _ in 0..96 {
            book.add("node_heartbeat", Some(Duration::from_millis(20)));
        }
        for _ in 0..4 {
            book.add("node_heartbeat", None);
        }
        book.add("discovery", None);
        let r = report(&options(50), book, 45, Duration::from_secs(10), Duration::ZERO);
        assert!(r.verdicts.nodes_ok && r.verdicts.latency_ok && r.verdicts.success_ok, "{}", r.verdict_line());
        assert_eq!(r.ops["discovery"].success_pct, 0.0, "other operations do not count");

        let mut slow = Book::default();
        slow.add("node_heartbeat", Some(Duration::from_millis(150)));
        slow.add("node_heartbeat", None);
        let r = report(&options(50), slow, 44, Duration::from_secs(10), Duration::ZERO);
        assert!(!r.verdicts.nodes_ok && !r.verdicts.latency_ok && !r.verdicts.success_ok);
        assert!(r.verdict_line().contains("nodes_ok=44/50 (>=90%: FAIL)"), "{}", r.verdict_line());
    }
}
