use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::lenient::null_as_default;

/// `POST /v1/nodes/heartbeat`. Some clients send `addr` instead of `ip`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeHeartbeat {
    #[serde(deserialize_with = "null_as_default")]
    pub node_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Only an agent that can run work sets this; load tools and plain clients never do, so
    /// their fake nodes are never placement targets.
    #[serde(deserialize_with = "null_as_default")]
    pub can_run_instances: bool,
    /// The TTL this node asks for (bounded by the controller). Without one, the controller's
    /// default for clients that declare none (about 15 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// How many instances its agent accepts at most (none: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
}

impl NodeHeartbeat {
    /// The address the node reported, whichever field it used.
    pub fn address(&self) -> String {
        self.ip.clone().or_else(|| self.addr.clone()).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeHeartbeatAck {
    /// The TTL in force for this node, in seconds (rounded up) and in milliseconds.
    pub ttl_sec: u64,
    pub ttl_ms: u64,
    /// How often the controller suggests heartbeating.
    pub heartbeat_interval_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeHealth {
    Healthy,
    Unhealthy,
}

/// An item of `GET /v1/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSummary {
    pub node_id: String,
    pub ip: String,
    pub labels: BTreeMap<String, String>,
    pub last_seen: u64,
    pub health: NodeHealth,
}

/// `GET /v1/nodes/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeDetail {
    pub node_id: String,
    pub ip: String,
    pub labels: BTreeMap<String, String>,
    pub last_seen: u64,
    pub health: NodeHealth,
    pub can_run_instances: bool,
}
