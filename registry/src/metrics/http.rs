//! Requests served by this replica, by route template (axum's `MatchedPath`, never the raw
//! path: `/v1/kv/{ns}/{key}` is one series, whatever the keys), method and status; and how
//! long each took until its answer's head was ready (a long poll counts its wait, a stream the
//! time to its first byte).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The route label of a request no route matched (404s of unknown paths).
pub const UNMATCHED: &str = "unmatched";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub route: String,
    pub method: &'static str,
    pub status_class: &'static str,
}

type Latencies = Family<LatencyLabels, Histogram, fn() -> Histogram>;

/// 0.5 ms to about 65 s, doubling: Raft appends at the bottom, long polls (30 s by default)
/// at the top.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Latencies,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics { requests: Family::default(), latency: Family::new_with_constructor(latency_histogram) }
    }
}

impl HttpMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "plum_http_requests",
            "HTTP requests answered by this replica, by route template, method and status code",
            self.requests.clone(),
        );
        registry.register(
            "plum_http_request_duration_seconds",
            "Time from a request's arrival to its answer's head, by route template, method and status class",
            self.latency.clone(),
        );
    }

    pub fn observe(&self, route: &str, method: &Method, status: StatusCode, seconds: f64) {
        let method = method_label(method);
        let route = route.to_string();
        let class = status_class(status);
        self.requests.get_or_create(&RequestLabels { route: route.clone(), method, status: status.as_u16() }).inc();
        self.latency.get_or_create(&LatencyLabels { route, method, status_class: class }).observe(seconds);
    }
}

/// Methods are free text in HTTP: anything but the usual ones is `OTHER`, so a client cannot
/// create series at will.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

pub fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The middleware: after routing (it reads `MatchedPath`), around everything else.
pub async fn track(State(metrics): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or(UNMATCHED, |p| p.as_str()).to_string();
    let method = req.method().clone();
    let started = Instant::now();
    let resp = next.run(req).await;
    metrics.observe(&route, &method, resp.status(), started.elapsed().as_secs_f64());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_small_fixed_sets() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
        assert_eq!(status_class(StatusCode::OK), "2xx");
        assert_eq!(status_class(StatusCode::TEMPORARY_REDIRECT), "3xx");
        assert_eq!(status_class(StatusCode::TOO_MANY_REQUESTS), "4xx");
        assert_eq!(status_class(StatusCode::SERVICE_UNAVAILABLE), "5xx");
        assert_eq!(status_class(StatusCode::SWITCHING_PROTOCOLS), "1xx");
    }

    #[test]
    fn requests_are_counted_by_route_template() {
        let metrics = HttpMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        for _ in 0..3 {
            metrics.observe("/v1/kv/{ns}/{key}", &Method::PUT, StatusCode::OK, 0.002);
        }
        metrics.observe("/v1/kv/{ns}/{key}", &Method::PUT, StatusCode::SERVICE_UNAVAILABLE, 0.5);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"plum_http_requests_total{route="/v1/kv/{ns}/{key}",method="PUT",status="200"} 3"#),
            "{text}"
        );
        assert!(text.contains(r#"status="503"} 1"#), "{text}");
        let count =
            r#"plum_http_request_duration_seconds_count{route="/v1/kv/{ns}/{key}",method="PUT",status_class="2xx"} 3"#;
        assert!(text.contains(count), "{text}");
    }
}
