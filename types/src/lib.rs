//! Wire types of the Plum HTTP API, shared by the controller and its clients so the two can
//! never disagree. JSON, camelCase, unknown fields ignored.

pub mod auth;
pub mod cluster;
pub mod deployment;
pub mod endpoint;
pub mod error;
pub mod failover;
pub mod headers;
pub mod kv;
mod lenient;
pub mod node;
pub mod service;
pub mod topology;
pub mod traceparent;
pub mod version;

pub use auth::{CreatedToken, Role, TokenInfo, TokenRequest, UnknownRole, WhoAmI};
pub use cluster::{ClusterStatus, ContactGaps, FailoverTimeline, MemberStatus, MembershipChange, ReschedulePause};
pub use deployment::{
    Artifact, AssignmentItem, ConfigRef, Dependency, DependencyCondition, DeploymentInfo, DeploymentRequest,
    InstanceInfo, InstanceStatusReport, Placement, Readiness, ServiceSpec,
};
pub use endpoint::{Endpoint, EndpointSpec};
pub use error::ErrorBody;
pub use failover::{MovedInstance, MovedInstanceState, NodeFailover, NodeFailovers};
pub use kv::{
    KvBatchItem, KvBatchRequest, KvBatchResponse, KvCopied, KvCopyRequest, KvHistory, KvItem, KvKeys, KvNamespaces,
    KvPutRequest, KvRollbackRequest, KvType, KvVersion, KvWritten,
};
pub use node::{NodeDetail, NodeHealth, NodeHeartbeat, NodeHeartbeatAck, NodeSummary};
pub use service::{BatchResponse, HealthReport, HeartbeatBatch, RegisterBatch, RegisterRequest, ServiceHeartbeat};
pub use topology::{Dependents, Topology, TopologyEdge, TopologyService};
pub use version::{VersionFilter, VersionFilterError};
