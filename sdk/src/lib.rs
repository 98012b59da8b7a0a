//! Plum's Rust client library. Not built yet: discovery cache, load balancing, retries, leader
//! redirect and watches arrive with the SDK issue. The wire types already live in `plum-types`.

pub use plum_types as types;
