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

/// What a dependency must reach before a dependent instance starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DependencyCondition {
    /// At least `minHealthy` healthy endpoints of the service are in discovery.
    #[default]
    Healthy,
    /// At least `minHealthy` instances of it run (started, ready or not), or are registered.
    Started,
    /// At least `minHealthy` instances of the deployment that provides it exited with status 0
    /// (one-shot jobs such as a schema migration; give them `restart: "on-failure"`).
    Completed,
}

impl DependencyCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            DependencyCondition::Healthy => "healthy",
            DependencyCondition::Started => "started",
            DependencyCondition::Completed => "completed",
        }
    }
}

/// One entry of a deployment's `dependsOn`: its instances start only once this holds. Gating
/// applies at start only: a dependency lost later does not stop or restart anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Dependency {
    /// The service depended on: the `service.name` (else the `name`) of a deployment, or a
    /// service registered by something agents do not run.
    #[serde(deserialize_with = "null_as_default")]
    pub service: String,
    /// Only endpoints of these versions count: exact, or a semver range (`>=1.2 <2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub condition: DependencyCondition,
    /// How many healthy (started, completed) instances it takes; default 1.
    pub min_healthy: u32,
    /// How long a dependent instance waits before the deployment reports the dependency as
    /// failed (it keeps waiting); an optional dependency is then given up on and the instance
    /// starts. 0: no limit.
    #[serde(deserialize_with = "null_as_default")]
    pub timeout_ms: u64,
    /// Start without it once it timed out, or at once when nothing provides the service.
    #[serde(deserialize_with = "null_as_default")]
    pub optional: bool,
}

impl Default for Dependency {
    fn default() -> Dependency {
        Dependency {
            service: String::new(),
            version: None,
            condition: DependencyCondition::Healthy,
            min_healthy: 1,
            timeout_ms: 0,
            optional: false,
        }
    }
}

/// A config key a deployment's instances get (`configRefs`): as an environment variable, or as
/// a file the agent writes (and rewrites when the key changes) under the instance's config
/// directory, `$PLUM_CONFIG_DIR`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigRef {
    #[serde(deserialize_with = "null_as_default")]
    pub namespace: String,
    #[serde(deserialize_with = "null_as_default")]
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// A relative path without `..`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl ConfigRef {
    /// `namespace/key`, as `waitingOn` and logs name it.
    pub fn name(&self) -> String {
        format!("{}/{}", self.namespace, self.key)
    }
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
    /// Services that must hold (be healthy, started or completed) before an instance starts.
    #[serde(deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    /// When the agent starts an exited instance again: `"always"` (default), `"on-failure"`
    /// (not after exit status 0: the instance is `Completed`), `"never"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// Config keys its instances get. An instance starts only once every key exists.
    #[serde(deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub config_refs: Vec<ConfigRef>,
    /// When a referenced key changes, replace the instances one at a time (each ready before
    /// the next; the first failure stops it), so each starts with the new values.
    #[serde(deserialize_with = "null_as_default", skip_serializing_if = "std::ops::Not::not")]
    pub roll_on_config_change: bool,
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
    /// In phase `Waiting`: the dependencies that do not hold yet, each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_on: Vec<String>,
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
    /// With `dependsOn`: `Waiting: <why>` while instances wait for a dependency, `Failed:
    /// <why>` once one is past its `timeoutMs` (they keep waiting), `Ready` when none waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<String>,
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
