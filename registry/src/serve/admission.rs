//! Admission control: at most so many client requests at work on a replica at once; more are
//! answered `429` with `Retry-After` at once instead of queueing without bound behind the
//! others (where they would only time out, and take CPU from consensus meanwhile). Watches
//! and event streams wait rather than work, so they are not counted, and neither are health
//! probes nor replica-to-replica routes (this layer sits on the client API only).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use plum_types::ErrorBody;
use tokio::sync::Semaphore;

#[derive(Debug, Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
    max: usize,
}

impl Admission {
    pub fn new(max: usize) -> Admission {
        Admission { permits: Arc::new(Semaphore::new(max)), max }
    }
}

/// Requests that wait for something to happen rather than work.
fn waits(req: &Request) -> bool {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    path == "/healthz"
        || path.ends_with("/stream")
        || query.split('&').any(|kv| kv.eq_ignore_ascii_case("watch=true") || kv.eq_ignore_ascii_case("watch=1"))
}

pub async fn admit(State(admission): State<Admission>, req: Request, next: Next) -> Response {
    if waits(&req) {
        return next.run(req).await;
    }
    let Ok(_permit) = admission.permits.try_acquire() else {
        let why = format!("this replica is at its limit of {} requests at once: retry shortly", admission.max);
        let mut resp =
            (StatusCode::TOO_MANY_REQUESTS, Json(ErrorBody { retryable: true, ..ErrorBody::new(why) })).into_response();
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    };
    next.run(req).await
}
