//! Node heartbeats: every interval, to the replica that answered last (the client moves on to
//! the next on an error). A failed round is retried after a short jittered pause, not a full
//! interval, so a leader change costs the node little of its TTL. A refused token (401/403) is
//! not retried that fast: see `auth.rs`.

use std::sync::Arc;
use std::time::Duration;

use plum_sdk::Controllers;
use reqwest::Method;
use serde_json::{Value, json};

use crate::auth::{self, TokenFile};
use crate::config::AgentConfig;
use crate::metrics::AgentMetrics;

/// When the controllers last acknowledged a heartbeat: what fencing goes by.
pub struct Contact {
    last_ack: std::sync::Mutex<std::time::Instant>,
}

impl Contact {
    pub fn new() -> Contact {
        Contact { last_ack: std::sync::Mutex::new(std::time::Instant::now()) }
    }

    /// A heartbeat sent at `sent` was acknowledged. The controllers renewed the node when it
    /// arrived, after `sent`: counting from the send keeps fencing ahead of their deadline.
    fn acked(&self, sent: std::time::Instant) {
        let mut last = self.last_ack.lock().unwrap_or_else(|p| p.into_inner());
        *last = (*last).max(sent);
    }

    /// How long since the last acknowledged heartbeat was sent.
    pub fn silence(&self) -> Duration {
        self.last_ack.lock().unwrap_or_else(|p| p.into_inner()).elapsed()
    }
}

pub async fn run(
    config: Arc<AgentConfig>,
    client: Arc<Controllers>,
    contact: Arc<Contact>,
    metrics: Arc<AgentMetrics>,
) {
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
    // Long enough for an answer on a slow link: a heartbeat the controllers recorded but whose
    // answer came too late for us would count as lost contact (and fence, with `fencing: stop`).
    let timeout = config.heartbeat.max(Duration::from_millis(config.ttl_ms / 2)).max(Duration::from_millis(200));
    let mut token_file = TokenFile::new(&config);
    let mut refusals = 0;
    loop {
        let sent = std::time::Instant::now();
        match client.call::<_, Value>(Method::POST, "/v1/nodes/heartbeat", Some(&body), timeout).await {
            Ok(_) => {
                metrics.heartbeat("ok");
                if refusals > 0 {
                    tracing::info!(node = %config.node_id, "the controllers accept this agent's token again");
                    refusals = 0;
                }
                contact.acked(sent);
                // The interval counts from the send: a slow answer does not stretch it.
                tokio::time::sleep(jittered(config.heartbeat).saturating_sub(sent.elapsed())).await
            }
            Err(e) if auth::refused(&client, &config.node_id, "heartbeat", &e) => {
                metrics.heartbeat("refused");
                // A new token in the file is tried at once; the same one again only after a pause.
                if !token_file.reload(&client) {
                    tokio::time::sleep(auth::pause(refusals)).await;
                }
                refusals = refusals.saturating_add(1);
            }
            Err(e) => {
                metrics.heartbeat("failed");
                tracing::warn!(node = %config.node_id, error = %e, "heartbeat not acknowledged");
                let jitter = rand::random::<u64>() % 50;
                tokio::time::sleep(Duration::from_millis(20 + jitter)).await;
            }
        }
    }
}

/// The interval shortened by up to a tenth, at random. Replicas answer the heartbeats of one
/// batch together, so agents that all waited exactly the interval would fall into step and
/// arrive in bursts; never waiting longer than the interval keeps the TTL margin intact.
fn jittered(interval: Duration) -> Duration {
    let tenth = interval.as_millis() as u64 / 10;
    interval.saturating_sub(Duration::from_millis(rand::random::<u64>() % (tenth + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_counts_from_the_send_of_the_latest_acknowledged_heartbeat() {
        let earlier = std::time::Instant::now() - Duration::from_millis(400);
        let contact = Contact { last_ack: std::sync::Mutex::new(earlier - Duration::from_secs(1)) };
        let later = earlier + Duration::from_millis(300);
        contact.acked(later);
        // An older heartbeat answered late does not move contact back.
        contact.acked(earlier);
        let silence = contact.silence();
        assert!(silence >= Duration::from_millis(100) && silence < Duration::from_millis(300), "{silence:?}");
    }

    #[test]
    fn jitter_only_shortens_and_by_at_most_a_tenth() {
        let interval = Duration::from_millis(250);
        let samples: Vec<Duration> = (0..1000).map(|_| jittered(interval)).collect();
        assert!(samples.iter().all(|d| *d <= interval && *d >= Duration::from_millis(225)));
        assert!(samples.iter().any(|d| *d != samples[0]), "intervals vary");
    }
}
