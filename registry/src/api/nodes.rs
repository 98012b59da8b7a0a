//! `/v1/nodes*`: node heartbeats (registration on first sight), listing, deletion.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use plum_types::{NodeHeartbeat, NodeHeartbeatAck};

use super::error::ApiError;
use super::extract::{JsonBody, Query};
use super::validate::{self, MAX_ID};
use super::{Shared, scope};
use crate::auth::Caller;
use crate::config::LivenessConfig;
use crate::state::{CommandResult, LeaseKind, Op};

pub async fn heartbeat(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Extension(caller): Extension<Caller>,
    JsonBody(hb): JsonBody<NodeHeartbeat>,
) -> Result<Json<NodeHeartbeatAck>, ApiError> {
    validate::name("nodeId", &hb.node_id, MAX_ID)?;
    scope::node(&caller, &hb.node_id)?;
    let ip = hb.address();
    validate::text("ip", &ip, MAX_ID)?;
    validate::labels("labels", &hb.labels)?;
    let live = &state.cluster.config.liveness;
    let ttl_ms = live.bounded_ttl_ms(hb.ttl_ms);
    let capacity = hb.capacity.unwrap_or(0);
    // Registration (or a change of address, labels, capability or TTL, or a revival) is a
    // write; an unchanged live node only renews, which is batched and never costs an fsync.
    let unchanged = state.cluster.with_registry(|r| {
        r.node_record(&hb.node_id).is_some_and(|n| {
            n.alive
                && n.ip == ip
                && n.labels == hb.labels
                && n.can_run == hb.can_run_instances
                && n.ttl_ms == ttl_ms
                && n.capacity == capacity
        })
    });
    if unchanged {
        state.renew(vec![hb.node_id], Vec::new()).await?;
    } else {
        let op = Op::UpsertNode {
            node_id: hb.node_id,
            ip,
            labels: hb.labels,
            can_run: hb.can_run_instances,
            ttl_ms,
            capacity,
        };
        state.write_upsert(&headers, &query, &uri, op).await?;
    }
    let ttl = state.tracker.ttl_of(LeaseKind::Node, ttl_ms).as_millis() as u64;
    Ok(Json(NodeHeartbeatAck {
        ttl_sec: ttl.div_ceil(1000),
        ttl_ms: ttl,
        heartbeat_interval_ms: LivenessConfig::advised_interval_ms(ttl),
    }))
}

pub async fn list(State(state): State<Shared>, query: Query) -> Result<Response, ApiError> {
    state.read(&query, |r| r.nodes()).await
}

pub async fn get_one(State(state): State<Shared>, query: Query, Path(id): Path<String>) -> Result<Response, ApiError> {
    state.read_found(&query, &format!("node `{id}`"), |r| r.node(&id)).await
}

pub async fn remove(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    validate::name("nodeId", &id, MAX_ID)?;
    let applied = state.write(&headers, &query, &uri, Op::DeleteNode { node_id: id.clone() }).await?;
    match applied.result {
        CommandResult::NodeBusy { instances } => Err(ApiError::Conflict {
            message: format!("node `{id}` still has {} instance(s) assigned", instances.len()),
            detail: Some(serde_json::json!({ "instances": instances })),
        }),
        _ => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}
