//! Starting and stopping this replica's Raft: configuration, the rejoin guard, watching for
//! fatal errors, handing leadership over before a shutdown.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openraft::storage::RaftLogStorage;
use openraft::type_config::async_runtime::watch::WatchReceiver;
use openraft::{ServerState, SnapshotPolicy};
use tokio::sync::watch;

use super::Cluster;
use super::network::NetworkFactory;
use super::raft_thread::RaftThread;
use super::rejoin::{self, RejoinGuard};
use super::types::{LogStore, Raft, StateMachine};
use crate::config::ControllerConfig;
use crate::state::RegistryApp;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("raft config: {0}")]
    Config(String),
    #[error("reading the store: {0}")]
    Store(String),
    #[error("rejoin marker in {path}: {source}")]
    Marker { path: String, source: std::io::Error },
    #[error("raft: {0}")]
    Raft(String),
    #[error("starting raft's thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// `elect`: whether this replica may campaign from the start (not while its vote is withheld).
fn raft_config(config: &ControllerConfig, elect: bool) -> Result<openraft::Config, StartError> {
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
        enable_elect: elect,
        ..Default::default()
    };
    raft.validate().map_err(|e| StartError::Config(e.to_string()))
}

/// True when the store holds no log (nor a purged one): a new replica, or one whose data was
/// lost. A vote without a log counts as lost too: whatever acknowledged entries it had are
/// gone, and waiting to catch up costs a replica that merely crashed before its first append
/// nothing but a moment.
async fn store_has_no_log(log: &mut LogStore) -> Result<bool, StartError> {
    let state = log.get_log_state().await.map_err(|e| StartError::Store(e.to_string()))?;
    Ok(state.last_log_id.is_none() && state.last_purged_log_id.is_none())
}

impl Cluster {
    /// Starts Raft on the opened store. Serving its RPCs is the caller's job, after this.
    pub async fn start(
        config: Arc<ControllerConfig>,
        app: Arc<RwLock<RegistryApp>>,
        applied: watch::Receiver<u64>,
        mut log: LogStore,
        sm: StateMachine,
        http: reqwest::Client,
        raft_http: reqwest::Client,
    ) -> Result<Arc<Cluster>, StartError> {
        let empty = store_has_no_log(&mut log).await?;
        let data_dir = &config.data_dir;
        let rejoin = RejoinGuard::at_start(data_dir, empty)
            .map_err(|source| StartError::Marker { path: data_dir.display().to_string(), source })?;
        let raft_config = raft_config(&config, rejoin.votes_allowed())?;
        // Built on Raft's own thread (unless `--no-raft-thread`), so the tasks openraft spawns run
        // there; its RPCs use a client of their own, whose connections therefore live there too.
        let network = NetworkFactory::new(raft_http, config.clone());
        let id = config.id;
        let build = async move { Raft::new(id, Arc::new(raft_config), network, log, sm).await };
        let (raft, raft_thread) = if config.raft.own_thread {
            let raft_thread = RaftThread::start(config.id)?;
            let raft = raft_thread.run(build).await.map_err(|e| StartError::Raft(e.to_string()))?;
            (raft, Some(raft_thread))
        } else {
            (build.await, None)
        };
        let raft = raft.map_err(|e| StartError::Raft(e.to_string()))?;
        let leader_watch = super::leader_watch::LeaderWatch::default();
        let cluster =
            Arc::new(Cluster { id: config.id, raft, app, applied, http, config, rejoin, leader_watch, raft_thread });
        rejoin::spawn_watch(cluster.clone());
        super::leader_watch::start(cluster.clone());
        exit_on_raft_fatal(cluster.clone());
        Ok(cluster)
    }

    /// A leader that is asked to stop first hands leadership to its most up-to-date follower,
    /// so the cluster does not wait out an election timeout.
    pub async fn step_down(&self) {
        let target = self.with_metrics(|m| {
            if m.state != ServerState::Leader {
                return None;
            }
            let voters: Vec<u64> = m.membership_config.membership().voter_ids().filter(|v| *v != self.id).collect();
            let replication = m.replication.as_ref()?;
            // The voter with the highest matched log index catches up fastest.
            voters
                .iter()
                .filter_map(|v| replication.get(v).map(|matched| (matched.as_ref().map(|l| l.index), *v)))
                .max()
                .map(|(_, v)| v)
        });
        let Some(target) = target else { return };
        tracing::info!(id = self.id, to = target, "handing leadership over before shutdown");
        if self.raft.trigger().transfer_leader(target).await.is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut metrics = self.raft.metrics();
        while Instant::now() < deadline {
            let leader = self.with_metrics(|m| m.current_leader);
            if leader != Some(self.id) {
                tracing::info!(id = self.id, new_leader = ?leader, "leadership handed over");
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), metrics.changed()).await;
        }
        tracing::warn!(id = self.id, "leadership transfer did not finish within 1 s");
    }

    /// Peers' Raft connections, to be served on Raft's own runtime (`serve/priority.rs`), when
    /// Raft has one.
    pub fn raft_priority(&self) -> Option<crate::serve::Priority> {
        let runtime = self.raft_thread.as_ref()?.handle().clone();
        Some(crate::serve::Priority { prefix: b"POST /raft/", runtime })
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(id = self.id, error = %e, "raft did not shut down cleanly");
        }
        if let Some(t) = &self.raft_thread {
            t.stop().await;
        }
    }
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
