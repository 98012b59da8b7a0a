//! A fault-injecting TCP proxy for the lab, behind the `plum-faultproxy` binary: user space, no
//! root, no netem. One process hosts many named links (`listen → upstream`); each link's faults
//! (latency with jitter, bandwidth, stalls, resets, black hole, one-way cut, refuse) change at
//! run time and reach connections that are already open.
//!
//! - [`faults`]: the fault model, its JSON and validation, the per-direction plan.
//! - `pump`: one direction of one connection, applying the current faults per chunk.
//! - `link`: a link's accept loop, the dial to the upstream, resets.
//! - [`table`]: [`Proxy`], the named links of a process.
//! - [`control`]: the HTTP control API over a [`Proxy`].
//! - [`client`]: the calls the CLI makes to that API.

pub mod client;
pub mod control;
pub mod faults;
mod link;
mod pump;
pub mod table;

use std::net::SocketAddr;

pub use client::{ClientError, ControlClient};
pub use faults::{Direction, FaultError, Faults, Shaping};
pub use link::Connections;
pub use table::{LinkInfo, LinkSpec, Proxy, parse_link_flag};

/// Why a control operation on a [`Proxy`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no link named {0:?}")]
    NotFound(String),
    #[error("a link named {0:?} already exists")]
    Exists(String),
    #[error("invalid link name {0:?}: use 1-64 letters, digits, '-', '_' or '.'")]
    BadName(String),
    #[error(transparent)]
    Faults(#[from] FaultError),
    /// The cause is in the message, not the error chain: the API's error body must stand alone.
    #[error("cannot listen on {addr}: {error}")]
    Bind { addr: SocketAddr, error: std::io::Error },
}
