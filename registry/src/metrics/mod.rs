//! This replica's Prometheus metrics, served as OpenMetrics text at `GET /metrics`
//! (`prometheus-client`). One [`Metrics`] per replica, held by the app state: never global, so
//! replicas run in one process (tests) keep counts of their own.
//!
//! - [`http`]: requests by route template, method and status; their latency.
//! - [`raft`]: storage timings (append, apply), snapshots, leader changes.
//! - [`liveness`]: heartbeats received and forwarded, batch sizes; what the log says about
//!   expiries, reschedules, takeovers and failover durations.
//! - [`failovers`]: node failovers followed through the applied log (what `liveness` counts and
//!   times), the most recent kept for `GET /v1/failovers`.
//! - [`scrape`]: gauges read at scrape time: Raft's term, role and indexes, live and dead nodes,
//!   deployments' desired, running and ready instances.
//!
//! Names follow Prometheus' conventions: `plum_` first, the unit in the name, counters end in
//! `_total` (the encoder adds it), label values from small fixed sets or operator-made names.

#[cfg(test)]
mod applied_log;
pub mod failovers;
pub mod http;
pub mod liveness;
pub mod raft;
pub mod scrape;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;

use crate::cluster::Cluster;

/// What `/metrics` answers with: OpenMetrics text, which Prometheus asks for first.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub struct Metrics {
    registry: Registry,
    pub http: http::HttpMetrics,
    pub raft: raft::RaftMetrics,
    pub heartbeats: liveness::HeartbeatMetrics,
    /// Shown every applied command (`state::ApplyObserver`).
    pub log: Arc<liveness::LogMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric kept by hand, registered; the scrape-time ones follow with
    /// [`Metrics::read_cluster`] once Raft runs.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let http = http::HttpMetrics::default();
        let raft = raft::RaftMetrics::default();
        let heartbeats = liveness::HeartbeatMetrics::default();
        let log = Arc::new(liveness::LogMetrics::default());
        http.register(&mut registry);
        raft.register(&mut registry);
        heartbeats.register(&mut registry);
        log.register(&mut registry);
        Metrics { registry, http, raft, heartbeats, log }
    }

    /// Adds the gauges read from `cluster` at each scrape.
    pub fn read_cluster(&mut self, cluster: Arc<Cluster>) {
        self.registry.register_collector(Box::new(scrape::ClusterCollector::new(cluster)));
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// `GET /metrics`.
pub async fn serve(State(state): State<crate::api::Shared>) -> Response {
    match state.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        // Only a failing writer makes the encoder fail, and a String does not fail.
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}")).into_response(),
    }
}
