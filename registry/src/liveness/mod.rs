//! Liveness of nodes and service instances.
//!
//! Heartbeats never cost an fsync each. Every replica collects the heartbeats it receives for a
//! few milliseconds and hands them to the leader as one batch ([`batcher`]); the leader records
//! them in memory ([`tracker`]), replicates them coalesced as one `Renew` entry every
//! `renew_flush` so followers (and any next leader) know last-seen within that window, and alone
//! decides expiry ([`duties`]), sleeping until the earliest deadline. Each node and instance
//! has its own TTL (declared in its heartbeat, bounded; a default for clients that declare
//! none). A new leader starts every live record's clock at its election, so it neither expires
//! a node that kept heartbeating nor waits more than one TTL to expire one that stopped.

pub mod batcher;
pub mod duties;
pub mod mass_loss;
pub mod tracker;

pub use batcher::{RenewBatcher, RenewError};
pub use tracker::{DefaultTtls, Tracker};
