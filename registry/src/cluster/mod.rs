//! The replica's place in the Raft cluster: the openraft handle and everything built on it:
//! proposing (locally or forwarded one hop to the leader), linearizable reads, leader lookup.
//! openraft's types do not leave this module tree.

pub mod bootstrap;
pub mod coalesce;
pub mod codec;
pub mod contact_gaps;
pub mod internal;
pub mod leader_watch;
mod lifecycle;
mod membership;
pub mod network;
pub mod peer_auth;
pub mod raft_routes;
mod raft_thread;
pub mod rejoin;
pub mod sample;
pub mod types;

use openraft::type_config::async_runtime::watch::WatchReceiver;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::ReadPolicy;
use openraft::ServerState;
use openraft::errors::{ClientWriteError, RaftError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::Instrument;
use tracing::field::Empty;

use crate::config::ControllerConfig;
use crate::state::{Command, CommandResult, Op, Registry, RegistryApp};
use internal::{ProposeReply, ProposeRequest, ReadIndexReply, ReplicaStatus};
use types::{Raft, RaftMetrics};

/// The target of the `propose`, `forward` and `apply` spans (`PLUM_LOG=plum::raft=debug`).
pub const SPAN_TARGET: &str = "plum::raft";

/// Unix milliseconds from this replica's clock. Only the leader's value ever enters the log.
pub fn unix_now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    pub id: u64,
    /// host:port of its API (and Raft) listener.
    pub addr: String,
}

/// A write that made it into the state machine.
#[derive(Debug, Clone)]
pub struct Applied {
    pub result: CommandResult,
    pub index: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// No leader appeared within the wait; retrying later may work.
    #[error("no leader elected within {waited_ms} ms")]
    NoLeader { waited_ms: u64 },
    /// The leader could not be reached or lost leadership meanwhile; retrying may work.
    #[error("leader unavailable: {0}")]
    Unavailable(String),
    /// The write may or may not have committed (the leader died or lost leadership after
    /// taking it). Not retried automatically: a blind retry could apply it twice. Retrying with
    /// the same `requestId` (KV) or an idempotent request is safe.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
}

pub use codec::PeerError;
pub use lifecycle::StartError;
pub use membership::{LearnerAdded, MembershipError};
pub use rejoin::VoteStanding;

/// Why one attempt failed: try again (maybe elsewhere) or give up.
enum Attempt {
    Retry(String),
    Fail(WriteError),
}

pub struct Cluster {
    pub id: u64,
    /// openraft's handle: used only inside `cluster/`.
    raft: Raft,
    app: Arc<RwLock<RegistryApp>>,
    applied: watch::Receiver<u64>,
    pub http: reqwest::Client,
    pub config: Arc<ControllerConfig>,
    /// Whether this replica may vote (withheld after a data loss until caught up).
    rejoin: rejoin::RejoinGuard,
    /// Fast failover when the leader's process is gone, and the failover timeline.
    pub leader_watch: leader_watch::LeaderWatch,
    /// Where Raft's core and replication run, apart from the API's runtime (none with
    /// `--no-raft-thread`).
    raft_thread: Option<raft_thread::RaftThread>,
}

impl Cluster {
    /// The in-memory registry view. Hold the guard briefly and never across an `.await`.
    pub fn view(&self) -> RwLockReadGuard<'_, RegistryApp> {
        self.app.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn with_registry<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        f(&self.view().registry)
    }

    /// Changes whenever the view applies an entry.
    pub fn applied_watch(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Reads Raft's metrics. The metrics live behind a read-write lock that openraft's core
    /// writes often: `f` must not read them again (a nested read waits behind a queued writer,
    /// which waits for the outer read: a deadlock), and must not block.
    pub fn with_metrics<T>(&self, f: impl FnOnce(&RaftMetrics) -> T) -> T {
        let rx = self.raft.metrics();
        let m = rx.borrow_watched();
        f(&m)
    }

    pub fn leader(&self) -> Option<LeaderInfo> {
        self.with_metrics(|m| {
            let id = m.current_leader?;
            let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
            Some(LeaderInfo { id, addr })
        })
    }

    pub fn is_leader(&self) -> bool {
        self.with_metrics(|m| m.state == ServerState::Leader)
    }

    /// The term this replica leads in, if it leads.
    pub fn leading_term(&self) -> Option<u64> {
        self.with_metrics(|m| (m.state == ServerState::Leader).then_some(m.current_term))
    }

    /// The term this replica leads in, while a quorum acknowledged it recently (within the
    /// shortest election timeout): a leader cut off from the others stops vouching for
    /// heartbeats, so agents move to a replica that can reach the real leader. A leader that is
    /// the only voter is its own quorum.
    pub fn lease_term(&self) -> Option<u64> {
        let lease = Duration::from_millis(self.config.raft.election_min_ms);
        // An absolute time, so a leader whose metrics stopped changing still ages out.
        self.with_metrics(|m| {
            let membership = m.membership_config.membership();
            let alone = membership.voter_ids().all(|v| v == self.id);
            let acked = m.last_quorum_acked.as_ref().is_some_and(|at| openraft::Instant::elapsed(&**at) < lease);
            (m.state == ServerState::Leader && (acked || alone)).then_some(m.current_term)
        })
    }

    /// Resolves when this replica's role, term or leader may have changed (not on every log
    /// append, unlike the full metrics).
    pub fn leadership_watch(&self) -> LeadershipWatch {
        LeadershipWatch { rx: self.raft.server_metrics() }
    }

    pub fn vote_standing(&self) -> VoteStanding {
        self.rejoin.standing()
    }

    /// Members as (id, address, voter?).
    pub fn members(&self) -> Vec<(u64, String, bool)> {
        self.with_metrics(|m| {
            let membership = m.membership_config.membership();
            let voters: Vec<u64> = membership.voter_ids().collect();
            membership.nodes().map(|(id, node)| (*id, node.addr.clone(), voters.contains(id))).collect()
        })
    }

    pub fn status(&self) -> ReplicaStatus {
        self.with_metrics(|m| self.status_from(m))
    }

    fn status_from(&self, m: &RaftMetrics) -> ReplicaStatus {
        let membership = m.membership_config.membership();
        ReplicaStatus {
            id: self.id,
            initialized: m.last_log_index.is_some() || m.vote.leader_id.term > 0,
            state: format!("{:?}", m.state).to_lowercase(),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.as_ref().map(|l| l.index),
            // During a joint change a removed voter's node entry goes first: it is on its way out.
            voters: membership.voter_ids().filter(|v| membership.get_node(v).is_some()).collect(),
            committed: m.cluster_committed.as_ref().map(|l| l.index),
            standing: self.rejoin.standing(),
        }
    }

    /// Proposes `op` through the leader, waiting (bounded) for one to exist.
    pub async fn write(&self, op: Op) -> Result<Applied, WriteError> {
        let started = Instant::now();
        let deadline = started + self.config.no_leader_wait;
        let mut last_problem: Option<String>;
        loop {
            let attempt = match self.leader() {
                Some(l) if l.id == self.id => self.propose_local(op.clone()).await,
                Some(l) => self.forward(&l, &op, deadline).await,
                None => Err(Attempt::Retry("no leader".into())),
            };
            match attempt {
                Ok(applied) => return Ok(applied),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry(why)) => last_problem = Some(why),
            }
            if Instant::now() >= deadline {
                let waited_ms = started.elapsed().as_millis() as u64;
                return Err(match (self.leader(), last_problem) {
                    (None, _) => WriteError::NoLeader { waited_ms },
                    (Some(_), Some(why)) => WriteError::Unavailable(why),
                    (Some(_), None) => WriteError::NoLeader { waited_ms },
                });
            }
            self.wait_for_leader_change(deadline).await;
        }
    }

    /// Sleeps until Raft's view of the cluster changes or a short while passes.
    async fn wait_for_leader_change(&self, deadline: Instant) {
        let mut metrics = self.raft.metrics();
        let pause = Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now()));
        let _ = tokio::time::timeout(pause, metrics.changed()).await;
    }

    /// Proposes `op` only if this replica is the leader: for leader-only duties (liveness),
    /// whose decisions must not be carried out by anyone else.
    pub async fn propose_if_leader(&self, op: Op) -> Result<Applied, WriteError> {
        match self.propose_local(op).await {
            Ok(a) => Ok(a),
            Err(Attempt::Retry(why)) => Err(WriteError::Unavailable(why)),
            Err(Attempt::Fail(e)) => Err(e),
        }
    }

    /// Proposes on this replica, which believes it is the leader. Only the leader stamps time.
    /// Bounded: a leader cut off from its followers never commits, and openraft would wait.
    async fn propose_local(&self, op: Op) -> Result<Applied, Attempt> {
        // Term and index are known once the entry is committed (recording on a disabled span
        // does nothing).
        let span = tracing::debug_span!(target: SPAN_TARGET, "propose", term = Empty, index = Empty);
        let command = Command { now_ms: unix_now_ms(), op };
        let limit = self.config.no_leader_wait;
        let write = tokio::time::timeout(limit, self.raft.client_write(command)).instrument(span.clone());
        let Ok(written) = write.await else {
            return Err(Attempt::Fail(WriteError::Indeterminate(format!(
                "not committed within {} ms: this leader may be cut off from its followers",
                limit.as_millis()
            ))));
        };
        match written {
            Ok(resp) => {
                span.record("term", resp.log_id.leader_id.term).record("index", resp.log_id.index);
                span.in_scope(|| tracing::debug!(target: SPAN_TARGET, "committed"));
                Ok(Applied { result: resp.data, index: resp.log_id.index })
            }
            // Refused before it was appended: nothing happened, another leader may take it.
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Attempt::Retry(format!("not leader (leader: {:?})", f.leader_id)))
            }
            // Appended, then discarded by a new leader's log, or committed: nobody knows.
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(f))) => {
                Err(Attempt::Fail(WriteError::Indeterminate(format!(
                    "leadership moved to {:?} while the write was in flight",
                    f.leader_id
                ))))
            }
            // Raft stopped (storage error, shutdown) or anything else: the entry may have been
            // appended, and even replicated, before that.
            Err(e) => Err(Attempt::Fail(WriteError::Indeterminate(e.to_string()))),
        }
    }

    async fn forward(&self, leader: &LeaderInfo, op: &Op, deadline: Instant) -> Result<Applied, Attempt> {
        let request = ProposeRequest { op: op.clone() };
        let timeout = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(200));
        let span = tracing::debug_span!(target: SPAN_TARGET, "forward", leader = leader.id, index = Empty);
        let call = self.call_peer::<_, ProposeReply>(&leader.addr, "propose", &request, timeout);
        match call.instrument(span.clone()).await {
            Ok(ProposeReply::Applied { result, index }) => {
                span.record("index", index);
                Ok(Applied { result, index })
            }
            Ok(ProposeReply::NotLeader { .. }) => {
                Err(Attempt::Retry(format!("replica {} is no longer leader", leader.id)))
            }
            Ok(ProposeReply::Failed { error }) => Err(Attempt::Fail(WriteError::Unavailable(error))),
            Ok(ProposeReply::Indeterminate { error }) => Err(Attempt::Fail(WriteError::Indeterminate(error))),
            // Never reached the leader: safe to try again once a leader is known.
            Err(PeerError::Connect(e)) => Err(Attempt::Retry(e)),
            // It may have reached the leader and committed before the connection broke.
            Err(PeerError::Other(e)) => Err(Attempt::Fail(WriteError::Indeterminate(e))),
        }
    }

    /// Answers a proposal forwarded by another replica (never forwards it further).
    pub async fn handle_forwarded(&self, op: Op) -> ProposeReply {
        // It came over the network: check it as the API would have.
        if let Err(error) = op.check() {
            return ProposeReply::Failed { error: format!("malformed proposal: {error}") };
        }
        if !self.is_leader() {
            return ProposeReply::NotLeader { leader: self.leader().map(|l| l.id) };
        }
        match self.propose_local(op).await {
            Ok(a) => ProposeReply::Applied { result: a.result, index: a.index },
            Err(Attempt::Retry(_)) => ProposeReply::NotLeader { leader: self.leader().map(|l| l.id) },
            Err(Attempt::Fail(WriteError::Indeterminate(error))) => ProposeReply::Indeterminate { error },
            Err(Attempt::Fail(e)) => ProposeReply::Failed { error: e.to_string() },
        }
    }

    /// Confirms leadership with a quorum and returns the index reads must wait for.
    pub async fn leader_read_index(&self) -> ReadIndexReply {
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(read_log_id) => ReadIndexReply::Index(read_log_id.index()),
            Err(e) => match e.forward_to_leader() {
                Some(f) => ReadIndexReply::NotLeader { leader: f.leader_id },
                None => ReadIndexReply::Failed { error: e.to_string() },
            },
        }
    }

    /// Waits until this replica's view is at least as new as the leader's commit at the time
    /// of the call: a read after this is linearizable.
    pub async fn read_barrier(&self) -> Result<u64, WriteError> {
        let deadline = Instant::now() + self.config.no_leader_wait;
        let index = loop {
            let reply = match self.leader() {
                Some(l) if l.id == self.id => self.leader_read_index().await,
                Some(l) => {
                    let timeout = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(200));
                    self.call_peer::<_, ReadIndexReply>(&l.addr, "read-index", &(), timeout)
                        .await
                        .unwrap_or_else(|e| ReadIndexReply::Failed { error: e.to_string() })
                }
                None => ReadIndexReply::NotLeader { leader: None },
            };
            match reply {
                ReadIndexReply::Index(i) => break i,
                other if Instant::now() >= deadline => {
                    return Err(WriteError::Unavailable(format!("linearizable read failed: {other:?}")));
                }
                _ => self.wait_for_leader_change(deadline).await,
            }
        };
        let mut applied = self.applied.clone();
        let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(500));
        match tokio::time::timeout(remaining, applied.wait_for(|a| *a >= index)).await {
            Ok(Ok(_)) => Ok(index),
            _ => Err(WriteError::Unavailable(format!("replica did not reach index {index} in time"))),
        }
    }

    /// POSTs a MessagePack body to another replica's `/internal/v1/{route}`.
    pub async fn call_peer<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        route: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let url = format!("{}/internal/v1/{route}", self.config.url_of(self.config.dial(addr)));
        call_replica(&self.http, &self.config.peer_auth, self.id, &url, body, timeout).await
    }
}

/// Wakes on changes of role, term, leader or membership.
pub struct LeadershipWatch {
    rx: openraft::type_config::alias::WatchReceiverOf<
        types::TypeConfig,
        openraft::metrics::RaftServerMetrics<types::TypeConfig>,
    >,
}

/// Who leads, from one reading of Raft's server metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    /// The term of this replica's vote: the current term.
    pub term: u64,
    pub leader: Option<u64>,
    /// The term this replica leads in, if it leads.
    pub leading_term: Option<u64>,
}

impl LeadershipWatch {
    /// The latest leadership, marked seen: `changed` then waits for a newer one. Whoever waits
    /// on this watch must read the role here, not from `Cluster`: Raft publishes the full
    /// metrics after these, so right after a change they may still show the old role, and a
    /// loop that read them would sleep through its promotion (with Raft on its own thread this
    /// left a new leader without a liveness book for good).
    pub fn current(&mut self) -> Leadership {
        let m = self.rx.borrow_and_update();
        let leading_term = (m.state == ServerState::Leader).then_some(m.vote.leader_id.term);
        Leadership { term: m.vote.leader_id.term, leader: m.current_leader, leading_term }
    }

    /// Resolves at the next change after the last one seen; pends forever once Raft has
    /// stopped.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// POSTs a MessagePack body to another replica's internal route at `url`.
pub async fn call_replica<Req: Serialize, Resp: DeserializeOwned>(
    http: &reqwest::Client,
    auth: &peer_auth::PeerAuth,
    from: u64,
    url: &str,
    body: &Req,
    timeout: Duration,
) -> Result<Resp, PeerError> {
    codec::post(http, auth, url, body, timeout, Some(from)).await
}
