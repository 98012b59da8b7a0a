//! The Plum controller: one replica of the registry cluster.
//!
//! - [`config`]: flags, environment, TOML.
//! - [`state`]: the deterministic registry state machine and its in-memory view.
//! - [`cluster`]: openraft glue: storage types, Raft RPC transport, bootstrap, proposing and
//!   forwarding writes, linearizable reads.
//! - [`liveness`]: heartbeat batching, the leader's last-seen tracker, expiry.
//! - [`api`]: the HTTP API every replica serves.
//! - [`metrics`]: Prometheus metrics, `GET /metrics`.
//! - [`server`]: wiring, serving, graceful shutdown.
//! - [`trace`]: request spans and W3C trace context; `otlp` (feature `otlp`): their export.

pub mod api;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod liveness;
pub mod metrics;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod rollout;
pub mod scheduler;
pub mod serve;
pub mod server;
pub mod state;
pub mod trace;
