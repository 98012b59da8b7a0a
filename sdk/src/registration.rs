//! Registration for services that no agent runs: register, heartbeat in the background (at the
//! interval the cluster advises for the TTL in force), register again when the cluster forgot an instance, deregister on shutdown. All instances of one
//! [`Registrar`] are registered and heartbeated together, one batch request per interval (weak
//! networks: one round trip, gzipped, however many instances).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plum_types::{BatchResponse, HeartbeatBatch, RegisterBatch, RegisterRequest, ServiceHeartbeat};
use reqwest::Method;
use tokio::task::JoinHandle;

use crate::controllers::{Controllers, Request, query};
use crate::error::ClientError;

/// The TTL an instance declares unless told otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// Until the cluster advises an interval (its answers to registrations and heartbeats do),
/// heartbeats go out at a quarter of the TTL, so three may be lost before the instance expires.
pub fn interval_for(ttl: Duration) -> Duration {
    (ttl / 4).max(Duration::from_millis(50))
}

type Instances = Arc<Mutex<BTreeMap<String, RegisterRequest>>>;

pub struct Registrar {
    c: Arc<Controllers>,
    instances: Instances,
    ttl: Duration,
    /// The heartbeat interval in ms: TTL/4 until the cluster advises one in its answers.
    interval_ms: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Registrar {
    /// Starts the heartbeat loop (idle until something is registered).
    pub fn new(c: Arc<Controllers>, ttl: Duration) -> Registrar {
        let instances: Instances = Arc::default();
        let interval_ms = Arc::new(AtomicU64::new(interval_for(ttl).as_millis() as u64));
        let task = tokio::spawn(heartbeat_loop(c.clone(), instances.clone(), ttl, interval_ms.clone()));
        Registrar { c, instances, ttl, interval_ms, task }
    }

    /// Registers instances (in one request) and keeps them alive from now on. Each declares
    /// this registrar's TTL unless it names its own.
    pub async fn register(&self, items: Vec<RegisterRequest>) -> Result<(), ClientError> {
        let ttl_ms = self.ttl.as_millis() as u64;
        let items: Vec<RegisterRequest> =
            items.into_iter().map(|r| RegisterRequest { ttl_ms: r.ttl_ms.or(Some(ttl_ms)), ..r }).collect();
        let answer = send_registrations(&self.c, items.clone()).await?;
        follow_advice(&self.interval_ms, &answer);
        let mut held = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        for r in items {
            held.insert(r.instance_id.clone(), r);
        }
        Ok(())
    }

    /// Stops heartbeating `instance_id` and removes its endpoints from discovery.
    pub async fn deregister(&self, instance_id: &str) -> Result<(), ClientError> {
        self.instances.lock().unwrap_or_else(|p| p.into_inner()).remove(instance_id);
        self.c.send_text(deregistration(instance_id)?).await.map(|_| ())
    }

    /// Deregisters everything and stops. Prefer this to a plain drop, which can only try.
    pub async fn shutdown(self) -> Result<(), ClientError> {
        self.task.abort();
        let ids: Vec<String> = self.instances.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        for id in ids {
            self.deregister(&id).await?;
        }
        Ok(())
    }

    /// The interval heartbeats go out at now.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.load(Ordering::Relaxed))
    }

    pub fn instance_ids(&self) -> Vec<String> {
        self.instances.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }
}

impl Drop for Registrar {
    /// Best effort: deregisters in the background when a runtime is still there.
    fn drop(&mut self) {
        self.task.abort();
        let ids: Vec<String> = self.instances.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        if ids.is_empty() {
            return;
        }
        let c = self.c.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for id in ids {
                    if let Ok(req) = deregistration(&id) {
                        let _ = c.send_text(req).await;
                    }
                }
            });
        }
    }
}

fn deregistration(instance_id: &str) -> Result<Request, ClientError> {
    let path = format!("/v1/services?{}", query(&[("instanceId", instance_id)]));
    Request::write::<()>(Method::DELETE, path, None, true)
}

async fn send_registrations(c: &Controllers, items: Vec<RegisterRequest>) -> Result<BatchResponse, ClientError> {
    let batch = RegisterBatch { items };
    let req = Request::write(Method::POST, "/v1/services/register/batch", Some(&batch), true)?;
    c.send::<BatchResponse>(req).await.map(|a| a.body)
}

/// Heartbeats go out at the interval the cluster advises for the TTLs in force.
fn follow_advice(interval_ms: &AtomicU64, answer: &BatchResponse) {
    if let Some(ms) = answer.heartbeat_interval_ms.filter(|ms| *ms > 0) {
        interval_ms.store(ms, Ordering::Relaxed);
    }
}

/// Every interval, one batch heartbeat for all held instances; those the cluster answers it
/// does not know are registered again.
async fn heartbeat_loop(c: Arc<Controllers>, instances: Instances, ttl: Duration, interval_ms: Arc<AtomicU64>) {
    let ttl_ms = ttl.as_millis() as u64;
    loop {
        let interval = Duration::from_millis(interval_ms.load(Ordering::Relaxed));
        tokio::time::sleep(interval).await;
        let items: Vec<ServiceHeartbeat> = {
            let held = instances.lock().unwrap_or_else(|p| p.into_inner());
            held.values()
                .map(|r| ServiceHeartbeat {
                    instance_id: r.instance_id.clone(),
                    ttl_ms: r.ttl_ms.or(Some(ttl_ms)),
                    ..Default::default()
                })
                .collect()
        };
        if items.is_empty() {
            continue;
        }
        let count = items.len();
        let req =
            match Request::write(Method::POST, "/v1/services/heartbeat/batch", Some(&HeartbeatBatch { items }), true) {
                Ok(r) => r.deadline(interval.max(Duration::from_millis(500))),
                Err(_) => continue,
            };
        match c.send::<BatchResponse>(req).await {
            Ok(answer) => {
                follow_advice(&interval_ms, &answer.body);
                let unknown = answer.body.unknown.unwrap_or_default();
                if unknown.is_empty() {
                    continue;
                }
                let again: Vec<RegisterRequest> = {
                    let held = instances.lock().unwrap_or_else(|p| p.into_inner());
                    unknown.iter().filter_map(|id| held.get(id).cloned()).collect()
                };
                tracing::info!(count = again.len(), "the cluster forgot instances; registering them again");
                if let Err(e) = send_registrations(&c, again).await {
                    tracing::warn!(error = %e, "registering again failed; next heartbeat retries");
                }
            }
            Err(e) => tracing::warn!(instances = count, error = %e, "heartbeat not acknowledged"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_come_four_times_per_ttl() {
        assert_eq!(interval_for(Duration::from_secs(10)), Duration::from_millis(2500));
        assert_eq!(interval_for(Duration::from_millis(100)), Duration::from_millis(50));
    }
}
