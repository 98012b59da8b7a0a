//! `GET /v1/failovers`: the node failovers this replica followed in the applied log, newest
//! first (`metrics::failovers`). Read-only; `consistent=true` first waits for a linearizable
//! read index, as other reads do.

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use plum_types::NodeFailovers;

use super::error::ApiError;
use super::extract::Query;
use super::{Shared, with_index};

pub async fn list(State(state): State<Shared>, query: Query) -> Result<Response, ApiError> {
    let index = state.read_point(&query).await?;
    let failovers = state.metrics.log.failovers().recent();
    Ok(with_index(index, Json(NodeFailovers { replica_id: state.cluster.id, failovers })))
}
