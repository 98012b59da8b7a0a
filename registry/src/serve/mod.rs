//! The HTTP server loop: accepts connections and serves the router on each, with the limits a
//! hostile or broken client must not get past: a deadline for request headers (slowloris), a
//! bound on their size, a deadline for bodies (`deadline.rs`), and a cap on open connections
//! per client address (`client_limit.rs`). `axum::serve` gives hyper no timer, so none of the
//! timeouts would apply there.

pub mod admission;
mod client_limit;
pub mod deadline;
pub mod header_limit;
pub mod priority;
pub mod tls;

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
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use priority::FirstBytes;

pub use client_limit::ClientLimit;
pub use priority::Priority;

/// Limits of the server loop.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// A request's headers must arrive within this. hyper counts an idle kept-alive
    /// connection's wait for its next request too, so idle connections close after it: Plum's
    /// own clients keep theirs idle for 20 s at most.
    pub header_timeout: Duration,
    /// Bytes of request line and headers at most, and headers at most; more is a `431` with a
    /// JSON error (`header_limit.rs`; hyper itself stops parsing at twice these).
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections_per_client: usize,
    /// A request's body must arrive within this after its headers (`deadline.rs`).
    pub body_timeout: Duration,
    /// Client requests at work at once, at most; more get `429` (`admission.rs`).
    pub max_in_flight: usize,
}

impl ServeLimits {
    pub fn header_limits(&self) -> header_limit::HeaderLimits {
        header_limit::HeaderLimits { max_bytes: self.max_header_bytes, max_count: self.max_headers }
    }
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_timeout: Duration::from_secs(30),
            max_header_bytes: 32 * 1024,
            max_headers: 64,
            max_connections_per_client: 1024,
            body_timeout: Duration::from_secs(30),
            max_in_flight: 2048,
        }
    }
}

/// Serves `router` on `listener` (over TLS when given an acceptor) until `shutdown` resolves;
/// then stops accepting, lets each connection finish its request in flight, and returns once
/// all have closed. Plain connections that `priority` recognises are served on its runtime.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    tls: Option<TlsAcceptor>,
    priority: Option<Priority>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let per_client = ClientLimit::new(limits.max_connections_per_client);
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes * 2)
        .max_headers(limits.max_headers * 2);
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
        let Some(tls) = &tls else {
            let Some(priority) = priority.clone() else {
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(finish(conn, admitted, remote));
                continue;
            };
            let (http, watcher, header_timeout) = (http.clone(), graceful.watcher(), limits.header_timeout);
            tokio::spawn(async move {
                match priority.classify(&stream, header_timeout).await {
                    FirstBytes::Closed => {}
                    FirstBytes::Ordinary => {
                        finish(watcher.watch(http.serve_connection(TokioIo::new(stream), service)), admitted, remote)
                            .await
                    }
                    // Re-registered with the other runtime's reactor, inside that runtime.
                    FirstBytes::Priority => match stream.into_std() {
                        Ok(stream) => drop(priority.runtime.spawn(async move {
                            let Ok(stream) = tokio::net::TcpStream::from_std(stream) else { return };
                            let conn = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                            finish(conn, admitted, remote).await
                        })),
                        Err(e) => tracing::debug!(peer = %remote, error = %e, "could not move a connection"),
                    },
                }
            });
            continue;
        };
        // The handshake runs in the connection's task, bounded like headers are.
        let (tls, http, watcher) = (tls.clone(), http.clone(), graceful.watcher());
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return tracing::debug!(peer = %remote, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(peer = %remote, "TLS handshake timed out"),
            };
            finish(watcher.watch(http.serve_connection(TokioIo::new(stream), service)), admitted, remote).await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Runs one connection to its end, holding its place among its client's connections.
async fn finish<C, E>(conn: C, admitted: client_limit::Admitted, remote: SocketAddr)
where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let _admitted = admitted;
    if let Err(e) = conn.await {
        tracing::debug!(peer = %remote, error = %e, "connection ended with an error");
    }
}
