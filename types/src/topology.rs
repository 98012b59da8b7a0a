//! `GET /v1/topology` and `GET /v1/services/{name}/dependents`: services and who depends on
//! whom.

use serde::{Deserialize, Serialize};

/// Every service the cluster knows (provided by a deployment, registered, or named by an
/// edge) and the dependency edges between them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Topology {
    pub services: Vec<TopologyService>,
    pub edges: Vec<TopologyEdge>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopologyService {
    pub name: String,
    /// Deployments that provide it (none: registered from outside, or only depended on).
    pub deployments: Vec<String>,
    /// Healthy endpoints in discovery now.
    pub healthy: u32,
}

/// `from` depends on `to`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopologyEdge {
    pub from: String,
    pub to: String,
    /// `declared` (a deployment's `dependsOn`) or `registered` (an instance's `upstreams`).
    pub kind: String,
    /// `healthy`, `started` or `completed`.
    pub condition: String,
    pub optional: bool,
    /// Whether the condition holds now.
    pub satisfied: bool,
    /// How far it is from holding: `db: 1 of 2 healthy`.
    pub detail: String,
}

/// What breaks if a service stops: the services that depend on it directly, and through any
/// chain, and the deployments among them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Dependents {
    pub service: String,
    pub direct: Vec<String>,
    pub transitive: Vec<String>,
    pub deployments: Vec<String>,
}
