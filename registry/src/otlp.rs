//! OTLP/HTTP export of spans (cargo feature `otlp`; on at run time with `--otlp-endpoint`).
//!
//! What is exported: the `request` spans of `trace.rs` (target `plum::http`) and, within them,
//! `propose`/`forward` (target `plum::raft`), at DEBUG whatever `PLUM_LOG` says (the log
//! output keeps its own filter, `plum_sdk::logging::init_with`). A trace starts only at a
//! client, internal or admin request: the sampler ([`Roots`]) drops root spans of Raft routes
//! (`/raft/*`: appends and heartbeats, tens a second per follower) and root spans that are no
//! request (`apply` on every replica, proposals of the leader's own duties). A request that
//! came with a `traceparent` continues that trace (`adopt`: the caller's span is the parent,
//! its sampled flag decides), so a write forwarded by a follower is one trace of two request
//! spans on two replicas.
//!
//! The W3C context and OpenTelemetry agree: when spans are exported, a request's `trace_id`
//! and `request_id` (logged, and sent on to the leader as `traceparent`) are the ids of its
//! exported span, so the leader's span names the follower's exported span as its parent.
//!
//! How it never gets in the way of serving: spans end into the SDK's batch processor, a bounded
//! queue ([`QUEUE`] spans) drained by a thread of its own; when the queue is full, spans are
//! dropped, never waited for (the SDK warns at the first drop and counts them all at shutdown).
//! That thread exports with reqwest's blocking client (it has no tokio runtime: the async
//! client would need one), one POST per batch bounded by [`EXPORT_TIMEOUT`], no retries: a
//! failed export drops its batch, counted and warned about (at most once a minute). A dead or
//! black-holed collector costs that one thread its time and nothing else. On shutdown the queue
//! is flushed for at most [`SHUTDOWN_TIMEOUT`]. The protobuf is written by `wire.rs`.

mod wire;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt, TraceFlags, TraceState, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SamplingDecision, SamplingResult, SdkTracerProvider, ShouldSample,
    SpanData, SpanExporter,
};
use plum_types::traceparent::{SpanId, TraceId, TraceParent};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::{Layer, Registry};

/// `service.name` of the exported spans' resource; `service.instance.id` is the replica id.
pub const SERVICE_NAME: &str = "plum-controller";

/// Spans waiting for export, at most; more are dropped.
pub const QUEUE: usize = 4096;
/// Spans per export request, at most.
pub const BATCH: usize = 512;
/// A batch leaves at the latest this long after its first span ended.
pub const DELAY: Duration = Duration::from_secs(1);
/// One export (one POST) gives up after this: the batch is lost.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// On shutdown, the queue is flushed for at most this long.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Failed exports are warned about at most once per this.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Set once export is installed: `trace.rs` asks it on every request (one relaxed load).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Export counts, since start.
#[derive(Debug, Default)]
pub struct Stats {
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans of failed exports (collector down, refused, too slow): dropped.
    pub failed: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

/// The running export: shut it down when the replica stops, to send what is queued.
pub struct Exporting {
    provider: SdkTracerProvider,
    pub stats: Arc<Stats>,
}

/// Installs the process's subscriber: the log output of `plum_sdk::logging` (`format`,
/// `PLUM_LOG` or `default_filter`) and span export to `traces_url` (from
/// `config::otlp_traces_url`), its resource naming replica `replica`.
pub fn init(
    format: plum_sdk::logging::LogFormat,
    default_filter: &str,
    traces_url: &str,
    replica: u64,
) -> Result<Exporting, String> {
    let (exporting, layer) = start(traces_url, replica)?;
    plum_sdk::logging::init_with(format, default_filter, layer);
    Ok(exporting)
}

/// The exporter and the layer that feeds it (tests install it their own way).
pub fn start(traces_url: &str, replica: u64) -> Result<(Exporting, plum_sdk::logging::ExtraLayer), String> {
    // Built on a thread of its own: reqwest's blocking client must not be made (or dropped)
    // on an async runtime, and `main` calls this on one. It lives on the batch thread after.
    let client = std::thread::spawn(|| {
        reqwest::blocking::Client::builder().timeout(EXPORT_TIMEOUT).connect_timeout(EXPORT_TIMEOUT).build()
    })
    .join()
    .map_err(|_| "building the OTLP HTTP client panicked".to_string())?
    .map_err(|e| format!("OTLP HTTP client: {e}"))?;
    let stats = Arc::new(Stats::default());
    let exporter = HttpExporter { client, url: traces_url.to_string(), resource: Vec::new(), stats: stats.clone() };
    let batches = BatchConfigBuilder::default()
        .with_max_queue_size(QUEUE)
        .with_max_export_batch_size(BATCH)
        .with_scheduled_delay(DELAY)
        .build();
    let resource = Resource::builder()
        .with_service_name(SERVICE_NAME)
        .with_attribute(KeyValue::new("service.instance.id", replica.to_string()))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).with_batch_config(batches).build())
        .with_resource(resource)
        .with_sampler(Sampler::ParentBased(Box::new(Roots)))
        .build();
    let layer = tracing_opentelemetry::layer::<Registry>()
        .with_tracer(provider.tracer(SERVICE_NAME))
        .with_location(false)
        .with_threads(false)
        .with_filter(
            Targets::new()
                .with_target(crate::trace::TARGET, LevelFilter::DEBUG)
                .with_target(crate::cluster::SPAN_TARGET, LevelFilter::DEBUG),
        );
    ACTIVE.store(true, Ordering::Relaxed);
    Ok((Exporting { provider, stats }, Box::new(layer)))
}

impl Exporting {
    /// Sends what is queued, waiting at most [`SHUTDOWN_TIMEOUT`] (off the async runtime).
    pub async fn shutdown(self) {
        let Exporting { provider, stats } = self;
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)).await;
        let (exported, failed) = (stats.exported.load(Ordering::Relaxed), stats.failed.load(Ordering::Relaxed));
        match flushed {
            Ok(Ok(())) => tracing::info!(exported, failed, "span export stopped"),
            Ok(Err(e)) => {
                tracing::warn!(exported, failed, error = %e, "span export stopped without sending everything")
            }
            Err(e) => tracing::warn!(error = %e, "span export shutdown failed"),
        }
    }
}

/// Gives the request span `span` the caller's context `incoming` as its parent (when it sent
/// one) and returns the span's ids: its trace (the caller's, or a new one) and its own span
/// id. `None` when the span is not exported (export off or the span disabled).
pub fn adopt(span: &tracing::Span, incoming: Option<TraceParent>) -> Option<(TraceId, SpanId)> {
    if !active() {
        return None;
    }
    if let Some(parent) = incoming {
        let remote = SpanContext::new(
            opentelemetry::trace::TraceId::from_bytes(parent.trace_id.0.to_be_bytes()),
            opentelemetry::trace::SpanId::from_bytes(parent.parent_id.0.to_be_bytes()),
            TraceFlags::new(parent.flags),
            true,
            TraceState::default(),
        );
        // Fails only when the span is not the layer's: then `context` below says `None`.
        let _ = span.set_parent(Context::new().with_remote_span_context(remote));
    }
    // Starts the OpenTelemetry span: its ids (and the sampling decision) are fixed from here.
    let cx = span.context();
    let started = cx.span();
    let ids = started.span_context();
    ids.is_valid().then(|| {
        (TraceId(u128::from_be_bytes(ids.trace_id().to_bytes())), SpanId(u64::from_be_bytes(ids.span_id().to_bytes())))
    })
}

/// The root sampler: a trace starts at a `request` span, unless it serves a Raft route.
/// Children follow their parent (`Sampler::ParentBased`), remote parents included.
#[derive(Debug, Clone)]
struct Roots;

impl ShouldSample for Roots {
    fn should_sample(
        &self,
        _parent: Option<&Context>,
        _trace_id: opentelemetry::trace::TraceId,
        name: &str,
        _kind: &SpanKind,
        attributes: &[KeyValue],
        _links: &[opentelemetry::trace::Link],
    ) -> SamplingResult {
        let decision =
            if starts_trace(name, attributes) { SamplingDecision::RecordAndSample } else { SamplingDecision::Drop };
        SamplingResult { decision, attributes: Vec::new(), trace_state: TraceState::default() }
    }
}

fn starts_trace(name: &str, attributes: &[KeyValue]) -> bool {
    name == "request"
        && !attributes.iter().any(|kv| kv.key.as_str() == "route" && kv.value.as_str().starts_with("/raft/"))
}

/// POSTs each batch to the collector (OTLP/HTTP, protobuf), counting what it sent and lost.
#[derive(Debug)]
struct HttpExporter {
    client: reqwest::blocking::Client,
    url: String,
    /// The provider's resource, encoded once (`set_resource`).
    resource: Vec<u8>,
    stats: Arc<Stats>,
}

impl HttpExporter {
    fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let resp = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() { Ok(()) } else { Err(format!("collector answered {}", resp.status())) }
    }
}

impl SpanExporter for HttpExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let sent = self.post(wire::request(&self.resource, &batch));
        match sent {
            Ok(()) => {
                self.stats.exported.fetch_add(spans, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                let failed = self.stats.failed.fetch_add(spans, Ordering::Relaxed) + spans;
                let mut last = self.stats.last_warning.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    *last = Some(Instant::now());
                    tracing::warn!(url = %self.url, %error, spans, failed, "span export failed; spans dropped");
                }
                Err(OTelSdkError::InternalFailure(error))
            }
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = wire::resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_start_at_requests_but_not_at_raft_routes_or_other_spans() {
        let route = |r: &'static str| [KeyValue::new("method", "PUT"), KeyValue::new("route", r)];
        assert!(starts_trace("request", &route("/v1/kv/{ns}/{key}")));
        assert!(starts_trace("request", &route("/internal/v1/propose")));
        assert!(!starts_trace("request", &route("/raft/append")));
        assert!(!starts_trace("apply", &[KeyValue::new("index", 7)]));
        assert!(!starts_trace("propose", &[]));
    }
}
