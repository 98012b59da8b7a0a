//! Durable records, one RocksDB row each: MessagePack maps with field names (`rows.rs`), so
//! reordering fields cannot swap data; fields added later carry `#[serde(default)]` so rows
//! written before them still decode.

use std::collections::BTreeMap;

use plum_types::KvType;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: String,
    pub ip: String,
    pub labels: BTreeMap<String, String>,
    /// Declared by an agent that can run instances; only such nodes are placement targets.
    pub can_run: bool,
    /// False once the leader expired it; a later heartbeat revives it.
    pub alive: bool,
    /// Unix milliseconds (leader clock) of the last heartbeat the cluster recorded.
    pub last_seen_ms: u64,
    pub registered_ms: u64,
    /// Declared heartbeat TTL (bounded by the controller); 0: the controller's default.
    #[serde(default)]
    pub ttl_ms: u64,
    /// Instances its agent accepts at most; 0: no limit.
    #[serde(default)]
    pub capacity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub service_name: String,
    pub port: u16,
    pub protocol: String,
    pub version: String,
    pub labels: BTreeMap<String, String>,
    pub healthy: bool,
    /// The endpoint's own address; empty (rows written before it existed): the instance's.
    /// New fields go last: rows written positionally before names were stored decode by order.
    #[serde(default)]
    pub ip: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub instance_id: String,
    /// Empty when the instance was registered without a node.
    pub node_id: String,
    pub ip: String,
    pub endpoints: Vec<EndpointRecord>,
    pub alive: bool,
    pub last_seen_ms: u64,
    pub registered_ms: u64,
    /// Declared heartbeat TTL (bounded by the controller); 0: the controller's default.
    #[serde(default)]
    pub ttl_ms: u64,
    /// Services it declared it depends on (`upstreams` at registration).
    #[serde(default)]
    pub upstreams: Vec<String>,
}

impl EndpointRecord {
    /// Registrations merge endpoints that share service, address, port and protocol. `other`
    /// without an address of its own has `other_instance_ip`.
    pub fn same_place(&self, other: &EndpointRecord, other_instance_ip: &str) -> bool {
        let other_ip = if other.ip.is_empty() { other_instance_ip } else { other.ip.as_str() };
        self.service_name == other.service_name
            && self.ip == other_ip
            && self.port == other.port
            && self.protocol == other.protocol
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvRecord {
    pub value: String,
    pub kind: KvType,
    pub updated_ms: u64,
    /// Writes since creation: 1 for a new key.
    pub version: u64,
    pub create_index: u64,
    pub mod_index: u64,
}

/// A recent KV write that carried a request id: a retry with that id on the same key is
/// answered with the same result instead of being applied again. Small on purpose: the value
/// is not kept (a retry carries it again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Leader time of the write; the record is forgotten `REQUEST_WINDOW_MS` later.
    pub at_ms: u64,
    pub ns: String,
    pub key: String,
    pub kind: KvType,
    pub updated_ms: u64,
    pub version: u64,
    pub create_index: u64,
    pub mod_index: u64,
}

impl RequestRecord {
    pub fn result(&self, value: &str) -> KvRecord {
        KvRecord {
            value: value.to_string(),
            kind: self.kind,
            updated_ms: self.updated_ms,
            version: self.version,
            create_index: self.create_index,
            mod_index: self.mod_index,
        }
    }
}

/// A deployment: its spec as the client sent it (checked), and when it was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub deployment_id: String,
    pub spec: plum_types::DeploymentRequest,
    pub created_ms: u64,
    /// Counts changes of what runs (version, command, args, env, artifact); instances carry
    /// the generation they run.
    #[serde(default)]
    pub generation: u64,
    /// During a rolling update: the spec the instances of older generations run.
    #[serde(default)]
    pub previous: Option<plum_types::DeploymentRequest>,
    /// The last rolling update: `InProgress`, `Done`, or `Failed: why`.
    #[serde(default)]
    pub rollout: String,
    /// The spec the last rolling update replaced, kept after it ended: what a rollback
    /// (`POST /v1/deployments/{id}/rollback`) returns to. `None`: never updated, or last
    /// updated before this was kept.
    #[serde(default)]
    pub rollback: Option<plum_types::DeploymentRequest>,
    /// `namespace/key` -> log index of the value of each config key the current generation
    /// started with (`deps::config_stamp`): a config roll starts when they differ.
    #[serde(default)]
    pub config_stamp: std::collections::BTreeMap<String, u64>,
}

/// One instance of a deployment and the node it is assigned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentRecord {
    pub instance_id: String,
    pub deployment_id: String,
    /// Empty: no node can take it yet (the leader keeps trying).
    pub node_id: String,
    /// `Pending`, `Assigned`, or the last phase its agent reported.
    pub phase: String,
    pub port: u16,
    pub healthy: bool,
    pub restarts: u32,
    pub exit_code: Option<i32>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The deployment generation this instance runs.
    #[serde(default)]
    pub generation: u64,
    /// A warm standby (not in discovery until it takes over).
    #[serde(default)]
    pub standby: bool,
}

/// A client token. Only a hash of its secret is kept (SHA-256, hex): the replicated state, its
/// snapshots and its backups never hold anything that lets one call the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public part of the token, also in the token itself (`plum_<id>_<secret>`).
    pub id: String,
    pub name: String,
    pub role: plum_types::Role,
    /// The node an `agent` token acts for; empty for the other roles.
    pub node_id: String,
    pub hash: String,
    pub created_ms: u64,
}

impl TokenRecord {
    /// As listed: everything but the hash.
    pub fn info(&self) -> plum_types::TokenInfo {
        plum_types::TokenInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            role: self.role,
            node_id: Some(self.node_id.clone()).filter(|n| !n.is_empty()),
            created_at: self.created_ms / 1000,
        }
    }
}
