//! Every error the API answers: a status and a JSON body `{"error": ...}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plum_types::ErrorBody;

use crate::cluster::{LeaderInfo, WriteError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// An item of a batch call is bad; nothing of the batch was applied.
    #[error("items[{index}]: {message}")]
    BadItem { index: usize, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict { message: String, detail: Option<serde_json::Value> },
    #[error("payload too large")]
    TooLarge,
    /// No usable credentials: no token where one is needed, or an unknown or revoked one.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but the role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The body did not arrive in time (`serve::deadline`).
    #[error("{0}")]
    BodyTimeout(String),

    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The client asked to be redirected to the leader rather than forwarded.
    #[error("not the leader")]
    Redirect { leader: LeaderInfo, location: String },
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> ApiError {
        ApiError::BadRequest(msg.into())
    }

    /// Names the batch item a refusal is about (`detail.index` in the answer).
    pub fn at_item(self, index: usize) -> ApiError {
        match self {
            ApiError::BadRequest(message) => ApiError::BadItem { index, message },
            other => other,
        }
    }
}

/// `scheme://host:port` of a URL.
fn leader_base(location: &str) -> Option<String> {
    let (scheme, rest) = location.split_once("://")?;
    Some(format!("{scheme}://{}", rest.split('/').next()?))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let location = match &self {
            ApiError::Redirect { location, .. } => Some(location.clone()),
            _ => None,
        };
        let (status, mut body) = match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorBody::new(message)),
            ApiError::BadItem { index, .. } => (
                StatusCode::BAD_REQUEST,
                ErrorBody { detail: Some(serde_json::json!({ "index": index })), ..ErrorBody::new(message) },
            ),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorBody::new(message)),
            ApiError::Conflict { detail, .. } => {
                (StatusCode::CONFLICT, ErrorBody { detail, ..ErrorBody::new(message) })
            }
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, ErrorBody::new(message)),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorBody::new(message)),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorBody::new(message)),
            ApiError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, ErrorBody::new(message)),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, ErrorBody::new(message)),
            ApiError::Redirect { leader, .. } => (
                StatusCode::TEMPORARY_REDIRECT,
                ErrorBody {
                    retryable: true,
                    leader_id: Some(leader.id),
                    // The leader's URL: the redirect's location up to its path.
                    leader_addr: location.as_deref().and_then(leader_base),
                    ..ErrorBody::new(message)
                },
            ),
            ApiError::Write(WriteError::NoLeader { .. } | WriteError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorBody { retryable: true, ..ErrorBody::new(message) })
            }
            // Not "retryable": a blind retry could apply the write twice.
            ApiError::Write(WriteError::Indeterminate(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorBody { outcome_unknown: true, ..ErrorBody::new(message) })
            }
        };
        if body.error.is_empty() {
            body.error = status.canonical_reason().unwrap_or("error").to_string();
        }
        let retryable = body.retryable;
        let mut resp = (status, Json(body)).into_response();
        if retryable && status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(loc) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            resp.headers_mut().insert(header::LOCATION, loc);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(e: ApiError) -> (StatusCode, Option<HeaderValue>, ErrorBody) {
        let resp = e.into_response();
        let status = resp.status();
        let retry_after = resp.headers().get(header::RETRY_AFTER).cloned();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        (status, retry_after, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_bad_batch_item_is_named() {
        let (status, _, body) = body_of(ApiError::bad("`instanceId` is required").at_item(3)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body.error, "items[3]: `instanceId` is required");
        assert_eq!(body.detail, Some(serde_json::json!({ "index": 3 })));
    }

    #[tokio::test]
    async fn outcome_unknown_is_never_retryable() {
        let (status, retry_after, body) = body_of(ApiError::Write(WriteError::Indeterminate("lost".into()))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.outcome_unknown && !body.retryable);
        assert!(retry_after.is_none(), "no Retry-After invites a blind retry");
    }

    #[tokio::test]
    async fn writes_that_were_never_proposed_are_retryable() {
        for e in [WriteError::NoLeader { waited_ms: 5 }, WriteError::Unavailable("down".into())] {
            let (status, retry_after, body) = body_of(ApiError::Write(e)).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(body.retryable && !body.outcome_unknown);
            assert!(retry_after.is_some());
        }
    }
}
