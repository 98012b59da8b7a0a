use serde::{Deserialize, Serialize};

/// `GET /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The replica that answered.
    pub replica_id: u64,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub members: Vec<MemberStatus>,
    /// Set while rescheduling is paused after a mass loss of nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reschedule_paused: Option<ReschedulePause>,
    /// Nodes the answering replica saw expire since it started (a benchmark compares this
    /// before and after a run).
    #[serde(default)]
    pub nodes_expired: u64,
    /// When the answering replica saw each step of its last leader change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverTimeline>,
    /// How long the answering replica went between appends from its leader, since it started:
    /// the margin left before an election while the API is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_contact_gaps: Option<ContactGaps>,
}

/// A histogram of the silences between consecutive appends (entries or heartbeats) one
/// follower received from the same leader in the same term.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactGaps {
    /// Upper bounds of the buckets, in ms; `counts` has one more entry, for longer gaps.
    pub bucket_le_ms: Vec<u64>,
    pub counts: Vec<u64>,
    /// The longest gap seen since the replica started.
    pub max_ms: u64,
}

/// Unix milliseconds (the answering replica's clock; 0: not seen) of the steps of the last
/// leader change as one replica saw them, for accounting a failover's time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailoverTimeline {
    /// The last append (entries or heartbeat) from a leader.
    pub last_leader_contact_ms: u64,
    /// It found the silent leader's port refusing connections.
    pub leader_down_confirmed_ms: u64,
    /// It started an election (as the voter chosen to campaign).
    pub campaign_started_ms: u64,
    /// It became leader (its votes were granted).
    pub became_leader_ms: u64,
    /// As the new leader, it applied the first entry of its term.
    pub first_commit_ms: u64,
    /// It learned of a new leader (`learned_leader_id`).
    pub learned_leader_ms: u64,
    pub learned_leader_id: u64,
    /// It granted a pre-vote (would vote) to a candidate.
    #[serde(default)]
    pub pre_vote_granted_ms: u64,
    /// It granted its vote to a candidate.
    #[serde(default)]
    pub vote_granted_ms: u64,
}

/// Too many nodes were lost within one TTL (the controllers' own network is the likely
/// culprit): their instances are not moved until the nodes come back or an operator confirms
/// (`POST /v1/cluster/reschedule`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReschedulePause {
    /// Unix milliseconds (leader clock).
    pub since_ms: u64,
    /// The nodes lost together.
    pub nodes: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    pub id: u64,
    pub api_addr: String,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub role: String,
    pub voter: bool,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub reachable: bool,
    /// True while the replica withholds its vote: it lost its data and has not caught up yet.
    #[serde(default)]
    pub vote_withheld: bool,
    /// Details of its standing: `{"state": "open" | "undecided" | "catchingUp", ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing: Option<serde_json::Value>,
}

/// `POST /v1/cluster/learners`, `/v1/cluster/voters`, `DELETE /v1/cluster/members/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipChange {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_addr: Option<String>,
}
