//! Service instances: registration (merging endpoints, or replacing them), health reports,
//! deregistration, and forgetting long-dead ones.

use plum_raft_store::DataWrites;
use plum_types::HealthReport;

use crate::state::command::CommandResult;
use crate::state::records::{EndpointRecord, InstanceRecord};
use crate::state::view::Registry;

/// The fields of a `RegisterInstance` command.
pub(super) struct Registration<'a> {
    pub instance_id: &'a str,
    pub node_id: &'a str,
    pub ip: &'a str,
    pub endpoints: &'a [EndpointRecord],
    pub ttl_ms: u64,
    pub replace: bool,
    pub upstreams: &'a [String],
}

/// Endpoints after a registration: the new ones, plus (unless replacing, or the instance was
/// dead: its old endpoints died with it) the old ones that no new one takes the place of. New endpoints without an address of their own get
/// `instance_ip`, the instance's address after this registration. Old ones are kept as stored;
/// one without an address (a row written before endpoints had one) is compared by its
/// instance's old address.
fn merged_endpoints(old: Option<&InstanceRecord>, reg: &Registration<'_>, instance_ip: &str) -> Vec<EndpointRecord> {
    let new: Vec<EndpointRecord> = reg
        .endpoints
        .iter()
        .map(|e| EndpointRecord {
            ip: if e.ip.is_empty() { instance_ip.to_string() } else { e.ip.clone() },
            ..e.clone()
        })
        .collect();
    let Some(old) = old.filter(|o| o.alive && !reg.replace) else { return new };
    // An old endpoint without an address is where its instance is; an instance that had none
    // either takes this registration's, as reads then show it (else a retried registration
    // would drop an endpoint the first one kept).
    let old_ip = if old.ip.is_empty() { instance_ip } else { old.ip.as_str() };
    let mut out: Vec<EndpointRecord> =
        old.endpoints.iter().filter(|e| !new.iter().any(|n| n.same_place(e, old_ip))).cloned().collect();
    out.extend(new);
    out
}

impl Registry {
    pub(super) fn register_instance(
        &mut self,
        reg: Registration<'_>,
        now: u64,
        writes: &mut DataWrites,
    ) -> CommandResult {
        let old = self.instances.get(reg.instance_id);
        // A registration without a node or address keeps what the instance had.
        let keep = |new: &str, old: Option<&String>| {
            if new.is_empty() { old.cloned().unwrap_or_default() } else { new.to_string() }
        };
        let ip = keep(reg.ip, old.map(|o| &o.ip));
        let rec = InstanceRecord {
            instance_id: reg.instance_id.to_string(),
            node_id: keep(reg.node_id, old.map(|o| &o.node_id)),
            endpoints: merged_endpoints(old, &reg, &ip),
            ip,
            alive: true,
            last_seen_ms: old.map(|i| i.last_seen_ms.max(now)).unwrap_or(now),
            registered_ms: old.map(|i| i.registered_ms).unwrap_or(now),
            ttl_ms: reg.ttl_ms,
            upstreams: if reg.upstreams.is_empty() && !reg.replace {
                old.map(|o| o.upstreams.clone()).unwrap_or_default()
            } else {
                reg.upstreams.to_vec()
            },
        };
        self.put_instance(rec, writes);
        CommandResult::Done
    }

    pub(super) fn set_health(
        &mut self,
        instance_id: &str,
        reports: &[HealthReport],
        ttl_ms: Option<u64>,
        now: u64,
        writes: &mut DataWrites,
    ) -> CommandResult {
        let Some(mut rec) = self.instances.get(instance_id).cloned() else {
            return CommandResult::Changed { count: 0 };
        };
        for report in reports {
            for ep in rec
                .endpoints
                .iter_mut()
                .filter(|ep| ep.service_name == report.service_name && report.port.is_none_or(|p| p == ep.port))
            {
                ep.healthy = report.healthy;
            }
        }
        if let Some(ttl) = ttl_ms {
            rec.ttl_ms = ttl;
        }
        rec.alive = true;
        rec.last_seen_ms = rec.last_seen_ms.max(now);
        self.put_instance(rec, writes);
        CommandResult::Changed { count: 1 }
    }

    pub(super) fn deregister_instance(&mut self, instance_id: &str, writes: &mut DataWrites) -> CommandResult {
        self.remove_instance(instance_id, writes);
        CommandResult::Done
    }

    /// Removes instances still dead and last seen no later than the leader saw them.
    pub(super) fn forget_instances(&mut self, list: &[(String, u64)], writes: &mut DataWrites) -> CommandResult {
        let mut count = 0;
        for (id, seen) in list {
            let dead_since = self.instances.get(id).is_some_and(|i| !i.alive && i.last_seen_ms <= *seen);
            if dead_since && self.remove_instance(id, writes) {
                count += 1;
            }
        }
        CommandResult::Changed { count }
    }
}
