//! Waiting for the cluster to be whole again between trials: every replica answering, one
//! leader, everything applied; or one restarted replica caught up with the leader.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

use crate::target::cluster_status;

const SETTLE_BOUND: Duration = Duration::from_secs(60);

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
