//! Messages between replicas beyond Raft itself: forwarded proposals, heartbeat batches,
//! read-index requests and status probes. MessagePack bodies under `/internal/v1/*`.

use serde::{Deserialize, Serialize};

use super::rejoin::VoteStanding;
use crate::state::{CommandResult, Op};

#[derive(Debug, Serialize, Deserialize)]
pub struct ProposeRequest {
    pub op: Op,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ProposeReply {
    Applied {
        result: CommandResult,
        index: u64,
    },
    NotLeader {
        leader: Option<u64>,
    },
    /// The leader took the write but cannot tell whether it committed.
    Indeterminate {
        error: String,
    },
    Failed {
        error: String,
    },
}

/// Heartbeats a replica collected over a few milliseconds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RenewRequest {
    pub nodes: Vec<String>,
    pub instances: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RenewReply {
    /// The leader has recorded every heartbeat of the batch.
    Recorded,
    NotLeader {
        leader: Option<u64>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ReadIndexReply {
    /// Apply up to this index locally, then read.
    Index(u64),
    NotLeader {
        leader: Option<u64>,
    },
    Failed {
        error: String,
    },
}

/// What one replica says of itself (`/internal/v1/status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub id: u64,
    pub initialized: bool,
    pub state: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub voters: Vec<u64>,
    /// The commit index as this replica last learned it (its own, when it leads).
    #[serde(default)]
    pub committed: Option<u64>,
    /// Whether it may vote (withheld after a data loss until caught up).
    #[serde(default = "VoteStanding::open")]
    pub standing: VoteStanding,
}
