//! The registry's replicated state: a deterministic state machine over nodes, their liveness,
//! service instances with their endpoints, and the config KV.
//!
//! Invariant: `apply` reads no clock, randomness, network or environment. Time arrives inside
//! each command, stamped by the leader.

mod app;
mod apply;
mod command;
pub mod deps;
mod keys;
mod leases;
pub mod limits;
mod records;
mod rows;
mod view;

pub use app::{ApplyObserver, RegistryApp};
pub use apply::{
    ASSIGNED, MAX_OBSERVED, MAX_REMEMBERED_REQUESTS, OBSERVED_TTL_MS, PENDING, REQUEST_WINDOW_MS, ROLLOUT_DONE,
    ROLLOUT_IN_PROGRESS,
};
pub use command::{Command, CommandResult, InstanceReport, KvWrite, Op, Placed, Takeover};
pub use leases::{Lease, LeaseKind, LeaseObserver};
pub use records::{
    AssignmentRecord, DeploymentRecord, EndpointRecord, InstanceRecord, KvRecord, NodeRecord, RequestRecord,
    TokenRecord,
};
pub use view::Registry;
