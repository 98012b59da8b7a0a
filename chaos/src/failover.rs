//! Leader kill scenario: SIGKILL the leader while clients write through every replica, measure
//! the time from the kill to the first acknowledged write sent after it, verify that every
//! acknowledged write is still readable, restart the replica and wait until it caught up.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::stats::{ms, summarize};
use crate::target::{cluster_status, replica_pid};

pub struct FailoverOptions {
    pub urls: Vec<String>,
    pub trials: usize,
    pub writers: usize,
    pub pid_dir: PathBuf,
    /// Shell command restarting a replica; `{id}` is replaced by its id.
    pub restart_cmd: String,
}

pub struct TrialResult {
    pub killed: u64,
    pub new_leader: Option<u64>,
    /// `None` when no write was acknowledged within the trial's bound.
    pub recovery: Option<Duration>,
    pub acked: usize,
    pub lost: usize,
    /// Where the time went, from the survivors' records.
    pub steps: crate::timeline::Steps,
}

/// Acknowledged writes: key and the instant its request was sent / answered.
#[derive(Default)]
struct Acks {
    keys: BTreeSet<String>,
    sent_after_kill_acked_at: Option<Instant>,
}

const RECOVERY_BOUND: Duration = Duration::from_secs(30);
const SETTLE_BOUND: Duration = Duration::from_secs(60);
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn run(opts: &FailoverOptions) -> Result<Vec<TrialResult>> {
    let http = crate::target::http_client(Duration::from_secs(2));
    let run_id = std::process::id();
    let mut results = Vec::new();
    for trial in 0..opts.trials {
        let r = one_trial(opts, &http, run_id, trial).await.with_context(|| format!("trial {trial}"))?;
        println!(
            "trial={trial} killed={} new_leader={} recovery_ms={} acked={} lost={} timeline_ms: {}",
            r.killed,
            r.new_leader.map(|l| l.to_string()).unwrap_or_else(|| "none".into()),
            r.recovery.map(|d| format!("{:.0}", ms(d))).unwrap_or_else(|| "timeout".into()),
            r.acked,
            r.lost,
            r.steps
        );
        results.push(r);
    }
    Ok(results)
}

/// Prints the summary line `chaos/kill_leader.sh` ends with.
pub fn summary_line(results: &[TrialResult]) -> String {
    // A trial that never recovered counts as its bound: it must not improve the numbers.
    let samples: Vec<Duration> = results.iter().map(|r| r.recovery.unwrap_or(RECOVERY_BOUND)).collect();
    let s = summarize(samples);
    let lost: usize = results.iter().map(|r| r.lost).sum();
    format!(
        "leader_recovery_ms p50={:.0} p99={:.0} max={:.0} trials={} lost_writes={}",
        ms(s.p50),
        ms(s.p99),
        ms(s.max),
        results.len(),
        lost
    )
}

async fn one_trial(opts: &FailoverOptions, http: &reqwest::Client, run_id: u32, trial: usize) -> Result<TrialResult> {
    let leader = wait_settled(http, &opts.urls).await?;
    let pid = replica_pid(&opts.pid_dir, leader)?;
    let ns = format!("chaos-{run_id}");
    let prefix = format!("t{trial}-");

    let acks = Arc::new(Mutex::new(Acks::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let mut writers = Vec::new();
    for w in 0..opts.writers {
        writers.push(tokio::spawn(write_loop(
            http.clone(),
            opts.urls.clone(),
            ns.clone(),
            format!("{prefix}w{w}-"),
            w,
            acks.clone(),
            killed_at.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // SAFETY: kill(2) on a pid read from our own pid file and checked to be plum-controller.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    let kill_instant = Instant::now();
    let kill_ms = unix_now_ms();
    if rc != 0 {
        stop.store(true, Ordering::Relaxed);
        bail!("kill -9 {pid} failed: {}", std::io::Error::last_os_error());
    }
    *killed_at.lock().await = Some(kill_instant);

    let recovery = loop {
        if let Some(at) = acks.lock().await.sent_after_kill_acked_at {
            break Some(at.duration_since(kill_instant));
        }
        if kill_instant.elapsed() > RECOVERY_BOUND {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.context("writer task")?;
    }
    let new_leader = cluster_status(http, &opts.urls).await.and_then(|s| s["leaderId"].as_u64());
    let mut steps = match new_leader {
        Some(l) => crate::timeline::Steps::from_statuses(&survivor_statuses(http, &opts.urls).await, kill_ms, l),
        None => crate::timeline::Steps::default(),
    };
    steps.client_ack = recovery.map(|d| d.as_millis() as i64);

    let cmd = opts.restart_cmd.replace("{id}", &leader.to_string());
    let status = tokio::process::Command::new("sh").arg("-c").arg(&cmd).status().await.context("restart command")?;
    if !status.success() {
        bail!("restart command `{cmd}` failed: {status}");
    }
    wait_caught_up(http, &opts.urls, leader).await?;

    let acked = std::mem::take(&mut acks.lock().await.keys);
    let found = read_keys(http, &opts.urls, &ns, &prefix).await?;
    let lost = acked.difference(&found).count();
    if lost > 0 {
        let sample: Vec<&String> = acked.difference(&found).take(5).collect();
        eprintln!("trial {trial}: {lost} acknowledged writes missing, e.g. {sample:?}");
    }
    Ok(TrialResult { killed: leader, new_leader, recovery, acked: acked.len(), lost, steps })
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `/v1/cluster` of every replica that answers (each tells its own failover timeline).
async fn survivor_statuses(http: &reqwest::Client, urls: &[String]) -> Vec<plum_types::ClusterStatus> {
    let mut out = Vec::new();
    for url in urls {
        if let Ok(resp) = http.get(format!("{url}/v1/cluster")).timeout(Duration::from_millis(800)).send().await
            && let Ok(status) = resp.json::<plum_types::ClusterStatus>().await
        {
            out.push(status);
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn write_loop(
    http: reqwest::Client,
    urls: Vec<String>,
    ns: String,
    prefix: String,
    start: usize,
    acks: Arc<Mutex<Acks>>,
    killed_at: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
) {
    let mut at = start;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let key = format!("{prefix}{seq}");
        let url = &urls[at % urls.len()];
        let sent = Instant::now();
        let ok = http
            .put(format!("{url}/v1/kv/{ns}/{key}"))
            .json(&json!({ "value": key }))
            .timeout(WRITE_TIMEOUT)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ok {
            let acked = Instant::now();
            let kill = *killed_at.lock().await;
            let mut a = acks.lock().await;
            a.keys.insert(key);
            if kill.is_some_and(|k| sent > k) && a.sent_after_kill_acked_at.is_none_or(|t| acked < t) {
                a.sent_after_kill_acked_at = Some(acked);
            }
        }
        // Round-robin over every replica; a dead one simply fails and the next is tried.
        at += 1;
    }
}

/// Waits until every replica answers, agrees on a leader and has applied what it has.
pub async fn wait_settled(http: &reqwest::Client, urls: &[String]) -> Result<u64> {
    let deadline = Instant::now() + SETTLE_BOUND;
    loop {
        if let Some(status) = cluster_status(http, urls).await {
            let members = status["members"].as_array().cloned().unwrap_or_default();
            let all_up = !members.is_empty()
                && members.iter().all(|m| {
                    m["reachable"] == json!(true)
                        && m["appliedIndex"].is_u64()
                        && m["appliedIndex"] == m["lastLogIndex"]
                });
            if let (true, Some(leader)) = (all_up, status["leaderId"].as_u64()) {
                return Ok(leader);
            }
        }
        if Instant::now() > deadline {
            bail!("cluster did not settle within {SETTLE_BOUND:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the restarted replica has applied everything the leader had at that moment.
pub async fn wait_caught_up(http: &reqwest::Client, urls: &[String], id: u64) -> Result<()> {
    let deadline = Instant::now() + SETTLE_BOUND;
    let mut target = None;
    loop {
        if let Some(status) = cluster_status(http, urls).await {
            let members = status["members"].as_array().cloned().unwrap_or_default();
            let leader = status["leaderId"].as_u64();
            let applied = |who: Option<u64>| -> Option<u64> {
                members.iter().find(|m| m["id"].as_u64() == who && m["reachable"] == json!(true))?["appliedIndex"]
                    .as_u64()
            };
            if target.is_none() {
                target = applied(leader);
            }
            if let (Some(t), Some(a)) = (target, applied(Some(id)))
                && a >= t
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("replica {id} did not catch up within {SETTLE_BOUND:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Keys under `prefix`, read linearizably.
async fn read_keys(http: &reqwest::Client, urls: &[String], ns: &str, prefix: &str) -> Result<BTreeSet<String>> {
    for url in urls {
        let Ok(resp) = http
            .get(format!("{url}/v1/kv/{ns}?prefix={prefix}&consistent=true"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        else {
            continue;
        };
        if !resp.status().is_success() {
            continue;
        }
        let items: Vec<Value> = resp.json().await.context("kv list")?;
        return Ok(items
            .iter()
            .filter(|i| i["key"] == i["value"])
            .filter_map(|i| i["key"].as_str().map(str::to_string))
            .collect());
    }
    bail!("no replica answered a consistent read")
}
