//! Header size and count limits with a JSON answer. hyper enforces a hard limit of its own
//! (twice ours) while parsing, and answers a bare `431` there; below it, requests over our
//! limits get a `431` that says which limit they crossed.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use plum_types::ErrorBody;

/// The limits: header bytes (names, values and the request target), and header count.
#[derive(Debug, Clone, Copy)]
pub struct HeaderLimits {
    pub max_bytes: usize,
    pub max_count: usize,
}

pub async fn limit_headers(State(limits): State<HeaderLimits>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let bytes: usize =
        target + headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum::<usize>();
    let refusal = if headers.len() > limits.max_count {
        Some(format!("{} headers: at most {}", headers.len(), limits.max_count))
    } else if bytes > limits.max_bytes {
        Some(format!("{bytes} bytes of request line and headers: at most {}", limits.max_bytes))
    } else {
        None
    };
    match refusal {
        Some(why) => (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, Json(ErrorBody::new(why))).into_response(),
        None => next.run(req).await,
    }
}
