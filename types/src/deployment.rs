//! Deployments: what should run, how many, where; and the instances the controller assigned.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::lenient::null_as_default;

/// How the agent checks that an instance is ready before registering its endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Readiness {
    /// `GET http://127.0.0.1:${PORT}{httpPath}` answers 2xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_path: Option<String>,
    /// Or: a TCP connection to the port succeeds.
    #[serde(deserialize_with = "null_as_default")]
    pub tcp: bool,
}

/// The service an instance's endpoint is registered under.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceSpec {
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(deserialize_with = "null_as_default")]
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Readiness>,
}

/// Where instances may run: nodes carrying every one of these labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Placement {
    #[serde(deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

/// A program to fetch instead of a command already on the node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Artifact {
    #[serde(deserialize_with = "null_as_default")]
    pub url: String,
    #[serde(deserialize_with = "null_as_default")]
    pub sha256: String,
}

/// `POST /v1/deployments`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeploymentRequest {
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(deserialize_with = "null_as_default")]
    pub version: String,
    #[serde(deserialize_with = "null_as_default")]
    pub replicas: u32,
    #[serde(deserialize_with = "null_as_default")]
    pub command: String,
    #[serde(deserialize_with = "null_as_default")]
    pub args: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSpec>,
    #[serde(deserialize_with = "null_as_default")]
    pub placement: Placement,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
    /// `"stop"`: the agent stops this deployment's instances once it has lost contact with
    /// the controllers for longer than its TTL (for singletons: the old copy is gone before
    /// the replacement is likely serving). Default: keep running (the data plane does not die
    /// with the control plane).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fencing: Option<String>,
    /// Warm standby: extra instances that run and pass readiness but are not in discovery.
    /// When a node dies, a standby takes over its instance in the same Raft entry (takeover
    /// costs detection plus one write), and a new standby replaces it.
    #[serde(deserialize_with = "null_as_default")]
    pub standby: u32,
    /// Makes a retried create return the deployment the first attempt made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One assigned instance of a deployment, as `GET /v1/deployments/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceInfo {
    pub instance_id: String,
    /// Empty while no node can take it.
    pub node_id: String,
    /// `Pending` (no node), `Assigned`, then what the agent reports (`Starting`, `Running`,
    /// `Exited`, ...).
    pub phase: String,
    pub port: u16,
    pub healthy: bool,
    pub restarts: u32,
    /// Unix seconds.
    pub created_at: u64,
    pub updated_at: u64,
    /// The deployment generation (spec change) it runs.
    #[serde(default)]
    pub generation: u64,
    /// A warm standby: running and ready, not in discovery.
    #[serde(default)]
    pub standby: bool,
}

/// `GET /v1/deployments/{id}`, and the items of `GET /v1/deployments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentInfo {
    pub deployment_id: String,
    pub spec: DeploymentRequest,
    pub instances: Vec<InstanceInfo>,
    pub created_at: u64,
    /// Counts spec changes; instances of older generations are replaced by a rolling update.
    #[serde(default)]
    pub generation: u64,
    /// The last rolling update: `InProgress`, `Done`, or `Failed: why` (empty: none yet).
    #[serde(default)]
    pub rollout: String,
    /// Why instances on dead nodes are not being moved, while rescheduling is paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reschedule_paused: Option<String>,
    /// The spec the last rolling update replaced: what `POST /v1/deployments/{id}/rollback`
    /// starts a rolling update back to (with the current `replicas`). Absent: nothing to roll
    /// back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<DeploymentRequest>,
}

/// An item of `GET /v1/assignments?nodeId=` (the shape Plum's Go agent polls).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentItem {
    pub instance_id: String,
    pub deployment_id: String,
    pub node_id: String,
    /// `Running` while assigned.
    pub desired: String,
    pub artifact_url: String,
    pub start_cmd: String,
    pub app_name: String,
    pub app_version: String,
    /// A warm standby: run it and check readiness, but keep its endpoint out of discovery.
    #[serde(default)]
    pub standby: bool,
    /// The whole deployment spec (our agent reads it; Plum's Go agent ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<DeploymentRequest>,
}

/// `POST /v1/instances/status` (what an agent reports of an instance).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InstanceStatusReport {
    #[serde(deserialize_with = "null_as_default")]
    pub instance_id: String,
    /// The reporting node; a report from a node the instance is no longer assigned to is
    /// ignored. Plum's Go agent sends none.
    #[serde(deserialize_with = "null_as_default")]
    pub node_id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(deserialize_with = "null_as_default")]
    pub healthy: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub port: u16,
    #[serde(deserialize_with = "null_as_default")]
    pub ts_unix: u64,
}
