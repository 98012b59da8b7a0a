//! Plum's Rust client library. So far: [`Controllers`], a client that moves between replicas.
//! Discovery cache, load balancing, leader redirect and watches arrive with the SDK issue. The
//! wire types live in `plum-types`.

pub mod controllers;

pub use controllers::{Answer, ClientError, Controllers};
pub use plum_types as types;
