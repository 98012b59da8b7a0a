//! The lab: load and failure scenarios against a running local cluster.
//!
//! - [`target`]: finding the cluster (`PLUM_CONTROLLERS`, `.plum/cluster.env`) and its processes.
//! - [`stats`]: latency percentiles.
//! - [`failover`]: the replica-kill scenario behind `chaos/kill_leader.sh` and `kill_follower.sh`.
//! - [`writes`]: writers whose acknowledged writes are checked afterwards (none may be lost).
//! - [`settle`]: waiting for the cluster to be whole again between trials.
//! - [`scenarios`]: the other chaos scenarios (partitions, cut agents, weak networks, restarts),
//!   one result line each.
//! - [`fleet`]: a simulated fleet (nodes, instances, readers, writers) with per-operation figures.
//! - [`load`]: discovery reads, registrations and node heartbeats from many concurrent clients.
//! - [`marks`]: the cluster's own records (term, expiries, leader gaps, CPU, memory) around a run.
//! - [`procfs`]: a process's CPU time, memory and descriptors.
//! - [`sdk_bench`]: an SDK's cached discovery, and a leader kill as its user sees it (Rust in
//!   process; Python and Java as child programs speaking a line protocol).
//! - [`proxy`]: the fault-injecting TCP proxy behind `plum-faultproxy` (latency, bandwidth,
//!   stalls, resets, black holes, one-way cuts), changed at run time per link.
//! - [`linearize`]: concurrent KV clients' history, checked for linearizability per key.
//! - [`etcd`]: the same KV load and leader kill against etcd on this machine, for comparison.
//!
//! Every loop here is bounded in count and time and stops by itself.

pub mod etcd;
pub mod failover;
pub mod fleet;
pub mod linearize;
pub mod load;
pub mod marks;
pub mod node_failover;
pub mod procfs;
pub mod proxy;
pub mod scenarios;
pub mod sdk_bench;
pub mod settle;
pub mod stats;
pub mod target;
pub mod timeline;
pub mod writes;
