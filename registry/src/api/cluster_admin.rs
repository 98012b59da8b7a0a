//! `/v1/cluster*`: cluster status on any replica, and membership changes for operators
//! (add a learner, promote it, remove a replica, hand leadership over).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use plum_types::{ClusterStatus, MemberStatus, MembershipChange};

use super::error::ApiError;
use super::{Shared, body_and_parts, on_leader};
use crate::cluster::VoteStanding;
use crate::cluster::internal::ReplicaStatus;
use crate::cluster::{LearnerAdded, MembershipError, WriteError};

const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
pub(super) const LEARNER_CATCH_UP: Duration = Duration::from_secs(10);

pub async fn status(State(state): State<Shared>) -> Json<ClusterStatus> {
    let cluster = &state.cluster;
    let members = cluster.members();
    let me = cluster.status();
    let probes = members.iter().map(|(id, addr, voter)| {
        let me = me.clone();
        async move {
            let status = if *id == cluster.id {
                Some(me)
            } else {
                cluster.call_peer::<_, ReplicaStatus>(addr, "status", &(), PROBE_TIMEOUT).await.ok()
            };
            MemberStatus {
                id: *id,
                api_addr: cluster.config.url_of(addr),
                role: status.as_ref().map(|s| s.state.clone()).unwrap_or_else(|| "unknown".into()),
                voter: *voter,
                last_log_index: status.as_ref().and_then(|s| s.last_log_index),
                applied_index: status.as_ref().and_then(|s| s.applied_index),
                reachable: status.is_some(),
                vote_withheld: status.as_ref().is_some_and(|s| s.standing != VoteStanding::Open),
                standing: status.as_ref().and_then(|s| serde_json::to_value(s.standing).ok()),
            }
        }
    });
    let members = futures::future::join_all(probes).await;
    let reschedule_paused = cluster.with_registry(|r| r.reschedule_pause().cloned());
    let failover = Some(cluster.leader_watch.timeline.snapshot());
    let nodes_expired = cluster.with_registry(|r| r.nodes_expired());
    Json(ClusterStatus {
        replica_id: cluster.id,
        leader_id: me.leader,
        term: me.term,
        members,
        reschedule_paused,
        nodes_expired,
        failover,
        leader_contact_gaps: Some(cluster.leader_watch.gaps.snapshot()),
    })
}

fn membership_json(state: &Shared) -> serde_json::Value {
    let members = state.cluster.members();
    let voters: Vec<u64> = members.iter().filter(|m| m.2).map(|m| m.0).collect();
    let learners: Vec<u64> = members.iter().filter(|m| !m.2).map(|m| m.0).collect();
    serde_json::json!({ "voters": voters, "learners": learners })
}

/// `POST /v1/cluster/reschedule`: an operator confirms that the nodes lost in a mass loss are
/// really gone; their instances are moved.
pub async fn resume_rescheduling(
    State(state): State<Shared>,
    headers: axum::http::HeaderMap,
    query: super::extract::Query,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    state.write(&headers, &query, &uri, crate::state::Op::SetReschedulePause { pause: None }).await?;
    tracing::info!(id = state.cluster.id, "an operator resumed rescheduling");
    Ok(Json(serde_json::json!({ "resumed": true })).into_response())
}

fn membership_failure(e: MembershipError) -> ApiError {
    match e {
        MembershipError::NotMember(_) => ApiError::NotFound(e.to_string()),
        MembershipError::NotVoter(_) => ApiError::bad(e.to_string()),
        MembershipError::NotLeader => ApiError::Write(WriteError::NoLeader { waited_ms: 0 }),
        MembershipError::Raft(_) => ApiError::Write(WriteError::Unavailable(e.to_string())),
    }
}

fn parse_change(bytes: &Bytes) -> Result<MembershipChange, ApiError> {
    let change: MembershipChange =
        serde_json::from_slice(bytes).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))?;
    if change.id == 0 {
        return Err(ApiError::bad("`id` must be a positive integer"));
    }
    Ok(change)
}

pub async fn add_learner(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    let (headers, path, bytes) = body_and_parts(req).await?;
    let change = parse_change(&bytes)?;
    let addr = change.api_addr.clone().ok_or_else(|| ApiError::bad("`apiAddr` is required"))?;
    let addr = addr.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/').to_string();
    if !addr.contains(':') {
        return Err(ApiError::bad("`apiAddr` must be host:port"));
    }
    if let Some(resp) = on_leader(&state, &headers, &path, reqwest::Method::POST, bytes).await {
        return Ok(resp);
    }
    let status = match state.cluster.add_learner(change.id, addr, LEARNER_CATCH_UP).await {
        Ok(LearnerAdded::CaughtUp) => StatusCode::OK,
        // Added, still catching up: the operator watches /v1/cluster before promoting.
        Ok(LearnerAdded::StillCatchingUp) => StatusCode::ACCEPTED,
        Err(e) => return Err(membership_failure(e)),
    };
    Ok((status, Json(membership_json(&state))).into_response())
}

pub async fn promote(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    let (headers, path, bytes) = body_and_parts(req).await?;
    let change = parse_change(&bytes)?;
    if let Some(resp) = on_leader(&state, &headers, &path, reqwest::Method::POST, bytes).await {
        return Ok(resp);
    }
    state.cluster.promote(change.id).await.map_err(|e| match e {
        MembershipError::NotMember(id) => ApiError::NotFound(format!("replica {id} is not a learner; add it first")),
        e => membership_failure(e),
    })?;
    Ok(Json(membership_json(&state)).into_response())
}

pub async fn remove_member(
    State(state): State<Shared>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::bad(format!("replica id `{id}` is not a positive integer")))?;
    let (headers, path, bytes) = body_and_parts(req).await?;
    if let Some(resp) = on_leader(&state, &headers, &path, reqwest::Method::DELETE, bytes).await {
        return Ok(resp);
    }
    state.cluster.remove_member(id).await.map_err(membership_failure)?;
    Ok(Json(membership_json(&state)).into_response())
}

pub async fn transfer_leader(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    let (headers, path, bytes) = body_and_parts(req).await?;
    let change = parse_change(&bytes)?;
    let is_voter = state.cluster.members().iter().any(|m| m.0 == change.id && m.2);
    if !is_voter {
        return Err(ApiError::bad(format!("replica {} is not a voter", change.id)));
    }
    if let Some(resp) = on_leader(&state, &headers, &path, reqwest::Method::POST, bytes).await {
        return Ok(resp);
    }
    state.cluster.transfer_leader(change.id).await.map_err(membership_failure)?;
    Ok(StatusCode::ACCEPTED.into_response())
}
