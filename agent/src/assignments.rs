//! What this node should run, learned by push: a long poll on `/v1/assignments` that returns
//! when placements change after the index it passes, resumed from the index of the last answer
//! (so a broken poll misses nothing: the next one returns at once if anything changed).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use plum_sdk::Controllers;
use plum_types::AssignmentItem;
use reqwest::Method;
use serde::Deserialize;
use tokio::sync::watch;

use crate::auth;
use crate::config::AgentConfig;

#[derive(Deserialize)]
struct Items {
    items: Vec<AssignmentItem>,
}

/// instance id -> assignment.
pub type Desired = BTreeMap<String, AssignmentItem>;

pub async fn run(config: Arc<AgentConfig>, client: Arc<Controllers>, desired: watch::Sender<Option<Desired>>) {
    let mut index = 0u64;
    let mut refusals = 0;
    loop {
        let path = format!("/v1/assignments?nodeId={}&watch=true&index={index}&timeoutMs=10000", config.node_id);
        match client.call::<(), Items>(Method::GET, &path, None, Duration::from_secs(15)).await {
            Ok(answer) => {
                refusals = 0;
                index = answer.index.unwrap_or(index);
                let now: Desired = answer.body.items.into_iter().map(|a| (a.instance_id.clone(), a)).collect();
                desired.send_if_modified(|old| {
                    let changed = old.as_ref() != Some(&now);
                    *old = Some(now);
                    changed
                });
            }
            Err(e) if auth::refused(&client, &config.node_id, "assignment watch", &e) => {
                tokio::time::sleep(auth::pause(refusals)).await;
                refusals = refusals.saturating_add(1);
            }
            Err(e) => {
                tracing::warn!(node = %config.node_id, error = %e, "assignment watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 + rand::random::<u64>() % 200)).await;
            }
        }
    }
}
