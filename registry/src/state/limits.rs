//! What every stored name and text must satisfy. The API checks requests with these (and
//! answers 400); a replica checks proposals forwarded to it with them too, since they arrive
//! over the network. Names never contain control characters, so never NUL, which separates
//! the parts of a row key.

use super::command::Op;

pub const MAX_ID: usize = 256;
pub const MAX_SHORT: usize = 128;
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_KEY: usize = 128;
pub const MAX_LABEL_VALUE: usize = 512;
pub const MAX_ENDPOINTS: usize = 64;
pub const MAX_KV_VALUE: usize = 256 * 1024;
pub const MAX_BATCH: usize = 1000;
/// No declared heartbeat TTL may exceed this, whatever a replica's configuration says.
pub const MAX_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// Instances of one deployment at most.
pub const MAX_REPLICAS: usize = 1000;

fn check_moves(moves: &[super::command::Placed]) -> Result<(), String> {
    moves.iter().try_for_each(|m| {
        check_name("instanceId", &m.instance_id, MAX_ID)?;
        check_text("nodeId", &m.node_id, MAX_ID)
    })
}

fn check_ttl(ttl_ms: u64) -> Result<(), String> {
    (ttl_ms <= MAX_TTL_MS).then_some(()).ok_or_else(|| format!("`ttlMs` above {MAX_TTL_MS}"))
}

/// Bounded and printable.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        return Err(format!("`{field}` is longer than {max} bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("`{field}` contains control characters"));
    }
    Ok(())
}

/// Non-empty, bounded and printable.
pub fn check_name(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("`{field}` is required"));
    }
    check_text(field, value, max)
}

impl Op {
    /// Structural checks of a proposal (names, sizes); the API's own checks are stricter.
    pub fn check(&self) -> Result<(), String> {
        let ids =
            |field: &str, list: &[(String, u64)]| list.iter().try_for_each(|(id, _)| check_name(field, id, MAX_ID));
        match self {
            Op::UpsertNode { node_id, ip, labels, ttl_ms, .. } => {
                check_name("nodeId", node_id, MAX_ID)?;
                check_text("ip", ip, MAX_ID)?;
                (labels.len() <= MAX_LABELS).then_some(()).ok_or("too many labels")?;
                check_ttl(*ttl_ms)
            }
            Op::Renew { nodes, instances } => {
                ids("nodeId", nodes)?;
                ids("instanceId", instances)
            }
            Op::ExpireNodes { nodes, moves, takeovers } => {
                ids("nodeId", nodes)?;
                takeovers.iter().try_for_each(|t| {
                    check_name("instanceId", &t.standby, MAX_ID)?;
                    check_name("instanceId", &t.replaces, MAX_ID)
                })?;
                check_moves(moves)
            }
            Op::Reassign { moves } => check_moves(moves),
            Op::ObserveEdges { edges } => {
                (edges.len() <= MAX_BATCH).then_some(()).ok_or("too many edges")?;
                edges.iter().try_for_each(|(from, to)| {
                    check_name("clientService", from, MAX_ID)?;
                    check_name("service", to, MAX_ID)
                })
            }
            Op::CreateDeployment { deployment_id, spec, placements, standby } => {
                check_name("deploymentId", deployment_id, MAX_ID)?;
                check_name("name", &spec.name, MAX_ID)?;
                (placements.len() + standby.len() <= MAX_REPLICAS).then_some(()).ok_or("too many replicas")?;
                check_moves(placements)?;
                check_moves(standby)
            }
            Op::DeleteDeployment { deployment_id, .. }
            | Op::UpdateDeployment { deployment_id, .. }
            | Op::RollConfig { deployment_id } => check_name("deploymentId", deployment_id, MAX_ID),
            Op::ScaleDeployment { deployment_id, add, remove, replicas, .. } => {
                check_name("deploymentId", deployment_id, MAX_ID)?;
                (*replicas as usize <= MAX_REPLICAS).then_some(()).ok_or("too many replicas")?;
                remove.iter().try_for_each(|id| check_name("instanceId", id, MAX_ID))?;
                check_moves(add)
            }
            Op::RolloutStep { deployment_id, remove, add, outcome, .. } => {
                check_name("deploymentId", deployment_id, MAX_ID)?;
                remove.as_deref().map_or(Ok(()), |id| check_name("instanceId", id, MAX_ID))?;
                outcome.as_deref().map_or(Ok(()), |o| check_text("outcome", o, MAX_ID))?;
                check_moves(add.as_slice())
            }
            Op::SetReschedulePause { pause } => pause.as_ref().map_or(Ok(()), |p| {
                check_text("reason", &p.reason, MAX_ID)?;
                (p.nodes.len() <= 100_000).then_some(()).ok_or_else(|| "too many nodes".to_string())
            }),
            Op::ReportInstance { report } => {
                check_name("instanceId", &report.instance_id, MAX_ID)?;
                check_text("phase", &report.phase, MAX_SHORT)
            }
            Op::ExpireInstances { instances } | Op::ForgetInstances { instances } => ids("instanceId", instances),
            Op::DeleteNode { node_id } => check_name("nodeId", node_id, MAX_ID),
            Op::RegisterInstance { instance_id, node_id, ip, endpoints, ttl_ms, upstreams, .. } => {
                check_name("instanceId", instance_id, MAX_ID)?;
                check_text("nodeId", node_id, MAX_ID)?;
                check_text("ip", ip, MAX_ID)?;
                check_ttl(*ttl_ms)?;
                (upstreams.len() <= MAX_ENDPOINTS).then_some(()).ok_or("too many upstreams")?;
                upstreams.iter().try_for_each(|u| check_name("upstream", u, MAX_ID))?;
                (endpoints.len() <= MAX_ENDPOINTS).then_some(()).ok_or("too many endpoints")?;
                endpoints.iter().try_for_each(|e| {
                    check_name("serviceName", &e.service_name, MAX_ID)?;
                    check_text("ip", &e.ip, MAX_ID)
                })
            }
            Op::SetHealth { instance_id, ttl_ms, .. } => {
                check_name("instanceId", instance_id, MAX_ID)?;
                ttl_ms.map_or(Ok(()), check_ttl)
            }
            Op::DeregisterInstance { instance_id } => check_name("instanceId", instance_id, MAX_ID),
            Op::KvPut { ns, write, request_id, .. } => {
                check_name("namespace", ns, MAX_ID)?;
                check_name("key", &write.key, MAX_ID)?;
                (write.value.len() <= MAX_KV_VALUE).then_some(()).ok_or("value too large")?;
                request_id.as_deref().map_or(Ok(()), |id| check_text("requestId", id, MAX_ID))
            }
            Op::KvDelete { ns, key, .. } => {
                check_name("namespace", ns, MAX_ID)?;
                check_name("key", key, MAX_ID)
            }
            Op::KvBatch { ns, writes } => {
                check_name("namespace", ns, MAX_ID)?;
                (writes.len() <= MAX_BATCH).then_some(()).ok_or("batch too large")?;
                writes.iter().try_for_each(|w| {
                    check_name("key", &w.key, MAX_ID)?;
                    (w.value.len() <= MAX_KV_VALUE).then_some(()).ok_or_else(|| "value too large".to_string())
                })
            }
            Op::CreateToken { token, .. } => {
                check_name("id", &token.id, MAX_SHORT)?;
                check_text("name", &token.name, MAX_SHORT)?;
                check_text("nodeId", &token.node_id, MAX_ID)?;
                let hex = token.hash.len() == 64 && token.hash.bytes().all(|b| b.is_ascii_hexdigit());
                hex.then_some(()).ok_or_else(|| "`hash` is not a SHA-256 hex digest".to_string())
            }
            Op::RevokeToken { id } => check_name("id", id, MAX_SHORT),
            Op::Batch { ops } => {
                (ops.len() <= MAX_BATCH).then_some(()).ok_or("batch too large")?;
                ops.iter().try_for_each(|op| match op {
                    Op::RegisterInstance { .. } | Op::SetHealth { .. } | Op::UpsertNode { .. } => op.check(),
                    _ => Err("a batch holds only registrations and health changes".to_string()),
                })
            }
        }
    }
}
