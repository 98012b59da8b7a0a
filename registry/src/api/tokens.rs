//! `/v1/tokens`: create (the token is shown once; the cluster keeps its hash), list, revoke;
//! `/v1/auth/whoami`: how the cluster sees the caller.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use plum_types::{CreatedToken, Role, TokenRequest, WhoAmI};

use super::extract::{JsonBody, Query};
use super::validate::{self, MAX_ID, MAX_SHORT};
use super::{ApiError, Shared};
use crate::auth::{Caller, token};
use crate::cluster::unix_now_ms;
use crate::state::{CommandResult, Op, TokenRecord};

/// Checks a request: a known role, and a node exactly for `agent`.
fn check(req: &TokenRequest) -> Result<(Role, String), ApiError> {
    let role: Role = req.role.parse().map_err(|e: plum_types::UnknownRole| ApiError::bad(e.to_string()))?;
    validate::text("name", &req.name, MAX_SHORT)?;
    let node = req.node_id.clone().unwrap_or_default();
    match (role, node.is_empty()) {
        (Role::Agent, true) => Err(ApiError::bad("an `agent` token needs the `nodeId` it acts for")),
        (Role::Agent, false) => validate::name("nodeId", &node, MAX_ID).map(|()| (role, node)),
        (_, false) => Err(ApiError::bad(format!("`nodeId` is only for `agent` tokens, not `{role}`"))),
        (_, true) => Ok((role, node)),
    }
}

pub async fn create(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<TokenRequest>,
) -> Result<Response, ApiError> {
    let (role, node_id) = check(&req)?;
    let issued = token::issue();
    let record = TokenRecord {
        id: issued.id.clone(),
        name: req.name,
        role,
        node_id,
        hash: issued.hash,
        created_ms: unix_now_ms(),
    };
    let info = record.info();
    state.write(&headers, &query, &uri, Op::CreateToken { token: record, bootstrap: false }).await?;
    tracing::info!(id = state.cluster.id, token_id = %info.id, role = %role, by = caller.name(), "token created");
    Ok((StatusCode::CREATED, Json(CreatedToken { token: issued.token, info })).into_response())
}

pub async fn list(State(state): State<Shared>, query: Query) -> Result<Response, ApiError> {
    state.read(&query, |r| r.tokens()).await
}

pub async fn revoke(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    validate::name("id", &id, MAX_SHORT)?;
    let applied = state.write(&headers, &query, &uri, Op::RevokeToken { id: id.clone() }).await?;
    match applied.result {
        CommandResult::NotFound => Err(ApiError::NotFound(format!("token `{id}` not found"))),
        _ => {
            tracing::info!(id = state.cluster.id, token_id = %id, by = caller.name(), "token revoked");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

pub async fn whoami(Extension(caller): Extension<Caller>) -> Json<WhoAmI> {
    Json(WhoAmI {
        role: caller.role,
        token_id: caller.token_id,
        node_id: caller.node_id,
        auth_enabled: caller.auth_enabled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(role: &str, node: Option<&str>) -> TokenRequest {
        TokenRequest { name: "t".into(), role: role.into(), node_id: node.map(str::to_string) }
    }

    #[test]
    fn a_node_is_required_for_agent_tokens_and_refused_for_the_others() {
        assert_eq!(check(&req("agent", Some("n1"))).unwrap(), (Role::Agent, "n1".to_string()));
        assert!(check(&req("agent", None)).is_err());
        assert!(check(&req("agent", Some(""))).is_err());
        assert!(check(&req("read", Some("n1"))).is_err());
        assert_eq!(check(&req("admin", None)).unwrap(), (Role::Admin, String::new()));
        assert!(check(&req("root", None)).is_err());
        assert!(check(&req("", None)).is_err());
    }
}
