//! The HTTP server loop: accepts connections and serves the router on each, with the limits a
//! hostile or broken client must not get past: a deadline for request headers (slowloris), a
//! bound on their size, a deadline for bodies (`deadline.rs`), and a cap on open connections
//! per client address (`client_limit.rs`). `axum::serve` gives hyper no timer, so none of the
//! timeouts would apply there.

mod client_limit;
pub mod deadline;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tower::ServiceExt;

pub use client_limit::ClientLimit;

/// Limits of the server loop.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// A request's headers must arrive within this. hyper counts an idle kept-alive
    /// connection's wait for its next request too, so idle connections close after it: Plum's
    /// own clients keep theirs idle for 20 s at most.
    pub header_timeout: Duration,
    /// Bytes of request line and headers at most; more is a `431`.
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections_per_client: usize,
    /// A request's body must arrive within this after its headers (`deadline.rs`).
    pub body_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_timeout: Duration::from_secs(30),
            max_header_bytes: 32 * 1024,
            max_headers: 64,
            max_connections_per_client: 1024,
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets each
/// connection finish its request in flight, and returns once all have closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let per_client = ClientLimit::new(limits.max_connections_per_client);
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small Raft and API messages must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let Some(admitted) = per_client.admit(remote.ip()) else {
            tracing::warn!(peer = %remote, limit = per_client.max(), "refused a connection: too many from this address");
            let refusal = per_client.refusal(remote.ip());
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&refusal)).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(remote));
            router.clone().oneshot(req)
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _admitted = admitted;
            if let Err(e) = conn.await {
                tracing::debug!(peer = %remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
