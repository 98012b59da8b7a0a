//! `GET /v1/failovers`: the node failovers one replica followed in the applied log, from a node's
//! death to a replacement of each of its instances ready elsewhere. Times are Unix milliseconds
//! on the leader's clock (the timestamps of the log entries), so every replica reports the same.

use serde::{Deserialize, Serialize};

/// `GET /v1/failovers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFailovers {
    /// The replica that answered (it keeps what it applied since it started).
    pub replica_id: u64,
    /// The most recent failovers, newest first (at most a fixed number: older ones are dropped).
    pub failovers: Vec<NodeFailover>,
}

/// One node declared dead, and what became of its instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFailover {
    pub node_id: String,
    /// The node's last heartbeat the cluster recorded: where every duration starts.
    pub last_seen_ms: u64,
    /// The entry that declared it dead (silent for its TTL).
    pub declared_dead_ms: u64,
    /// Some instance's replacement is not ready yet.
    pub in_progress: bool,
    /// When the last of its instances settled (ready elsewhere, or gone); `declaredDeadMs` when it
    /// had none to move. `None` while in progress.
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// From `lastSeenMs` to the last replacement ready; `None` while in progress or when none was.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// Its instances that served (warm standbys and instances that became one are not listed).
    pub instances: Vec<MovedInstance>,
}

/// One instance of a dead node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MovedInstance {
    /// The instance that ran on the dead node.
    pub instance_id: String,
    pub deployment_id: String,
    pub from_node: String,
    /// Where its replacement runs; empty while no node can take it.
    pub to_node: String,
    /// The instance that serves in its place: itself when it was moved, the standby's id when a
    /// warm standby took over.
    pub replacement_id: String,
    /// A ready warm standby took over in the entry that declared the node dead.
    pub standby_takeover: bool,
    pub state: MovedInstanceState,
    /// When the replacement was ready (its new node reported it `Running` and healthy, or the
    /// standby took over).
    #[serde(default)]
    pub ready_ms: Option<u64>,
    /// From the node's `lastSeenMs` to `readyMs`.
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MovedInstanceState {
    /// No node can take it yet.
    WaitingForNode,
    /// Placed on a live node, not ready yet.
    Starting,
    Ready,
    /// Removed (deployment deleted, scaled down, replaced by a rolling update) or not ready
    /// within an hour: no longer followed.
    Abandoned,
}

impl MovedInstanceState {
    /// Still waiting for its replacement.
    pub fn pending(self) -> bool {
        matches!(self, MovedInstanceState::WaitingForNode | MovedInstanceState::Starting)
    }
}
