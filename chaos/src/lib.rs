//! The lab: load and failure scenarios against a running local cluster.
//!
//! - [`target`]: finding the cluster (`PLUM_CONTROLLERS`, `.plum/cluster.env`) and its processes.
//! - [`stats`]: latency percentiles.
//! - [`failover`]: the leader-kill scenario behind `chaos/kill_leader.sh`.
//! - [`load`]: discovery reads, registrations and node heartbeats from many concurrent clients.
//! - [`sdk_bench`]: the Rust SDK's cached discovery, and a leader kill as its user sees it.
//!
//! Every loop here is bounded in count and time and stops by itself.

pub mod failover;
pub mod load;
pub mod node_failover;
pub mod sdk_bench;
pub mod stats;
pub mod target;
pub mod timeline;
