//! A whole-body deadline: a client that sends its body slowly (a byte every few seconds) is cut
//! off once the deadline passes, however steadily it drips. Per-chunk idle timeouts would let it
//! hold a connection for hours.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// The error a body read gets once the deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {0:?}")]
pub struct BodyDeadline(pub Duration);

struct DeadlineBody {
    inner: Body,
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(BodyDeadline(self.limit)))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How long a request body may take: `limit`, but ten times that for Raft snapshots (large,
/// and they may cross a weak link); every other body is small.
fn limit_for(path: &str, limit: Duration) -> Duration {
    if path.starts_with("/raft/snapshot") { limit * 10 } else { limit }
}

/// Middleware: every request body gets its deadline, counted from when the headers arrived.
pub async fn body_deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    // Most requests (reads) have no body: no timer for them.
    if http_body::Body::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let limit = limit_for(req.uri().path(), limit);
    let (parts, body) = req.into_parts();
    let body = DeadlineBody { inner: body, limit, deadline: Box::pin(tokio::time::sleep(limit)) };
    next.run(Request::from_parts(parts, Body::new(body))).await
}

/// Whether a body read failed because of the deadline.
pub fn is_deadline(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| e.is::<BodyDeadline>())
}
