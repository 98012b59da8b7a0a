//! Starts a replica: store, Raft, liveness duties, HTTP; stops it gracefully.

use openraft::type_config::async_runtime::watch::WatchReceiver;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use openraft::{ServerState, SnapshotPolicy};
use plum_raft_store::StoreOptions;

use crate::api::{self, AppState};
use crate::cluster::network::{NetworkFactory, peer_http_client};
use crate::cluster::types::{Raft, TypeConfig};
use crate::cluster::{Cluster, bootstrap};
use crate::config::ControllerConfig;
use crate::liveness::{RenewBatcher, Tracker, duties};
use crate::state::RegistryApp;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("store: {0}")]
    Store(#[from] plum_raft_store::StoreError),
    #[error("raft config: {0}")]
    RaftConfig(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("serve: {0}")]
    Serve(std::io::Error),
}

fn raft_config(config: &ControllerConfig) -> Result<openraft::Config, ServerError> {
    let t = &config.raft;
    let raft = openraft::Config {
        cluster_name: "plum".into(),
        heartbeat_interval: t.heartbeat_ms,
        election_timeout_min: t.election_min_ms,
        election_timeout_max: t.election_max_ms,
        // A node that cannot win (partitioned, stale) asks first instead of bumping the term.
        enable_pre_vote: Some(true),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(t.snapshot_every),
        max_in_snapshot_log_to_keep: 1000,
        install_snapshot_timeout: 10_000,
        ..Default::default()
    };
    raft.validate().map_err(|e| ServerError::RaftConfig(e.to_string()))
}

/// How long a stopping replica waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

pub async fn run(config: ControllerConfig) -> Result<(), ServerError> {
    let config = Arc::new(config);
    let store_dir = config.data_dir.join("raft");
    std::fs::create_dir_all(&store_dir)
        .map_err(|source| ServerError::DataDir { path: store_dir.display().to_string(), source })?;

    let (app, applied) = RegistryApp::new();
    let app = Arc::new(RwLock::new(app));
    let (log, sm) = plum_raft_store::open::<TypeConfig, RegistryApp>(&store_dir, app.clone(), StoreOptions::default())?;
    let http = peer_http_client();
    let raft = Raft::new(config.id, Arc::new(raft_config(&config)?), NetworkFactory::new(http.clone()), log, sm)
        .await
        .map_err(|e| ServerError::Raft(e.to_string()))?;
    let cluster = Arc::new(Cluster::new(config.id, raft, app, applied, http, config.clone()));
    exit_on_raft_fatal(cluster.clone());

    let tracker = Arc::new(Tracker::default());
    let _duties = duties::start(cluster.clone(), tracker.clone());
    let batcher = RenewBatcher::start(cluster.clone(), tracker.clone());
    let state = Arc::new(AppState::new(cluster.clone(), tracker, batcher));

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Listen { addr: config.listen.to_string(), source })?
        .tap_io(|tcp| {
            // Small Raft and API messages must not wait for Nagle.
            let _ = tcp.set_nodelay(true);
        });
    tracing::info!(id = config.id, listen = %config.listen, advertise = %config.advertise, "controller replica serving");
    tokio::spawn(bootstrap::run(cluster.clone(), config.peers.clone()));

    let shutdown_cluster = cluster.clone();
    let (stopping_tx, stopping) = tokio::sync::oneshot::channel::<()>();
    let serve = axum::serve(listener, api::router(state)).with_graceful_shutdown(async move {
        wait_for_signal().await;
        step_down(&shutdown_cluster).await;
        let _ = stopping_tx.send(());
    });
    // In-flight requests get a short grace period; long polls (KV watches) do not hold the
    // process up: a stopping replica is already out of the cluster.
    tokio::select! {
        served = serve.into_future() => served.map_err(ServerError::Serve)?,
        _ = async {
            let _ = stopping.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::info!(id = config.id, "requests still open after the grace period are dropped"),
    }
    let _ = cluster.raft.shutdown().await;
    tracing::info!(id = config.id, "controller replica stopped");
    Ok(())
}

async fn wait_for_signal() {
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

/// A leader that is asked to stop first hands leadership to its most up-to-date follower, so
/// the cluster does not wait out an election timeout.
async fn step_down(cluster: &Cluster) {
    let target = cluster.with_metrics(|m| {
        if m.state != ServerState::Leader {
            return None;
        }
        let voters: Vec<u64> = m.membership_config.membership().voter_ids().filter(|v| *v != cluster.id).collect();
        let replication = m.replication.as_ref()?;
        // The voter with the highest matched log index catches up fastest.
        voters
            .iter()
            .filter_map(|v| replication.get(v).map(|matched| (matched.as_ref().map(|l| l.index), *v)))
            .max()
            .map(|(_, v)| v)
    });
    let Some(target) = target else { return };
    tracing::info!(id = cluster.id, to = target, "handing leadership over before shutdown");
    if cluster.raft.trigger().transfer_leader(target).await.is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut metrics = cluster.raft.metrics();
    while Instant::now() < deadline {
        let leader = cluster.with_metrics(|m| m.current_leader);
        if leader != Some(cluster.id) {
            tracing::info!(id = cluster.id, new_leader = ?leader, "leadership handed over");
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), metrics.changed()).await;
    }
    tracing::warn!(id = cluster.id, "leadership transfer did not finish within 1 s");
}

/// Raft stops on a storage or internal fatal error; a replica that cannot make progress must
/// not keep answering as if it could.
fn exit_on_raft_fatal(cluster: Arc<Cluster>) {
    tokio::spawn(async move {
        let mut metrics = cluster.raft.metrics();
        loop {
            let fatal = cluster.with_metrics(|m| m.running_state.as_ref().err().cloned());
            if let Some(fatal) = fatal {
                if !matches!(fatal, openraft::errors::Fatal::Stopped) {
                    tracing::error!(id = cluster.id, error = %fatal, "raft stopped with a fatal error; exiting");
                    std::process::exit(70);
                }
                return;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    });
}
