//! The agent's Prometheus metrics, served as OpenMetrics text at `GET /metrics` on
//! `--metrics-addr` (off unless given: several agents share a machine in tests and labs, so no
//! fixed port is taken by default, and no listener is opened that nobody asked for). Plain
//! HTTP without authentication: bind it to loopback or a private address.
//!
//! One [`AgentMetrics`] per agent, handed to the tasks that count (no global state).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("--metrics-addr {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok`, `refused` (the token) or `failed` (no answer, or an error).
    pub outcome: &'static str,
}

pub struct AgentMetrics {
    registry: Registry,
    /// Instances assigned to this node that it supervises now.
    pub instances: Gauge,
    /// Of those, the ones whose process passed readiness and runs.
    pub ready: Gauge,
    pub starts: Counter,
    pub restarts: Counter,
    pub readiness_failures: Counter,
    pub fenced: Counter,
    pub start_to_ready: Histogram,
    heartbeats: Family<OutcomeLabels, Counter>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics::new()
    }
}

impl AgentMetrics {
    pub fn new() -> AgentMetrics {
        let heartbeats = Family::<OutcomeLabels, Counter>::default();
        for outcome in ["ok", "refused", "failed"] {
            let _ = heartbeats.get_or_create(&OutcomeLabels { outcome });
        }
        let mut m = AgentMetrics {
            registry: Registry::default(),
            instances: Gauge::default(),
            ready: Gauge::default(),
            starts: Counter::default(),
            restarts: Counter::default(),
            readiness_failures: Counter::default(),
            fenced: Counter::default(),
            // 50 ms to about 100 s, doubling (readiness gives up after 30 s).
            start_to_ready: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
            heartbeats,
        };
        let registry = &mut m.registry;
        registry.register(
            "plum_agent_instances",
            "Instances assigned to this node that its agent supervises",
            m.instances.clone(),
        );
        registry.register(
            "plum_agent_instances_ready",
            "Supervised instances running and past readiness",
            m.ready.clone(),
        );
        registry.register("plum_agent_instance_starts", "Instance processes this agent started", m.starts.clone());
        registry.register(
            "plum_agent_instance_restarts",
            "Instances started again after their process exited, crashed or never became ready",
            m.restarts.clone(),
        );
        registry.register(
            "plum_agent_readiness_failures",
            "Instance processes that did not pass readiness in time (stopped and restarted)",
            m.readiness_failures.clone(),
        );
        registry.register(
            "plum_agent_instances_fenced",
            "Instances stopped because the node lost contact with the controllers (`fencing: stop`)",
            m.fenced.clone(),
        );
        registry.register(
            "plum_agent_instance_start_to_ready_seconds",
            "From starting an instance's process to its readiness passing",
            m.start_to_ready.clone(),
        );
        registry.register(
            "plum_agent_heartbeats",
            "Node heartbeats sent to the controllers, by outcome",
            m.heartbeats.clone(),
        );
        m
    }

    pub fn heartbeat(&self, outcome: &'static str) {
        self.heartbeats.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Counts an instance as ready until the returned guard is dropped.
    pub fn ready_until_dropped(&self, after: Duration) -> ReadyGuard {
        self.start_to_ready.observe(after.as_secs_f64());
        self.ready.inc();
        ReadyGuard { ready: self.ready.clone() }
    }
}

/// One ready instance, counted in `plum_agent_instances_ready` while it lives.
pub struct ReadyGuard {
    ready: Gauge,
}

impl Drop for ReadyGuard {
    fn drop(&mut self) {
        self.ready.dec();
    }
}

/// Binds `addr` (a bad one stops the agent at start, like any bad setting).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr).await.map_err(|source| MetricsError::Bind { addr, source })
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, metrics: Arc<AgentMetrics>) {
    let app = Router::new().route("/metrics", get(scrape)).with_state(metrics);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics listener stopped");
    }
}

async fn scrape(State(metrics): State<Arc<AgentMetrics>>) -> Response {
    match metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        // Only a failing writer makes the encoder fail, and a String does not fail.
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(text: &str, line: &str) {
        assert!(text.lines().any(|l| l == line), "no line `{line}` in:\n{text}");
    }

    #[test]
    fn counts_and_the_ready_gauge_follow_the_instances() {
        let m = AgentMetrics::new();
        m.starts.inc();
        let guard = m.ready_until_dropped(Duration::from_millis(300));
        m.heartbeat("ok");
        m.heartbeat("ok");
        m.heartbeat("failed");
        let text = m.encode().unwrap();
        has(&text, "plum_agent_instances_ready 1");
        has(&text, "plum_agent_instance_starts_total 1");
        has(&text, "plum_agent_instance_start_to_ready_seconds_count 1");
        has(&text, r#"plum_agent_heartbeats_total{outcome="ok"} 2"#);
        has(&text, r#"plum_agent_heartbeats_total{outcome="refused"} 0"#);
        drop(guard);
        has(&m.encode().unwrap(), "plum_agent_instances_ready 0");
    }

    #[tokio::test]
    async fn the_listener_serves_metrics_and_nothing_else() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(AgentMetrics::new());
        metrics.restarts.inc();
        tokio::spawn(serve(listener, metrics));
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let resp = http.get(format!("http://{addr}/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()[header::CONTENT_TYPE.as_str()].to_str().unwrap().starts_with("application/openmetrics-text")
        );
        let text = resp.text().await.unwrap();
        has(&text, "plum_agent_instance_restarts_total 1");
        assert!(text.ends_with("# EOF\n"), "{text}");
        let other = http.get(format!("http://{addr}/metrics/../x")).send().await.unwrap();
        assert_eq!(other.status(), 404);
        // A port in use is an error, not a panic.
        let taken = bind(addr).await.unwrap_err();
        assert!(taken.to_string().contains(&addr.to_string()), "{taken}");
    }
}
