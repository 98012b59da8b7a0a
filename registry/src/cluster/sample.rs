//! A plain reading of openraft's metrics for this replica's Prometheus metrics
//! (`crate::metrics`): numbers and names only, so openraft's types stay in this module tree.

use openraft::ServerState;

use super::Cluster;

/// Raft as this replica sees it at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftSample {
    pub term: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: &'static str,
    /// The leader this replica knows of.
    pub leader: Option<u64>,
    pub last_log_index: u64,
    /// The commit index this replica knows.
    pub committed: u64,
    pub applied: u64,
    /// The last log index its current snapshot covers.
    pub snapshot: u64,
    pub voters: usize,
}

/// Every role a replica can be in, as [`RaftSample::role`] names it.
pub const ROLES: [&str; 5] = ["leader", "follower", "candidate", "learner", "shutdown"];

fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

impl Cluster {
    pub fn raft_sample(&self) -> RaftSample {
        self.with_metrics(|m| RaftSample {
            term: m.current_term,
            role: role(m.state),
            leader: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            committed: m.local_committed.as_ref().map_or(0, |l| l.index),
            applied: m.last_applied.as_ref().map_or(0, |l| l.index),
            snapshot: m.snapshot.as_ref().map_or(0, |l| l.index),
            voters: m.membership_config.membership().voter_ids().count(),
        })
    }
}
