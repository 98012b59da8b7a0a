//! `/internal/v1/*`: replica-to-replica calls with MessagePack bodies.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::Shared;
use crate::cluster::codec::{self, Binary};
use crate::cluster::internal::{ProposeRequest, RenewReply, RenewRequest};
use crate::cluster::leader_watch::LeaderDownRequest;
use crate::liveness::batcher::record_if_leased;

pub fn routes(state: Shared) -> Router {
    Router::new()
        .route("/internal/v1/propose", post(propose))
        .route("/internal/v1/renew", post(renew))
        .route("/internal/v1/read-index", post(read_index))
        .route("/internal/v1/status", post(status))
        .route("/internal/v1/leader-down", post(leader_down))
        .with_state(state)
}

fn bad_body(e: codec::CodecError) -> Response {
    (StatusCode::BAD_REQUEST, format!("bad internal body: {e}")).into_response()
}

async fn propose(State(state): State<Shared>, body: Bytes) -> Response {
    match codec::decode::<ProposeRequest>(&body) {
        Ok(req) => Binary(state.cluster.handle_forwarded(req.op).await).into_response(),
        Err(e) => bad_body(e),
    }
}

async fn renew(State(state): State<Shared>, body: Bytes) -> Response {
    match codec::decode::<RenewRequest>(&body) {
        Ok(req) => {
            let reply = if record_if_leased(&state.cluster, &state.tracker, &req.nodes, &req.instances) {
                RenewReply::Recorded
            } else {
                RenewReply::NotLeader { leader: state.cluster.leader().map(|l| l.id) }
            };
            Binary(reply).into_response()
        }
        Err(e) => bad_body(e),
    }
}

async fn read_index(State(state): State<Shared>) -> Response {
    Binary(state.cluster.leader_read_index().await).into_response()
}

async fn leader_down(State(state): State<Shared>, body: Bytes) -> Response {
    match codec::decode::<LeaderDownRequest>(&body) {
        Ok(req) => Binary(state.cluster.handle_leader_down(req).await).into_response(),
        Err(e) => bad_body(e),
    }
}

async fn status(State(state): State<Shared>) -> Response {
    Binary(state.cluster.status()).into_response()
}
