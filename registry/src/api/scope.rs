//! What an `agent` token may touch: its own node, and the instances that are its node's
//! (registered or assigned there) or that the cluster does not know yet. Other roles that
//! passed the client guard may act for any node.

use super::{ApiError, Shared};
use crate::auth::Caller;

/// The caller may act for `node_id`.
pub fn node(caller: &Caller, node_id: &str) -> Result<(), ApiError> {
    if caller.may_act_for(node_id) {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "an agent token acts only for its own node `{}`, not `{node_id}`",
        caller.node_id.as_deref().unwrap_or("")
    )))
}

/// The caller may act for `instance_id`, which the request places on `named_node` when it
/// names one (a registration, a status report).
pub fn instance(state: &Shared, caller: &Caller, instance_id: &str, named_node: Option<&str>) -> Result<(), ApiError> {
    if caller.role != plum_types::Role::Agent {
        return Ok(());
    }
    let own = caller.node_id.as_deref().ok_or_else(|| ApiError::Forbidden("an agent token without a node".into()))?;
    if let Some(named) = named_node {
        node(caller, named)?;
    }
    match state.cluster.with_registry(|r| r.instance_on_node(instance_id, own)) {
        Some(false) => Err(ApiError::Forbidden(format!("instance `{instance_id}` is not on node `{own}`"))),
        _ => Ok(()),
    }
}
