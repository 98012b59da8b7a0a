//! The door of `/raft/*` and `/internal/*`: only requests signed with the cluster secret get
//! through (see `cluster::peer_auth`); anything else is a `401`, logged with its source address,
//! and never reaches a handler.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use plum_types::ErrorBody;

use crate::cluster::peer_auth::{self, PeerAuth, Refusal};
use crate::cluster::raft_routes::MAX_RAFT_BODY;

/// Internal messages are small (proposals, renewal batches).
const MAX_INTERNAL_BODY: usize = 2 * 1024 * 1024;

pub async fn require_peer(State(auth): State<Arc<PeerAuth>>, req: Request, next: Next) -> Response {
    if !auth.enabled() {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let header = parts.headers.get(peer_auth::HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    let path = parts.uri.path().to_string();
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.to_string());
    let refuse = |why: Refusal| {
        tracing::warn!(peer = peer.as_deref().unwrap_or("unknown"), path = %path, reason = %why, "refused a request on a replica-only route");
        let body = ErrorBody::new(format!("replica-only route: {why}"));
        (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
    };
    // Refused before the body is read when there is not even a header.
    if header.is_none() {
        return refuse(Refusal::Missing);
    }
    let limit = if path.starts_with("/raft/") { MAX_RAFT_BODY } else { MAX_INTERNAL_BODY };
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(e) if crate::serve::deadline::is_deadline(&e) => {
            return (StatusCode::REQUEST_TIMEOUT, axum::Json(ErrorBody::new(e.to_string()))).into_response();
        }
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(ErrorBody::new("body too large"))).into_response(),
    };
    match auth.verify(parts.method.as_str(), &path, header.as_deref(), &bytes, peer_auth::unix_ms()) {
        Ok(()) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Err(why) => refuse(why),
    }
}
