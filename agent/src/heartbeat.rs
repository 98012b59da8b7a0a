//! Node heartbeats: every interval, to the replica that answered last (the client moves on to
//! the next on an error). A failed round is retried after a short jittered pause, not a full
//! interval, so a leader change costs the node little of its TTL.

use std::sync::Arc;
use std::time::Duration;

use plum_sdk::Controllers;
use reqwest::Method;
use serde_json::{Value, json};

use crate::config::AgentConfig;

pub async fn run(config: Arc<AgentConfig>, client: Arc<Controllers>) {
    let mut body = json!({
        "nodeId": config.node_id,
        "ip": config.ip,
        "labels": config.labels,
        "canRunInstances": true,
        "ttlMs": config.ttl_ms,
    });
    if config.capacity > 0 {
        body["capacity"] = json!(config.capacity);
    }
    let timeout = config.heartbeat.max(Duration::from_millis(200));
    loop {
        match client.call::<_, Value>(Method::POST, "/v1/nodes/heartbeat", Some(&body), timeout).await {
            Ok(_) => tokio::time::sleep(config.heartbeat).await,
            Err(e) => {
                tracing::warn!(node = %config.node_id, error = %e, "heartbeat not acknowledged");
                let jitter = rand::random::<u64>() % 50;
                tokio::time::sleep(Duration::from_millis(20 + jitter)).await;
            }
        }
    }
}
