//! The HTTP control API of a [`Proxy`] (loopback only; no authentication):
//!
//! - `GET /links`: every link with its faults and connection counts;
//! - `GET /links/{name}`: one link;
//! - `PUT /links/{name}` `{"listen", "upstream", "faults"?}`: create (201);
//! - `DELETE /links/{name}`: remove, closing its connections (204);
//! - `PUT /links/{name}/faults` (a [`Faults`] body; missing fields are no fault): replace;
//! - `DELETE /links/{name}/faults`: heal one link; `POST /heal`: heal all.
//!
//! Every error answers 4xx with `{"error": "..."}`, bad JSON included.

use std::future::Future;
use std::io;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

use super::ProxyError;
use super::faults::Faults;
use super::table::{LinkInfo, LinkSpec, Proxy};

/// An error answer: a status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<ProxyError> for ApiError {
    fn from(e: ProxyError) -> Self {
        let status = match &e {
            ProxyError::NotFound(_) => StatusCode::NOT_FOUND,
            ProxyError::Exists(_) => StatusCode::CONFLICT,
            ProxyError::Bind { error, .. } if error.kind() == io::ErrorKind::AddrInUse => StatusCode::CONFLICT,
            ProxyError::BadName(_) | ProxyError::Faults(_) | ProxyError::Bind { .. } => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    /// axum answers bad JSON in plain text; ours stay JSON, with axum's 4xx status.
    fn from(rejection: JsonRejection) -> Self {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The `{name}` path segment, whose rejection (e.g. bad percent-encoding) is JSON too.
struct LinkName(String);

impl<S: Send + Sync> FromRequestParts<S> for LinkName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(name) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        Ok(LinkName(name))
    }
}

/// The API's routes over `proxy`.
pub fn router(proxy: Proxy) -> Router {
    Router::new()
        .route("/links", get(list_links))
        .route("/links/{name}", get(get_link).put(create_link).delete(remove_link))
        .route("/links/{name}/faults", put(set_faults).delete(heal_link))
        .route("/heal", post(heal_all))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint")
        })
        .with_state(proxy)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve<F>(listener: TcpListener, proxy: Proxy, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, router(proxy)).with_graceful_shutdown(shutdown).await
}

async fn list_links(State(proxy): State<Proxy>) -> Json<Vec<LinkInfo>> {
    Json(proxy.links())
}

async fn get_link(State(proxy): State<Proxy>, LinkName(name): LinkName) -> ApiResult<Json<LinkInfo>> {
    Ok(Json(proxy.link(&name)?))
}

async fn create_link(
    State(proxy): State<Proxy>,
    LinkName(name): LinkName,
    body: Result<Json<LinkSpec>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<LinkInfo>)> {
    let Json(spec) = body?;
    Ok((StatusCode::CREATED, Json(proxy.add_link(&name, spec).await?)))
}

async fn remove_link(State(proxy): State<Proxy>, LinkName(name): LinkName) -> ApiResult<StatusCode> {
    proxy.remove_link(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_faults(
    State(proxy): State<Proxy>,
    LinkName(name): LinkName,
    body: Result<Json<Faults>, JsonRejection>,
) -> ApiResult<Json<LinkInfo>> {
    let Json(faults) = body?;
    Ok(Json(proxy.set_faults(&name, faults)?))
}

async fn heal_link(State(proxy): State<Proxy>, LinkName(name): LinkName) -> ApiResult<Json<LinkInfo>> {
    Ok(Json(proxy.heal(&name)?))
}

async fn heal_all(State(proxy): State<Proxy>) -> Json<Vec<LinkInfo>> {
    Json(proxy.heal_all())
}
