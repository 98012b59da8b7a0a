//! Plum's Rust client library: [`Controllers`], the transport that finds the leader and moves
//! between replicas; [`Client`], the typed API over it (KV with exactly-once writes, discovery
//! with a watched cache that serves stale endpoints when the cluster is unreachable,
//! registration with background heartbeats, token management). Every request carries the
//! configured token (`Options::token`, or `PLUM_TOKEN` / `PLUM_TOKEN_FILE`); `https://`
//! controllers are trusted through the cluster's own CA (`Options::with_ca_file`, or
//! `PLUM_CA_FILE`). The wire types live in `plum-types`.

pub mod backoff;
pub mod balance;
pub mod breaker;
pub mod client;
pub mod config;
pub mod controllers;
pub mod discovery;
pub mod error;
pub mod kv;
#[cfg(feature = "logging")]
pub mod logging;
pub mod outlier;
pub mod registration;
pub mod tls;
pub mod tokens;

pub use client::Client;
pub use controllers::{Answer, Controllers, Options, Request};
pub use error::ClientError;
pub use plum_types as types;
pub use tokens::Tokens;
