//! The linearizability check of the lab: record what concurrent KV clients saw, then decide
//! whether some order of their operations, each taking effect at one instant between its
//! invocation and its answer, explains every read (Wing & Gong / Lowe, per key).
//!
//! - [`history`]: the recorder (per-client logs on one clock) and the op/outcome types.
//! - [`checker`]: per-key check against a register, within a [`Budget`]; the report.
//! - `search`: the backtracking search with memoization the checker runs.
//! - [`classify`]: which SDK errors prove a write was not applied (`fail`) and which leave it
//!   `unknown`.
//! - [`runner`]: `plum-bench linearize`, the clients against a running cluster.

pub mod checker;
pub mod classify;
pub mod history;
pub mod runner;
mod search;

pub use checker::{Budget, KeyReport, KeyVerdict, Report, Verdict, Violation, check};
pub use history::{ClientId, ClientLog, Clock, Counts, Kind, Op, Outcome, merge};
pub use runner::{RunError, RunOptions, RunReport, run};
