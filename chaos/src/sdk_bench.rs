//! The Rust SDK under measurement: cached discovery lookups on one core, uncached lookups'
//! latency, and a leader kill as an SDK user sees it (the longest stall of one call, and
//! whether every write was applied exactly once).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use plum_sdk::{Client, Options};
use plum_types::{EndpointSpec, RegisterRequest};
use tokio::sync::Mutex;

use crate::settle::{wait_caught_up, wait_settled};
use crate::stats::{ms, summarize};
use crate::target::replica_pid;

const SERVICE: &str = "sdk-bench";

fn client(urls: &[String], transport: Options) -> Client {
    crate::target::sdk_client(urls, transport).expect("token and CA settings")
}

/// One instance of the bench service with one endpoint on loopback.
fn bench_instance(instance_id: String, port: u32) -> RegisterRequest {
    let endpoint = EndpointSpec {
        service_name: SERVICE.into(),
        port,
        protocol: "http".into(),
        version: "1.0.0".into(),
        ..EndpointSpec::default()
    };
    RegisterRequest {
        instance_id,
        ip: Some("127.0.0.1".into()),
        endpoints: vec![endpoint],
        ..RegisterRequest::default()
    }
}

/// Registers `instances` endpoints of the bench service (a registrar keeps them alive while
/// the returned value lives).
async fn register(sdk: &Client, instances: usize) -> Result<plum_sdk::registration::Registrar> {
    let registrar = sdk.registrar(Duration::from_secs(10));
    let items = (0..instances).map(|i| bench_instance(format!("{SERVICE}-{i}"), 20_000 + i as u32)).collect();
    registrar.register(items).await.context("register the bench service")?;
    Ok(registrar)
}

/// Cached lookups on one thread (its own single-threaded runtime, which also runs the cache's
/// watch) for `seconds`; then uncached lookups, one at a time, for `seconds`.
pub async fn discovery(urls: &[String], seconds: u64, instances: usize) -> Result<String> {
    let sdk = client(urls, Options::default());
    let registrar = register(&sdk, instances).await?;
    let duration = Duration::from_secs(seconds);
    let thread_urls = urls.to_vec();
    let cached = std::thread::spawn(move || -> Result<(u64, Duration)> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let sdk = client(&thread_urls, Options::default());
            let discovery = sdk.discovery().clone();
            // The replica asked may not have applied the registrations yet: wait for the watch.
            let ready = Instant::now();
            while discovery.endpoints(SERVICE).await?.endpoints.len() != instances {
                if ready.elapsed() > Duration::from_secs(10) {
                    bail!("the cache never held the {instances} registered endpoints");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let started = Instant::now();
            let mut calls = 0u64;
            while started.elapsed() < duration {
                // Batches of lookups between clock reads; each is a full SDK call.
                for _ in 0..1000 {
                    let d = discovery.endpoints(SERVICE).await?;
                    calls += d.endpoints.len().min(1) as u64;
                }
                // Let the cache's watch run on this thread too.
                tokio::task::yield_now().await;
            }
            Ok((calls, started.elapsed()))
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("cached lookup thread panicked"))??;
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < duration {
        let t = Instant::now();
        let eps = sdk.discover_uncached(SERVICE).await?;
        latencies.push(t.elapsed());
        if eps.len() != instances {
            bail!("uncached lookup returned {} endpoints", eps.len());
        }
    }
    let watch = watch_latency(&sdk, &registrar, WATCH_TRIALS).await?;
    registrar.shutdown().await?;
    let (calls, elapsed) = cached;
    let s = summarize(latencies);
    let w = summarize(watch);
    Ok(format!(
        "sdk_discovery cached_calls_per_sec_one_thread={:.0} cached_calls={calls} uncached_calls={} uncached_p50_ms={:.3} uncached_p99_ms={:.3} uncached_max_ms={:.3} watch_p50_ms={:.1} watch_p99_ms={:.1} watch_max_ms={:.1} watch_trials={}",
        calls as f64 / elapsed.as_secs_f64(),
        s.count,
        ms(s.p50),
        ms(s.p99),
        ms(s.max),
        ms(w.p50),
        ms(w.p99),
        ms(w.max),
        w.count
    ))
}

const WATCH_TRIALS: usize = 20;
/// A change that has not reached the cache by then counts as this long.
const WATCH_BOUND: Duration = Duration::from_secs(10);

/// From sending a registration until the SDK's cache (kept by its watch, never asked again)
/// holds the new endpoint; then from sending a deregistration until it is gone.
async fn watch_latency(
    sdk: &Client,
    registrar: &plum_sdk::registration::Registrar,
    trials: usize,
) -> Result<Vec<Duration>> {
    let mut updates = sdk.discovery().subscribe(SERVICE).await?;
    let mut samples = Vec::new();
    for i in 0..trials {
        let id = format!("{SERVICE}-watch-{i}");
        let has = |s: &plum_sdk::discovery::Snapshot| s.endpoints.iter().any(|e| e.instance_id == id);
        let started = Instant::now();
        registrar.register(vec![bench_instance(id.clone(), 30_000 + i as u32)]).await?;
        let seen = tokio::time::timeout(WATCH_BOUND, updates.wait_for(|s| has(s))).await.is_ok_and(|r| r.is_ok());
        samples.push(if seen { started.elapsed() } else { WATCH_BOUND });
        let started = Instant::now();
        registrar.deregister(&id).await?;
        let gone = tokio::time::timeout(WATCH_BOUND, updates.wait_for(|s| !has(s))).await.is_ok_and(|r| r.is_ok());
        samples.push(if gone { started.elapsed() } else { WATCH_BOUND });
    }
    Ok(samples)
}

pub struct StallTrial {
    /// The longest single write call that was in flight at or started after the kill.
    pub stall: Duration,
    /// Writes acknowledged whose version showed them applied more or less than once.
    pub not_once: usize,
}

/// Kills the leader `trials` times while one SDK user writes a counter key one write at a time
/// (each write's answered version must be the previous plus one); restarts it and waits for it
/// to catch up before the next trial.
pub async fn leader_kill(
    urls: &[String],
    trials: usize,
    pid_dir: &std::path::Path,
    restart_cmd: &str,
) -> Result<Vec<StallTrial>> {
    let http = crate::target::http_client(Duration::from_secs(2));
    let transport =
        Options { deadline: Duration::from_secs(20), attempt_timeout: Duration::from_secs(1), ..Options::default() };
    let sdk = Arc::new(client(urls, transport));
    let mut results = Vec::new();
    for trial in 0..trials {
        let leader = wait_settled(&http, urls).await?;
        let pid = replica_pid(pid_dir, leader)?;
        let key = format!("t{trial}-{}", rand::random::<u32>());
        let stop = Arc::new(AtomicBool::new(false));
        let kill_at: Arc<Mutex<Option<Instant>>> = Arc::default();
        let writer = tokio::spawn(write_counter(sdk.clone(), key, stop.clone(), kill_at.clone()));
        tokio::time::sleep(Duration::from_millis(300 + rand::random::<u64>() % 400)).await;
        // SAFETY: kill(2) on a pid from our own pid file, checked to be plum-controller.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        *kill_at.lock().await = Some(Instant::now());
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
        let trial_result = writer.await.context("writer")??;
        let cmd = restart_cmd.replace("{id}", &leader.to_string());
        let status = tokio::process::Command::new("sh").arg("-c").arg(&cmd).status().await?;
        if !status.success() {
            bail!("`{cmd}` failed: {status}");
        }
        wait_caught_up(&http, urls, leader).await?;
        println!(
            "trial={trial} killed={leader} longest_call_ms={:.0} not_applied_once={}",
            ms(trial_result.stall),
            trial_result.not_once
        );
        results.push(trial_result);
    }
    Ok(results)
}

async fn write_counter(
    sdk: Arc<Client>,
    key: String,
    stop: Arc<AtomicBool>,
    kill_at: Arc<Mutex<Option<Instant>>>,
) -> Result<StallTrial> {
    let kv = sdk.kv();
    let mut stall = Duration::ZERO;
    let mut not_once = 0;
    let mut expected = 1u64;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let written = kv.put("sdk-bench", &key, &expected.to_string()).await.context("a write failed outright")?;
        let took = started.elapsed();
        if written.version != expected {
            not_once += 1;
            expected = written.version;
        }
        expected += 1;
        // Calls that were in flight when the leader died, or began after.
        if kill_at.lock().await.is_some_and(|k| started + took >= k) {
            stall = stall.max(took);
        }
    }
    Ok(StallTrial { stall, not_once })
}

pub fn stall_line(results: &[StallTrial]) -> String {
    let s = summarize(results.iter().map(|r| r.stall).collect());
    let not_once: usize = results.iter().map(|r| r.not_once).sum();
    format!(
        "sdk_leader_kill_longest_call_ms p50={:.0} p99={:.0} max={:.0} trials={} not_applied_once={not_once}",
        ms(s.p50),
        ms(s.p99),
        ms(s.max),
        s.count
    )
}
