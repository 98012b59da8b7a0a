//! The leader cut off from both followers (every Raft link to and from it black-holed, clients
//! still reaching every replica). The majority must elect a new leader; the old one must stop
//! acknowledging node heartbeats and writes; after healing it must rejoin as a follower with
//! everything the majority committed; and no acknowledged write may be lost.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::{Env, Outcome, ms_text, raft_links_of};
use crate::proxy::Faults;
use crate::settle::wait_settled;
use crate::writes::Writes;

const BOUND: Duration = Duration::from_secs(30);
/// Writes are bounded tightly: one sent into the partition holds its writer this long, and
/// recovery is measured by the first write sent after the cut that is acknowledged.
const WRITE_TIMEOUT: Duration = Duration::from_millis(200);
/// After this, the isolated leader's lease (the shortest election timeout) is long over.
const LEASE_OVER: Duration = Duration::from_secs(2);
const PROBE_NODE: &str = "partition-probe";

pub async fn run(env: &Env, trials: usize, writers: usize) -> Result<Outcome> {
    let proxy = env.proxy()?;
    let mut out = Outcome { name: "partition_leader", bound: BOUND, ..Outcome::default() };
    let (mut rejoins, mut refusals) = (Vec::new(), Vec::new());
    let ns = format!("partition-{}", std::process::id());
    for trial in 0..trials {
        let leader = wait_settled(&env.http, &env.urls).await.with_context(|| format!("before trial {trial}"))?;
        let old = url_of(env, leader)?.to_string();
        // Known to the cluster before the cut: the probe's heartbeats are renewals, which the
        // leader answers itself while its lease holds.
        heartbeat(&env.http, &old).await.context("registering the probe node")?;
        let prefix = format!("t{trial}-");
        let writes = Writes::start(&env.http, &env.urls, &ns, &prefix, writers, WRITE_TIMEOUT);
        tokio::time::sleep(Duration::from_millis(500)).await;

        proxy.set(raft_links_of(leader), &Faults { blackhole: true, ..Faults::default() }).await?;
        let cut_at = writes.fault().await;
        let refused = heartbeats_refused(&env.http, &old, cut_at).await;
        let recovery = writes.recovery(BOUND).await;
        if refused.is_none() {
            out.violations.push(format!("trial {trial}: isolated leader {leader} kept acknowledging node heartbeats"));
        }
        tokio::time::sleep(LEASE_OVER.saturating_sub(cut_at.elapsed())).await;
        if acknowledges_a_write(&env.http, &old, &ns, trial).await {
            out.violations.push(format!("trial {trial}: isolated leader {leader} acknowledged a write"));
        }
        let new_leader = majority_leader(env, leader).await.context("no new leader in the majority")?;

        proxy.heal_all().await?;
        let rejoined = rejoin(&env.http, url_of(env, new_leader)?, leader, Instant::now()).await;
        if rejoined.is_none() {
            out.violations.push(format!("trial {trial}: old leader {leader} did not rejoin as a caught-up follower"));
        }
        let tally = writes.stop().await?;
        out.count_trial(env, (&ns, &prefix), &tally, recovery).await?;
        println!(
            "trial={trial} old_leader={leader} new_leader={new_leader} recovery_ms={} heartbeats_refused_after_ms={} rejoined_ms={} acked={} write_errors={}",
            ms_text(recovery),
            ms_text(refused),
            ms_text(rejoined),
            tally.acked.len(),
            tally.errors
        );
        refusals.push(ms_text(refused));
        rejoins.push(ms_text(rejoined));
    }
    out.more.push(("heartbeats_refused_after_ms".into(), refusals.join(",")));
    out.more.push(("rejoined_ms".into(), rejoins.join(",")));
    Ok(out)
}

fn url_of(env: &Env, id: u64) -> Result<&str> {
    let index = usize::try_from(id).ok().and_then(|i| i.checked_sub(1)).context("replica ids start at 1")?;
    env.urls.get(index).map(String::as_str).context("no URL for that replica")
}

async fn heartbeat(http: &reqwest::Client, url: &str) -> Result<bool> {
    let body = json!({"nodeId": PROBE_NODE, "ip": "10.9.9.9", "ttlMs": 60_000});
    let resp =
        http.post(format!("{url}/v1/nodes/heartbeat")).json(&body).timeout(Duration::from_millis(500)).send().await;
    Ok(resp.is_ok_and(|r| r.status().is_success()))
}

/// When (after the cut) the first heartbeat the old leader did not acknowledge was sent: a
/// refused one may be answered only after a wait, or not at all.
async fn heartbeats_refused(http: &reqwest::Client, url: &str, cut_at: Instant) -> Option<Duration> {
    while cut_at.elapsed() < Duration::from_secs(10) {
        let sent = cut_at.elapsed();
        if !heartbeat(http, url).await.unwrap_or(false) {
            return Some(sent);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Whether the isolated old leader acknowledges a write sent to it now.
async fn acknowledges_a_write(http: &reqwest::Client, url: &str, ns: &str, trial: usize) -> bool {
    http.put(format!("{url}/v1/kv/{ns}/isolated-{trial}"))
        .json(&json!({ "value": "must not be acknowledged" }))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// The leader the other replicas agree on (not `old`), asked of them, not of `old`.
async fn majority_leader(env: &Env, old: u64) -> Option<u64> {
    let deadline = Instant::now() + BOUND;
    while Instant::now() < deadline {
        for (i, url) in env.urls.iter().enumerate() {
            if i as u64 + 1 == old {
                continue;
            }
            if let Some(status) = crate::target::cluster_status(&env.http, std::slice::from_ref(url)).await
                && let Some(l) = status["leaderId"].as_u64()
                && l != old
            {
                return Some(l);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// How long after `healed` the new leader saw `old` as a reachable follower that applied
/// everything the new leader had applied at the heal.
async fn rejoin(http: &reqwest::Client, leader_url: &str, old: u64, healed: Instant) -> Option<Duration> {
    let mut target = None;
    while healed.elapsed() < BOUND {
        if let Some(status) = crate::target::cluster_status(http, &[leader_url.to_string()]).await {
            let members = status["members"].as_array().cloned().unwrap_or_default();
            let member = |id: u64| members.iter().find(|m| m["id"].as_u64() == Some(id)).cloned();
            let leader_id = status["replicaId"].as_u64().unwrap_or(0);
            if target.is_none() {
                target = member(leader_id).and_then(|m| m["appliedIndex"].as_u64());
            }
            if let (Some(t), Some(m)) = (target, member(old))
                && rejoined(&m, t)
            {
                return Some(healed.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn rejoined(member: &Value, target: u64) -> bool {
    member["role"] == "follower"
        && member["reachable"] == true
        && member["appliedIndex"].as_u64().is_some_and(|a| a >= target)
}
