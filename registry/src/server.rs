//! Starts a replica: store, Raft, liveness duties, HTTP; stops it gracefully.
//!
//! [`run`] takes its listener and a shutdown future, so tests can run a replica in-process
//! on port 0 and stop it by resolving the future; `main` binds the configured address and
//! passes SIGTERM/SIGINT.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use plum_raft_store::StoreOptions;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::cluster::network::peer_http_client;
use crate::cluster::types::TypeConfig;
use crate::cluster::{Cluster, StartError, bootstrap};
use crate::config::ControllerConfig;
use crate::liveness::{RenewBatcher, Tracker, duties};
use crate::metrics::Metrics;
use crate::state::RegistryApp;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("store: {0}")]
    Store(#[from] plum_raft_store::StoreError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("serve: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    AdminToken(#[from] crate::auth::bootstrap::BootstrapError),
    #[error("TLS: {0}")]
    Tls(#[from] plum_sdk::tls::TlsError),
}

/// How often the cluster secret file is checked for a change.
const SECRET_RELOAD_EVERY: Duration = Duration::from_secs(2);

/// How long a stopping replica waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Binds the configured listen address.
pub async fn bind(config: &ControllerConfig) -> Result<TcpListener, ServerError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Listen { addr: config.listen.to_string(), source })
}

/// Runs a replica on `listener` until `shutdown` resolves.
pub async fn run(
    config: ControllerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let config = Arc::new(config);
    let store_dir = config.data_dir.join("raft");
    std::fs::create_dir_all(&store_dir)
        .map_err(|source| ServerError::DataDir { path: store_dir.display().to_string(), source })?;

    // Before anything starts: a replica that cannot read or write its admin token file stops here.
    let admin_token = match &config.client_auth.admin_token_file {
        Some(path) => Some(crate::auth::bootstrap::load_or_create(path)?),
        None => None,
    };
    // TLS files are read before anything starts, so a bad one stops the replica here.
    let (acceptor, peer_tls) = match &config.tls {
        Some(files) => (
            Some(crate::serve::tls::acceptor(&files.cert, &files.key)?),
            Some(plum_sdk::tls::client_config(&files.ca)?),
        ),
        None => (None, None),
    };
    // Raft's RPCs get a client (and connection pool) of their own: see `cluster/raft_thread.rs`.
    let (peer_http, raft_http) = (peer_http_client(peer_tls.clone()), peer_http_client(peer_tls));
    let tracker = Arc::new(Tracker::new(config.liveness.default_ttls()));
    let mut metrics = Metrics::new();
    let (mut app, applied) = RegistryApp::new(Some(tracker.clone()));
    app.observe_commands(metrics.log.clone());
    let app = Arc::new(RwLock::new(app));
    let options = StoreOptions { observer: metrics.raft.store_observer(), ..StoreOptions::default() };
    let (log, sm) = plum_raft_store::open::<TypeConfig, RegistryApp>(&store_dir, app.clone(), options)?;
    let cluster = Cluster::start(config.clone(), app, applied, log, sm, peer_http, raft_http).await?;
    metrics.read_cluster(cluster.clone());
    let metrics = Arc::new(metrics);
    let _leader_changes = metrics.raft.follow_leadership(&cluster);

    let _duties = duties::start(cluster.clone(), tracker.clone());
    let batcher = RenewBatcher::start(cluster.clone(), tracker.clone(), metrics.heartbeats.clone());
    let state = Arc::new(AppState::new(cluster.clone(), tracker, batcher, metrics));

    tracing::info!(id = config.id, listen = %config.listen, advertise = %config.advertise, scheme = config.scheme(), "controller replica serving");
    tokio::spawn(bootstrap::run(cluster.clone(), config.peers.clone()));
    if let Some((token_id, hash)) = admin_token {
        tokio::spawn(crate::auth::bootstrap::record(cluster.clone(), token_id, hash));
    }
    if !config.client_auth.enabled {
        tracing::warn!(
            id = config.id,
            "client authentication is OFF (--insecure-no-client-auth): anyone may do anything"
        );
    }

    let shutdown_cluster = cluster.clone();
    let (stopping_tx, stopping) = tokio::sync::oneshot::channel::<()>();
    // Peers may rotate the cluster secret: pick up a changed file.
    let auth = config.peer_auth.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SECRET_RELOAD_EVERY).await;
            auth.reload_if_changed();
        }
    });
    let app = api::router(state);
    let priority = if config.raft.connection_priority { cluster.raft_priority() } else { None };
    let serve = crate::serve::serve(listener, app, config.serve.clone(), acceptor, priority, async move {
        shutdown.await;
        shutdown_cluster.step_down().await;
        let _ = stopping_tx.send(());
    });
    // In-flight requests get a short grace period; long polls (KV watches) do not hold the
    // process up: a stopping replica is already out of the cluster.
    tokio::select! {
        served = serve => served.map_err(ServerError::Serve)?,
        _ = async {
            let _ = stopping.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::info!(id = config.id, "requests still open after the grace period are dropped"),
    }
    cluster.shutdown().await;
    tracing::info!(id = config.id, "controller replica stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
