//! `GET /v1/topology` (services and the dependency edges between them, each with whether it
//! holds now) and `GET /v1/services/{name}/dependents` (what breaks if a service stops). Reads
//! of the local view, like every read; `consistent=true` makes them linearizable.

use axum::extract::{Path, State};
use axum::response::Response;

use super::Shared;
use super::error::ApiError;
use super::extract::Query;
use super::validate::{self, MAX_ID};
use crate::cluster::unix_now_ms;
use crate::state::deps;

pub async fn topology(State(state): State<Shared>, query: Query) -> Result<Response, ApiError> {
    state.read(&query, |r| deps::topology(r, unix_now_ms())).await
}

pub async fn dependents(
    State(state): State<Shared>,
    query: Query,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    validate::name("service", &name, MAX_ID)?;
    state.read(&query, |r| deps::dependents(r, &name, unix_now_ms())).await
}
