//! Node heartbeats: every interval, to the replica that answered last (the client moves on to
//! the next on an error). A failed round is retried after a short jittered pause, not a full
//! interval, so a leader change costs the node little of its TTL.

use std::sync::Arc;
use std::time::Duration;

use plum_sdk::Controllers;
use reqwest::Method;
use serde_json::{Value, json};

use crate::config::AgentConfig;

/// When the controllers last acknowledged a heartbeat: what fencing goes by.
pub struct Contact {
    last_ack: std::sync::Mutex<std::time::Instant>,
}

impl Contact {
    pub fn new() -> Contact {
        Contact { last_ack: std::sync::Mutex::new(std::time::Instant::now()) }
    }

    fn acked(&self) {
        *self.last_ack.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
    }

    /// How long since the last acknowledged heartbeat.
    pub fn silence(&self) -> Duration {
        self.last_ack.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
    }
}

pub async fn run(config: Arc<AgentConfig>, client: Arc<Controllers>, contact: Arc<Contact>) {
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
            Ok(_) => {
                contact.acked();
                tokio::time::sleep(config.heartbeat).await
            }
            Err(e) => {
                tracing::warn!(node = %config.node_id, error = %e, "heartbeat not acknowledged");
                let jitter = rand::random::<u64>() % 50;
                tokio::time::sleep(Duration::from_millis(20 + jitter)).await;
            }
        }
    }
}
