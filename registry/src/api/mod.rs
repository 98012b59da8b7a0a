//! The Plum HTTP API, served identically by every replica.
//!
//! Reads come from the local in-memory view (with the applied index in a header; `consistent=true`
//! waits for a linearizable read index first). Writes go through [`AppState::write`]: proposed
//! here when this replica leads, forwarded one hop to the leader otherwise, or answered with a
//! redirect when the client asks for one. Every response names the leader.

mod client_guard;
mod cluster_admin;
mod deployments;
mod discovery;
mod error;
mod extract;
mod failovers;
mod internal;
mod kv;
mod nodes;
mod observed;
mod peer_guard;
mod scope;
mod services;
mod tokens;
mod topology;
mod ui;
mod validate;
mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use plum_types::{Endpoint, headers as h, traceparent};

use crate::cluster::{Applied, Cluster, WriteError};
use crate::liveness::{RenewBatcher, Tracker};
use crate::state::Op;
pub use error::ApiError;
use extract::Query;

/// API request bodies are small; anything bigger is refused before parsing.
const MAX_API_BODY: usize = 1024 * 1024;

pub struct AppState {
    pub cluster: Arc<Cluster>,
    /// Node and instance registrations, proposed in batches (`cluster::coalesce`).
    pub registrations: crate::cluster::coalesce::Coalescer,
    pub tracker: Arc<Tracker>,
    pub batcher: RenewBatcher,
    /// This replica's Prometheus metrics (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// `strategy=lazy`: the endpoint last handed out per (service, version, protocol).
    lazy_choice: Mutex<HashMap<String, Endpoint>>,
    /// Observed dependencies being proposed (`observed.rs`).
    observations: observed::Observations,
}

pub type Shared = Arc<AppState>;

impl AppState {
    pub fn new(
        cluster: Arc<Cluster>,
        tracker: Arc<Tracker>,
        batcher: RenewBatcher,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> AppState {
        let registrations = crate::cluster::coalesce::Coalescer::start(cluster.clone());
        AppState {
            cluster,
            registrations,
            tracker,
            batcher,
            metrics,
            lazy_choice: Mutex::new(HashMap::new()),
            observations: observed::Observations::default(),
        }
    }

    /// Commits `op`, unless the client asked to be redirected to the leader instead.
    pub async fn write(
        &self,
        headers: &HeaderMap,
        query: &Query,
        uri: &axum::http::Uri,
        op: Op,
    ) -> Result<Applied, ApiError> {
        if self.redirect_wanted(headers, query)
            && let Some(leader) = self.cluster.leader().filter(|l| l.id != self.cluster.id)
        {
            let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let location = format!("{}{path}", self.cluster.config.url_of(&leader.addr));
            return Err(ApiError::Redirect { leader, location });
        }
        Ok(self.cluster.write(op).await?)
    }

    /// Commits an idempotent upsert (a node or instance registration), batched with others
    /// that arrive at the same moment; or redirects, like [`AppState::write`].
    pub async fn write_upsert(
        &self,
        headers: &HeaderMap,
        query: &Query,
        uri: &axum::http::Uri,
        op: Op,
    ) -> Result<(), ApiError> {
        if self.redirect_wanted(headers, query) {
            return self.write(headers, query, uri, op).await.map(|_| ());
        }
        Ok(self.registrations.write(op).await?)
    }

    /// Plain renewals go through the replica's renewal batcher (no log entry per heartbeat).
    pub async fn renew(&self, nodes: Vec<String>, instances: Vec<String>) -> Result<(), ApiError> {
        self.batcher.renew(nodes, instances).await.map_err(|e| ApiError::Write(WriteError::Unavailable(e.to_string())))
    }

    fn redirect_wanted(&self, headers: &HeaderMap, query: &Query) -> bool {
        query.flag("redirect")
            || headers.get(h::REDIRECT).and_then(|v| v.to_str().ok()).is_some_and(|v| matches!(v, "1" | "true" | "yes"))
    }

    /// For reads: optionally waits for a linearizable index, then returns the applied index to
    /// report with the response.
    pub async fn read_point(&self, query: &Query) -> Result<u64, ApiError> {
        if query.flag("consistent") {
            self.cluster.read_barrier().await?;
        }
        Ok(self.cluster.applied_index())
    }
}

impl AppState {
    /// A read from this replica's view (after a linearizable barrier when the client asked
    /// for one), answered with the applied index it was served at.
    pub async fn read<T: serde::Serialize>(
        &self,
        query: &Query,
        f: impl FnOnce(&crate::state::Registry) -> T,
    ) -> Result<Response, ApiError> {
        let index = self.read_point(query).await?;
        Ok(with_index(index, axum::Json(self.cluster.with_registry(f))))
    }

    /// A long poll's wait: until `change` (the log index of the last change the watcher cares
    /// about) passes `after`, or `timeout`. Returns the change index to report; after a
    /// timeout never less than `after`, so a watcher's index does not go back (it may have
    /// come from a replica further ahead).
    pub async fn wait_for_change(
        &self,
        after: u64,
        timeout: std::time::Duration,
        change: impl Fn(&crate::state::Registry) -> u64,
    ) -> u64 {
        let mut applied = self.cluster.applied_watch();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                let now = self.cluster.with_registry(&change);
                if now > after || applied.changed().await.is_err() {
                    return now;
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| self.cluster.with_registry(&change).max(after))
    }

    /// The same for one thing that may not exist: `404` naming `what` when it does not.
    pub async fn read_found<T: serde::Serialize>(
        &self,
        query: &Query,
        what: &str,
        f: impl FnOnce(&crate::state::Registry) -> Option<T>,
    ) -> Result<Response, ApiError> {
        let index = self.read_point(query).await?;
        match self.cluster.with_registry(f) {
            Some(found) => Ok(with_index(index, axum::Json(found))),
            None => Err(ApiError::NotFound(format!("{what} not found"))),
        }
    }
}

/// Long polls: how long a watch waits by default, and at most (`timeoutMs`).
pub const WATCH_DEFAULT: std::time::Duration = std::time::Duration::from_secs(30);
pub const WATCH_MAX: std::time::Duration = std::time::Duration::from_secs(120);
/// Header with the index a watch answer reflects; pass it back as `index` to resume.
pub const INDEX_HEADER: &str = "x-plum-index";

/// The bound of a long poll: `timeoutMs`, or the default, never above the maximum.
pub fn watch_timeout(query: &Query) -> Result<std::time::Duration, ApiError> {
    Ok(query.number("timeoutMs")?.map(std::time::Duration::from_millis).unwrap_or(WATCH_DEFAULT).min(WATCH_MAX))
}

/// Adds the applied index a read was served at.
pub fn with_index(index: u64, resp: impl IntoResponse) -> Response {
    let mut resp = resp.into_response();
    resp.headers_mut().insert(h::APPLIED_INDEX, HeaderValue::from(index));
    resp
}

pub fn router(state: Shared) -> Router {
    let body_timeout = state.cluster.config.serve.body_timeout;
    let header_limits = state.cluster.config.serve.header_limits();
    let api = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(crate::metrics::serve))
        .merge(ui::routes())
        .route("/v1/nodes/heartbeat", post(nodes::heartbeat))
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/nodes/{id}", get(nodes::get_one).delete(nodes::remove))
        .route("/v1/services/register", post(services::register))
        .route("/v1/services/heartbeat", post(services::heartbeat))
        .route("/v1/services/register/batch", post(services::register_batch))
        .route("/v1/services/heartbeat/batch", post(services::heartbeat_batch))
        .route("/v1/services", delete(services::deregister))
        .route("/v1/services/list", get(services::list))
        .route("/v1/services/{name}/dependents", get(topology::dependents))
        .route("/v1/topology", get(topology::topology))
        .route("/v1/discovery", get(discovery::all))
        .route("/v1/discovery/random", get(discovery::random))
        .route("/v1/discovery/one", get(discovery::one))
        .route("/v1/discovery/stream", get(discovery::stream))
        .route("/v1/kv", get(kv::namespaces))
        .route("/v1/kv/{ns}", get(kv::list))
        .route("/v1/kv/{ns}/keys", get(kv::keys).put(kv::put_literal).delete(kv::delete_literal))
        .route(
            "/v1/kv/{ns}/batch",
            post(kv::batch).get(kv::get_literal).put(kv::put_literal).delete(kv::delete_literal),
        )
        .route("/v1/kv/{ns}/copy", post(kv::copy).get(kv::get_literal).put(kv::put_literal).delete(kv::delete_literal))
        .route("/v1/kv/{ns}/key/{key}", get(kv::get).put(kv::put).delete(kv::remove))
        .route("/v1/kv/{ns}/key/{key}/history", get(kv::history))
        .route("/v1/kv/{ns}/key/{key}/rollback", post(kv::rollback))
        .route("/v1/kv/{ns}/{key}", get(kv::get).put(kv::put).delete(kv::remove))
        .route("/v1/deployments", get(deployments::list).post(deployments::create))
        .route("/v1/deployments/{id}", get(deployments::get_one).delete(deployments::remove).patch(deployments::update))
        .route("/v1/deployments/{id}/rollback", post(deployments::rollback))
        .route("/v1/assignments", get(deployments::assignments))
        .route("/v1/stream", get(deployments::stream))
        .route("/v1/instances/status", post(deployments::report))
        .route("/v1/cluster", get(cluster_admin::status))
        .route("/v1/cluster/learners", post(cluster_admin::add_learner))
        .route("/v1/cluster/voters", post(cluster_admin::promote))
        .route("/v1/cluster/members/{id}", delete(cluster_admin::remove_member))
        .route("/v1/cluster/transfer-leader", post(cluster_admin::transfer_leader))
        .route("/v1/cluster/reschedule", post(cluster_admin::resume_rescheduling))
        .route("/v1/failovers", get(failovers::list))
        .route("/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/v1/tokens/{id}", delete(tokens::revoke))
        .route("/v1/auth/whoami", get(tokens::whoami))
        // After routing (it needs the matched route), before any handler reads a body.
        .route_layer(middleware::from_fn_with_state(state.clone(), client_guard::authorize))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // The limit counts inflated bytes: `wire::gzip` wraps it (a small gzip bomb is a 413).
        .layer(DefaultBodyLimit::max(MAX_API_BODY))
        .with_state(state.clone());
    // gzip for clients, not between replicas (internal and Raft bodies are MessagePack).
    let admission = crate::serve::admission::Admission::new(state.cluster.config.serve.max_in_flight);
    let api = wire::gzip(api).layer(middleware::from_fn_with_state(admission, crate::serve::admission::admit));
    let guard = middleware::from_fn_with_state(state.cluster.config.peer_auth.clone(), peer_guard::require_peer);
    let internal = internal::routes(state.clone()).layer(guard.clone());
    let raft = crate::cluster::raft_routes::routes(state.cluster.clone()).layer(guard);
    let http_metrics = state.metrics.http.clone();
    let replica = state.cluster.id;
    Router::new()
        .merge(api)
        .merge(internal)
        .merge(raft)
        .layer(middleware::from_fn_with_state(state, common_headers))
        .layer(middleware::from_fn_with_state(body_timeout, crate::serve::deadline::body_deadline))
        .layer(middleware::from_fn_with_state(header_limits, crate::serve::header_limit::limit_headers))
        // Outermost: every answer counts, refusals of the layers above included. Layers apply
        // per route, after routing, so the route template (`MatchedPath`) is known here.
        .layer(middleware::from_fn_with_state(http_metrics, crate::metrics::http::track))
        // The request's span and trace context, around everything (`trace.rs`).
        .layer(middleware::from_fn_with_state(replica, crate::trace::request_span))
}

/// Requests that only the leader can decide (membership changes, placements): a follower
/// passes the request on, one hop, and relays the answer. `None`: handle it here.
async fn on_leader(
    state: &Shared,
    headers: &HeaderMap,
    req_path: &str,
    method: reqwest::Method,
    body: Bytes,
) -> Option<Response> {
    let leader = state.cluster.leader()?;
    if leader.id == state.cluster.id || headers.contains_key(h::FORWARDED) {
        return None;
    }
    let url = format!("{}{req_path}", state.cluster.config.url_of(state.cluster.config.dial(&leader.addr)));
    let mut request = state.cluster.http.request(method, &url);
    // The request's trace goes on to the leader, with this request as the parent.
    if let Some(trace) = crate::trace::outgoing() {
        request = request.header(traceparent::HEADER, trace.to_string());
    }
    let sent = request
        .header(h::FORWARDED, state.cluster.id.to_string())
        // The leader checks the caller again (it may have revoked the token meanwhile).
        .headers(headers.get(header::AUTHORIZATION).map(|v| (header::AUTHORIZATION, v.clone())).into_iter().collect())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .timeout(cluster_admin::LEARNER_CATCH_UP + std::time::Duration::from_secs(2))
        .send()
        .await;
    Some(match sent {
        Ok(resp) => {
            let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let bytes = resp.bytes().await.unwrap_or_default();
            (status, [(axum::http::header::CONTENT_TYPE, "application/json")], bytes).into_response()
        }
        // Never sent: safe to retry. Sent, then lost: the change may have been made.
        Err(e) if e.is_connect() => {
            ApiError::Write(WriteError::Unavailable(format!("forwarding to leader: {e}"))).into_response()
        }
        Err(e) => ApiError::Write(WriteError::Indeterminate(format!("forwarding to leader: {e}"))).into_response(),
    })
}

/// The parts of a request a handler that may forward it needs.
async fn body_and_parts(req: Request) -> Result<(HeaderMap, String, Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.map_err(|e| {
        // Too big, or unreadable (e.g. not the gzip its `Content-Encoding` claims).
        let too_big = std::iter::successors(std::error::Error::source(&e), |s| s.source())
            .any(|s| s.is::<http_body_util::LengthLimitError>());
        if too_big {
            ApiError::TooLarge
        } else if crate::serve::deadline::is_deadline(&e) {
            ApiError::BodyTimeout(e.to_string())
        } else {
            ApiError::bad(format!("cannot read body: {e}"))
        }
    })?;
    Ok((parts.headers, path, bytes))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// CORS preflight for browsers, and the leader / replica headers on every response.
async fn common_headers(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let mut resp = if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let hs = r.headers_mut();
        hs.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"));
        hs.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
        hs.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        r
    } else {
        next.run(req).await
    };
    let hs = resp.headers_mut();
    hs.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    hs.insert(h::REPLICA_ID, HeaderValue::from(state.cluster.id));
    // RFC 7694: tells clients they may gzip request bodies (the SDK waits for this).
    hs.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    if let Some(leader) = state.cluster.leader() {
        hs.insert(h::LEADER_ID, HeaderValue::from(leader.id));
        if let Ok(v) = HeaderValue::from_str(&state.cluster.config.url_of(&leader.addr)) {
            hs.insert(h::LEADER_ADDR, v);
        }
    }
    resp
}
