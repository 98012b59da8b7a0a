//! The receiving side of Raft RPCs: `/raft/*` on every replica. A replica that withholds its
//! vote (see `rejoin.rs`) answers vote, pre-vote and leader-transfer requests with 503.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use openraft::errors::RaftError;
use openraft::raft::{AppendEntriesRequest, VoteRequest, VoteResponse};
use openraft::storage::Snapshot;
use openraft::vote::RaftLeaderId;
use serde::de::DeserializeOwned;

use super::Cluster;
use super::codec::{self, Binary};
use super::leader_watch::Timeline;
use super::network::SnapshotTransfer;
use super::types::{Raft, TypeConfig};

/// Snapshots carry the whole registry; allow them to be large.
pub const MAX_RAFT_BODY: usize = 512 * 1024 * 1024;

pub fn routes(cluster: Arc<Cluster>) -> Router {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/pre-vote", post(pre_vote))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/transfer-leader", post(transfer_leader))
        .layer(DefaultBodyLimit::max(MAX_RAFT_BODY))
        .with_state(cluster)
}

/// Refuses election traffic while this replica's vote is withheld.
fn withheld(cluster: &Cluster) -> Option<Response> {
    if cluster.rejoin.votes_allowed() {
        return None;
    }
    tracing::debug!(id = cluster.id, "refusing an election request: vote withheld until caught up");
    Some(
        (StatusCode::SERVICE_UNAVAILABLE, "vote withheld: this replica lost its data and is still catching up")
            .into_response(),
    )
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    codec::decode(body)
        .map_err(|e| Box::new((StatusCode::BAD_REQUEST, format!("bad raft rpc body: {e}")).into_response()))
}

async fn append(State(cluster): State<Arc<Cluster>>, body: Bytes) -> Response {
    let raft: &Raft = &cluster.raft;
    match parse::<AppendEntriesRequest<TypeConfig>>(&body) {
        Ok(req) => {
            let leader = req.vote.leader_id();
            cluster.leader_watch.heard_from_leader(*leader.node_id(), leader.term());
            Binary(raft.append_entries(req).await).into_response()
        }
        Err(r) => *r,
    }
}

async fn vote(State(cluster): State<Arc<Cluster>>, body: Bytes) -> Response {
    if let Some(refused) = withheld(&cluster) {
        return refused;
    }
    let raft: &Raft = &cluster.raft;
    match parse::<VoteRequest<TypeConfig>>(&body) {
        Ok(mut req) => {
            // This replica itself found the leader's port refusing connections: the lease it
            // would wait out protects a leader that is gone (`leader_watch.rs`).
            if cluster.lease_bypass_for_vote() {
                req.leadership_transfer = true;
            }
            let reply = raft.vote(req).await;
            let t = &cluster.leader_watch.timeline;
            note_granted(&reply, t, &t.vote_granted_ms);
            Binary(reply).into_response()
        }
        Err(r) => *r,
    }
}

async fn pre_vote(State(cluster): State<Arc<Cluster>>, body: Bytes) -> Response {
    if let Some(refused) = withheld(&cluster) {
        return refused;
    }
    let raft: &Raft = &cluster.raft;
    match parse(&body) {
        Ok(req) => {
            let reply = raft.pre_vote(req).await;
            let t = &cluster.leader_watch.timeline;
            note_granted(&reply, t, &t.pre_vote_granted_ms);
            Binary(reply).into_response()
        }
        Err(r) => *r,
    }
}

/// Records when this replica granted a (pre-)vote, for the failover timeline.
fn note_granted<E>(reply: &Result<VoteResponse<TypeConfig>, E>, timeline: &Timeline, step: &AtomicU64) {
    if reply.as_ref().is_ok_and(|r| r.vote_granted) {
        timeline.note(step);
    }
}

async fn snapshot(State(cluster): State<Arc<Cluster>>, body: Bytes) -> Response {
    let raft: &Raft = &cluster.raft;
    match parse::<SnapshotTransfer>(&body) {
        Ok(req) => {
            let snapshot = Snapshot { meta: req.meta, snapshot: req.data };
            Binary(raft.install_full_snapshot(req.vote, snapshot).await.map_err(RaftError::<TypeConfig>::Fatal))
                .into_response()
        }
        Err(r) => *r,
    }
}

async fn transfer_leader(State(cluster): State<Arc<Cluster>>, body: Bytes) -> Response {
    if let Some(refused) = withheld(&cluster) {
        return refused;
    }
    let raft: &Raft = &cluster.raft;
    match parse(&body) {
        Ok(req) => {
            Binary(raft.handle_transfer_leader(req).await.map_err(RaftError::<TypeConfig>::Fatal)).into_response()
        }
        Err(r) => *r,
    }
}
