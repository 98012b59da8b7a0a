//! The door of the client API: who is calling (a token, or the configured anonymous role), and
//! whether that role may call this route (`auth::policy`). Refusals are `401` (no usable
//! token) or `403` (a role that may not), as JSON; handlers that act for a node check the
//! node themselves (`Caller::may_act_for`, `scope.rs`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, Shared};
use crate::auth::policy::{self, Permission};
use crate::auth::{Caller, token};

/// What the `Authorization` header holds.
enum Credentials<'a> {
    None,
    Bearer(&'a str),
    Unusable,
}

fn credentials(headers: &HeaderMap) -> Credentials<'_> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Credentials::None };
    let Ok(value) = value.to_str() else { return Credentials::Unusable };
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Credentials::Bearer(token.trim()),
        _ => Credentials::Unusable,
    }
}

/// The caller a token names, if it is one the cluster issued and has not revoked. The hash is
/// computed before taking the registry lock; the record is compared where it lies.
fn lookup(state: &Shared, id: &str, secret: &str) -> Option<Caller> {
    let hash = token::hash(secret);
    state.cluster.with_registry(|r| {
        let record = r.token(id).filter(|t| token::hash_matches(&hash, &t.hash))?;
        Some(Caller {
            role: record.role,
            token_id: Some(record.id.clone()),
            node_id: Some(record.node_id.clone()).filter(|n| !n.is_empty()),
            auth_enabled: true,
        })
    })
}

async fn authenticate(state: &Shared, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
    let anonymous = state.cluster.config.client_auth.anonymous;
    let token = match credentials(headers) {
        Credentials::None => {
            return Ok(anonymous.map(|role| Caller { role, token_id: None, node_id: None, auth_enabled: true }));
        }
        Credentials::Unusable => return Err(ApiError::Unauthorized("`Authorization` must be `Bearer <token>`".into())),
        Credentials::Bearer(token) => token,
    };
    let (id, secret) = token::parse(token).ok_or_else(|| ApiError::Unauthorized("malformed token".into()))?;
    if let Some(caller) = lookup(state, id, secret) {
        return Ok(Some(caller));
    }
    // A token made a moment ago may not have reached this replica yet: look again once the
    // replica has caught up with the leader (only for an id it does not know).
    if state.cluster.with_registry(|r| r.token(id).is_none()) {
        state.cluster.read_barrier().await?;
        if let Some(caller) = lookup(state, id, secret) {
            return Ok(Some(caller));
        }
    }
    Err(ApiError::Unauthorized("unknown or revoked token".into()))
}

pub async fn authorize(State(state): State<Shared>, mut req: Request, next: Next) -> Response {
    if !state.cluster.config.client_auth.enabled {
        req.extensions_mut().insert(Caller::unchecked());
        return next.run(req).await;
    }
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let need = policy::required(req.method(), &route);
    if need == Permission::Public {
        return next.run(req).await;
    }
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let caller = match authenticate(&state, req.headers()).await {
        Ok(Some(caller)) => caller,
        Ok(None) => {
            tracing::debug!(peer = ?peer, route = %route, "refused: no token and no anonymous role");
            let why = "this cluster needs a token: `Authorization: Bearer <token>` (plumctl --token-file)";
            return ApiError::Unauthorized(why.into()).into_response();
        }
        Err(e) => {
            tracing::warn!(peer = ?peer, route = %route, error = %e, "refused a client request");
            return e.into_response();
        }
    };
    if !policy::grants(Some(caller.role), need) {
        tracing::debug!(peer = ?peer, route = %route, caller = caller.name(), role = %caller.role, "forbidden");
        let why = format!("role `{}` may not {} {route}", caller.role, req.method());
        return ApiError::Forbidden(why).into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}
