//! Header names of the Plum API beyond plain HTTP.

/// Id of the replica this replica believes is the leader (every response).
pub const LEADER_ID: &str = "x-plum-leader";
/// API address of that leader (every response, when known).
pub const LEADER_ADDR: &str = "x-plum-leader-addr";
/// Id of the replica that answered.
pub const REPLICA_ID: &str = "x-plum-replica";
/// The answering replica's applied log index when it served a read.
pub const APPLIED_INDEX: &str = "x-plum-applied-index";
/// Sent by a client that wants a redirect answer instead of a forwarded write.
pub const REDIRECT: &str = "x-plum-redirect";
/// Set on requests one replica forwards to another, so nothing is forwarded twice.
pub const FORWARDED: &str = "x-plum-forwarded";
