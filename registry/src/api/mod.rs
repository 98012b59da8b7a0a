//! The Plum HTTP API, served identically by every replica.
//!
//! Reads come from the local in-memory view (with the applied index in a header; `consistent=true`
//! waits for a linearizable read index first). Writes go through [`AppState::write`]: proposed
//! here when this replica leads, forwarded one hop to the leader otherwise, or answered with a
//! redirect when the client asks for one. Every response names the leader.

mod cluster_admin;
mod discovery;
mod error;
mod extract;
mod internal;
mod kv;
mod nodes;
mod services;
mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use plum_types::{Endpoint, headers as h};

use crate::cluster::{Applied, Cluster};
use crate::liveness::{RenewBatcher, Tracker};
use crate::state::Op;
pub use error::ApiError;
use extract::Query;

/// API request bodies are small; anything bigger is refused before parsing.
const MAX_API_BODY: usize = 1024 * 1024;

pub struct AppState {
    pub cluster: Arc<Cluster>,
    pub tracker: Arc<Tracker>,
    pub batcher: RenewBatcher,
    /// `strategy=lazy`: the endpoint last handed out per (service, version, protocol).
    lazy_choice: Mutex<HashMap<String, Endpoint>>,
}

pub type Shared = Arc<AppState>;

impl AppState {
    pub fn new(cluster: Arc<Cluster>, tracker: Arc<Tracker>, batcher: RenewBatcher) -> AppState {
        AppState { cluster, tracker, batcher, lazy_choice: Mutex::new(HashMap::new()) }
    }

    /// Commits `op`, unless the client asked to be redirected to the leader instead.
    pub async fn write(
        &self,
        headers: &HeaderMap,
        query: &Query,
        uri: &axum::http::Uri,
        op: Op,
    ) -> Result<Applied, ApiError> {
        let wants_redirect = query.flag("redirect")
            || headers
                .get(h::REDIRECT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| matches!(v, "1" | "true" | "yes"));
        if wants_redirect && let Some(leader) = self.cluster.leader().filter(|l| l.id != self.cluster.id) {
            let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let location = format!("http://{}{path}", leader.addr);
            return Err(ApiError::Redirect { leader, location });
        }
        Ok(self.cluster.write(op).await?)
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

/// Adds the applied index a read was served at.
pub fn with_index(index: u64, resp: impl IntoResponse) -> Response {
    let mut resp = resp.into_response();
    resp.headers_mut().insert(h::APPLIED_INDEX, HeaderValue::from(index));
    resp
}

pub fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/nodes/heartbeat", post(nodes::heartbeat))
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/nodes/{id}", get(nodes::get_one).delete(nodes::remove))
        .route("/v1/services/register", post(services::register))
        .route("/v1/services/heartbeat", post(services::heartbeat))
        .route("/v1/services", delete(services::deregister))
        .route("/v1/services/list", get(services::list))
        .route("/v1/discovery", get(discovery::all))
        .route("/v1/discovery/random", get(discovery::random))
        .route("/v1/discovery/one", get(discovery::one))
        .route("/v1/kv", get(kv::namespaces))
        .route("/v1/kv/{ns}", get(kv::list))
        .route("/v1/kv/{ns}/keys", get(kv::keys).put(kv::put_literal).delete(kv::delete_literal))
        .route(
            "/v1/kv/{ns}/batch",
            post(kv::batch).get(kv::get_literal).put(kv::put_literal).delete(kv::delete_literal),
        )
        .route("/v1/kv/{ns}/key/{key}", get(kv::get).put(kv::put).delete(kv::remove))
        .route("/v1/kv/{ns}/{key}", get(kv::get).put(kv::put).delete(kv::remove))
        .route("/v1/cluster", get(cluster_admin::status))
        .route("/v1/cluster/learners", post(cluster_admin::add_learner))
        .route("/v1/cluster/voters", post(cluster_admin::promote))
        .route("/v1/cluster/members/{id}", delete(cluster_admin::remove_member))
        .route("/v1/cluster/transfer-leader", post(cluster_admin::transfer_leader))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_API_BODY))
        .with_state(state.clone());
    let internal = internal::routes(state.clone());
    let raft = crate::cluster::raft_routes::routes(state.cluster.clone());
    Router::new().merge(api).merge(internal).merge(raft).layer(middleware::from_fn_with_state(state, common_headers))
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
    if let Some(leader) = state.cluster.leader() {
        hs.insert(h::LEADER_ID, HeaderValue::from(leader.id));
        if let Ok(v) = HeaderValue::from_str(&format!("http://{}", leader.addr)) {
            hs.insert(h::LEADER_ADDR, v);
        }
    }
    resp
}
