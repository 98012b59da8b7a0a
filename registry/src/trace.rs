//! Request spans and trace context.
//!
//! Every request served (client API, internal and Raft routes alike) runs in a `request` span
//! of target [`TARGET`] at DEBUG, with its method, route template (`MatchedPath`, never the raw
//! path), status, `trace_id`, `request_id` (this hop's span id), the caller's `parent_id` and
//! the replica. DEBUG, not INFO: the API serves tens of thousands of requests a second, and a
//! disabled span costs one cached check. Answers that an operator wants to find without
//! switching DEBUG on (a 5xx, or a write slower than [`SLOW_WRITE`]) are logged at INFO with
//! the same fields, at most [`INFO_PER_SECOND`] a second: an election answers every write 503
//! for a few hundred ms, and at that rate a line each would flood the log. Latencies of
//! everything else are in `/metrics`.
//!
//! The trace context (`plum_types::traceparent`) comes from the request's `traceparent` (a
//! malformed one is ignored) or starts here. It is kept task-local for the request, so the
//! calls it makes to other replicas (`cluster::codec::post`, `api::on_leader`) pass it on with
//! this request's id as their parent: the leader's span for a forwarded write names the
//! follower's `request_id` as its `parent_id`, under the same `trace_id`. Work handed to other
//! tasks (registration coalescing, heartbeat batches: one call carries many requests) and
//! Raft's own RPCs carry none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use plum_types::traceparent::{self, SpanId, TraceParent};
use tracing::Instrument;
use tracing::field::Empty;

/// The target of request spans and their events (`PLUM_LOG=info,plum::http=debug`).
pub const TARGET: &str = "plum::http";

/// A write (anything but GET/HEAD: those include long polls and streams) slower than this is
/// logged at INFO.
pub const SLOW_WRITE: Duration = Duration::from_secs(1);

/// At most this many INFO request lines a second per replica; the rest are counted and the
/// count is logged with the next line let through.
pub const INFO_PER_SECOND: u64 = 20;

tokio::task_local! {
    /// The trace context of the request this task serves: its trace, this hop's span id as
    /// the parent id.
    static CURRENT: TraceParent;
}

/// The `traceparent` to send on a call made while serving a request, if any.
pub fn outgoing() -> Option<TraceParent> {
    CURRENT.try_with(|t| *t).ok()
}

/// Runs `f` as part of the trace `context` (tests, and work that carries a trace by hand).
pub async fn within<F: Future>(context: TraceParent, f: F) -> F::Output {
    CURRENT.scope(context, f).await
}

/// The request span, with the trace and span ids given as `trace_id = …, request_id = …` (the
/// same fields in the same order whether or not spans are exported).
macro_rules! request_span {
    ($method:expr, $route:expr, $incoming:expr, $replica:expr, $($ids:tt)+) => {
        tracing::debug_span!(
            target: TARGET,
            "request",
            method = %$method,
            route = $route,
            status = Empty,
            $($ids)+,
            parent_id = $incoming.map(|p| display(p.parent_id)),
            replica = $replica,
        )
    };
}

/// The middleware: after routing (it reads `MatchedPath`), around everything else.
pub async fn request_span(State(replica): State<u64>, req: Request, next: Next) -> Response {
    let incoming = req.headers().get(traceparent::HEADER).and_then(|v| v.to_str().ok()).and_then(TraceParent::parse);
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or(crate::metrics::http::UNMATCHED, MatchedPath::as_str);
    let method = req.method().clone();
    let (span, ours, request_id) = match exported_span(&method, route, incoming, replica) {
        Some(exported) => exported,
        None => {
            let request_id = SpanId::random();
            let ours = incoming.unwrap_or_else(TraceParent::random).with_parent(request_id);
            let span =
                request_span!(method, route, incoming, replica, trace_id = %ours.trace_id, request_id = %request_id);
            (span, ours, request_id)
        }
    };
    let started = Instant::now();
    let resp = CURRENT.scope(ours, next.run(req)).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    span.record("status", status);
    let slow = elapsed_ms >= SLOW_WRITE.as_millis() as u64 && method != Method::GET && method != Method::HEAD;
    if resp.status().is_server_error() || slow {
        if let Some(suppressed) = INFO_LIMIT.allow(Instant::now()) {
            // The fields again: with DEBUG off the span records nothing.
            tracing::info!(
                target: TARGET,
                method = %method,
                route,
                status,
                elapsed_ms,
                trace_id = %ours.trace_id,
                request_id = %request_id,
                suppressed,
                "{}",
                if slow { "slow request" } else { "request failed" },
            );
        }
    } else {
        span.in_scope(|| tracing::debug!(target: TARGET, status, elapsed_ms, "request done"));
    }
    resp
}

/// With span export on (`otlp.rs`): the request span, continuing the caller's trace in
/// OpenTelemetry too, and its ids, which are its exported span's: the trace id (the caller's,
/// or a new one), this request's span id (`request_id`, the parent of the calls it makes).
#[cfg(feature = "otlp")]
fn exported_span(
    method: &Method,
    route: &str,
    incoming: Option<TraceParent>,
    replica: u64,
) -> Option<(tracing::Span, TraceParent, SpanId)> {
    if !crate::otlp::active() {
        return None;
    }
    let span = request_span!(method, route, incoming, replica, trace_id = Empty, request_id = Empty);
    let (trace_id, request_id) = crate::otlp::adopt(&span, incoming)?;
    span.record("trace_id", tracing::field::display(trace_id))
        .record("request_id", tracing::field::display(request_id));
    let flags = incoming.map_or(traceparent::SAMPLED, |p| p.flags);
    Some((span, TraceParent { trace_id, parent_id: request_id, flags }, request_id))
}

/// Without span export: never.
#[cfg(not(feature = "otlp"))]
#[inline(always)]
fn exported_span(_: &Method, _: &str, _: Option<TraceParent>, _: u64) -> Option<(tracing::Span, TraceParent, SpanId)> {
    None
}

static INFO_LIMIT: RateLimit = RateLimit::new(INFO_PER_SECOND);

/// At most `per_second` lets a second, lock-free: one atomic word holds the second and the
/// count in it, another the lines refused since the last one let through.
struct RateLimit {
    per_second: u64,
    /// (second since `EPOCH`) << 32 | lets in that second.
    window: AtomicU64,
    refused: AtomicU64,
}

static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

impl RateLimit {
    const fn new(per_second: u64) -> RateLimit {
        RateLimit { per_second, window: AtomicU64::new(0), refused: AtomicU64::new(0) }
    }

    /// `Some(lines refused since the last let)` when this one may go, else `None`.
    fn allow(&self, now: Instant) -> Option<u64> {
        let second = now.saturating_duration_since(*EPOCH.get_or_init(|| now)).as_secs() & 0xffff_ffff;
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (at, count) = (current >> 32, current & 0xffff_ffff);
            let next = if at != second {
                second << 32 | 1
            } else if count < self.per_second {
                current + 1
            } else {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            match self.window.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(self.refused.swap(0, Ordering::Relaxed)),
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lines_are_limited_per_second_and_the_refused_are_counted() {
        let limit = RateLimit::new(3);
        let t0 = Instant::now();
        EPOCH.get_or_init(|| t0);
        let lets: Vec<Option<u64>> = (0..5).map(|_| limit.allow(t0)).collect();
        assert_eq!(lets, [Some(0), Some(0), Some(0), None, None]);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(limit.allow(later), Some(2), "the next line says how many were left out");
        assert_eq!(limit.allow(later), Some(0));
    }

    #[tokio::test]
    async fn calls_made_while_serving_carry_the_request_trace_and_others_none() {
        assert_eq!(outgoing(), None);
        let context = TraceParent::random();
        let seen = within(context, async { outgoing() }).await;
        assert_eq!(seen, Some(context));
        // A spawned task is not part of the request.
        let spawned = within(context, async { tokio::spawn(async { outgoing() }).await.unwrap() }).await;
        assert_eq!(spawned, None);
    }
}
