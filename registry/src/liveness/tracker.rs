//! The leader's in-memory record of when it last heard from each node and instance.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cluster::unix_now_ms;

/// When the leader last heard of something alive.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at: Instant,
    /// The same moment on the leader's wall clock (what gets replicated).
    unix_ms: u64,
}

#[derive(Default)]
struct Leadership {
    active: bool,
    nodes: HashMap<String, Seen>,
    instances: HashMap<String, Seen>,
    /// Heartbeats not yet replicated: id -> unix ms.
    pending_nodes: HashMap<String, u64>,
    pending_instances: HashMap<String, u64>,
}

/// Kind of thing whose liveness is tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Node,
    Instance,
}

/// Ids with a unix-ms time each: heartbeats to replicate, or a sweep's verdict (expire `id`,
/// last seen at that time).
pub type SeenList = Vec<(String, u64)>;

/// A std mutex, never held across `.await`: every operation here is a few map updates.
#[derive(Default)]
pub struct Tracker {
    inner: Mutex<Leadership>,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Leadership> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This replica became leader: forget everything, so every clock starts now.
    pub fn start_leading(&self) {
        *self.lock() = Leadership { active: true, ..Leadership::default() };
    }

    pub fn stop_leading(&self) {
        *self.lock() = Leadership::default();
    }

    pub fn is_leading(&self) -> bool {
        self.lock().active
    }

    /// Records heartbeats received now. Returns false when this replica is not leading.
    pub fn record(&self, nodes: &[String], instances: &[String]) -> bool {
        let seen = Seen { at: Instant::now(), unix_ms: unix_now_ms() };
        let mut l = self.lock();
        if !l.active {
            return false;
        }
        for id in nodes {
            l.nodes.insert(id.clone(), seen);
            l.pending_nodes.insert(id.clone(), seen.unix_ms);
        }
        for id in instances {
            l.instances.insert(id.clone(), seen);
            l.pending_instances.insert(id.clone(), seen.unix_ms);
        }
        true
    }

    /// Takes the heartbeats to replicate in the next `Renew` entry.
    pub fn take_pending(&self) -> (SeenList, SeenList) {
        let mut l = self.lock();
        let nodes = l.pending_nodes.drain().collect();
        let instances = l.pending_instances.drain().collect();
        (nodes, instances)
    }

    /// Puts back heartbeats whose `Renew` entry failed, keeping the newer time per id.
    pub fn restore_pending(&self, nodes: SeenList, instances: SeenList) {
        let mut l = self.lock();
        if !l.active {
            return;
        }
        for (id, ms) in nodes {
            let e = l.pending_nodes.entry(id).or_insert(ms);
            *e = (*e).max(ms);
        }
        for (id, ms) in instances {
            let e = l.pending_instances.entry(id).or_insert(ms);
            *e = (*e).max(ms);
        }
    }

    /// Decides which of the `alive` records (id, replicated last-seen ms) have been silent for
    /// longer than `ttl`. Something this leader has not heard of yet starts its clock now; a
    /// replicated last-seen newer than what this leader knows (a registration, a revival)
    /// restarts it too. Things no longer alive are forgotten.
    pub fn sweep<'a>(&self, kind: Kind, alive: impl Iterator<Item = (&'a str, u64)>, ttl: Duration) -> SeenList {
        let now = Instant::now();
        let mut l = self.lock();
        if !l.active {
            return Vec::new();
        }
        let map = match kind {
            Kind::Node => &mut l.nodes,
            Kind::Instance => &mut l.instances,
        };
        let mut expired = Vec::new();
        let mut still_alive = std::collections::HashSet::new();
        for (id, replicated_ms) in alive {
            still_alive.insert(id);
            let seen = map.entry(id.to_string()).or_insert(Seen { at: now, unix_ms: replicated_ms });
            if replicated_ms > seen.unix_ms {
                *seen = Seen { at: now, unix_ms: replicated_ms };
            }
            if now.duration_since(seen.at) > ttl {
                expired.push((id.to_string(), seen.unix_ms.max(replicated_ms)));
            }
        }
        map.retain(|id, _| still_alive.contains(id.as_str()));
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[(String, u64)]) -> Vec<&str> {
        v.iter().map(|(id, _)| id.as_str()).collect()
    }

    #[test]
    fn nothing_expires_within_one_ttl_of_becoming_leader() {
        let t = Tracker::default();
        t.start_leading();
        let ttl = Duration::from_millis(80);
        // A node whose last replicated heartbeat is ancient still gets a full TTL.
        assert!(t.sweep(Kind::Node, [("a", 1)].into_iter(), ttl).is_empty());
        std::thread::sleep(Duration::from_millis(40));
        assert!(t.sweep(Kind::Node, [("a", 1)].into_iter(), ttl).is_empty());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(ids(&t.sweep(Kind::Node, [("a", 1)].into_iter(), ttl)), vec!["a"]);
    }

    #[test]
    fn heartbeats_keep_a_node_alive_and_are_handed_out_once() {
        let t = Tracker::default();
        t.start_leading();
        let ttl = Duration::from_millis(60);
        assert!(t.sweep(Kind::Node, [("a", 1), ("b", 1)].into_iter(), ttl).is_empty());
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(25));
            assert!(t.record(&["a".to_string()], &[]));
        }
        assert_eq!(ids(&t.sweep(Kind::Node, [("a", 1), ("b", 1)].into_iter(), ttl)), vec!["b"]);
        let (nodes, instances) = t.take_pending();
        assert_eq!(ids(&nodes), vec!["a"]);
        assert!(instances.is_empty());
        assert!(t.take_pending().0.is_empty());
    }

    #[test]
    fn a_follower_records_nothing() {
        let t = Tracker::default();
        assert!(!t.record(&["a".to_string()], &[]));
        assert!(t.sweep(Kind::Node, [("a", 1)].into_iter(), Duration::ZERO).is_empty());
        t.start_leading();
        t.stop_leading();
        assert!(!t.is_leading());
    }

    #[test]
    fn a_newer_replicated_heartbeat_restarts_the_clock() {
        let t = Tracker::default();
        t.start_leading();
        let ttl = Duration::from_millis(50);
        assert!(t.sweep(Kind::Instance, [("i", 100)].into_iter(), ttl).is_empty());
        std::thread::sleep(Duration::from_millis(70));
        // Re-registered meanwhile (replicated last-seen moved): not expired.
        assert!(t.sweep(Kind::Instance, [("i", 200)].into_iter(), ttl).is_empty());
    }
}
