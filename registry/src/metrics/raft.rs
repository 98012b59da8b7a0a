//! Raft on this replica: how long the store took to make appends durable and to apply
//! committed entries (told by `plum_raft_store` through [`StoreObserver`]), snapshots built and
//! installed, and leader changes (followed on the cluster's leadership watch). Term, role and
//! indexes are read at scrape time (`scrape.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use plum_raft_store::StoreObserver;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

use crate::cluster::Cluster;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SnapshotLabels {
    /// `built` here, or `installed` from the leader.
    pub kind: &'static str,
}

/// 0.1 ms to about 3.3 s, doubling: an fsync is a few ms on a good disk.
fn storage_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

#[derive(Clone)]
pub struct RaftMetrics {
    append: Histogram,
    apply: Histogram,
    snapshots: Family<SnapshotLabels, Counter>,
    leader_changes: Counter,
    /// The last (term, leader) seen, so each leadership counts once.
    last_leadership: Arc<Mutex<Option<(u64, u64)>>>,
}

impl Default for RaftMetrics {
    fn default() -> Self {
        let snapshots = Family::default();
        // Both series exist from the start, at 0, so `increase()` sees the first one.
        for kind in ["built", "installed"] {
            let _ = snapshots.get_or_create(&SnapshotLabels { kind });
        }
        RaftMetrics {
            append: storage_histogram(),
            apply: storage_histogram(),
            snapshots,
            leader_changes: Counter::default(),
            last_leadership: Arc::new(Mutex::new(None)),
        }
    }
}

impl RaftMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "plum_raft_append_duration_seconds",
            "Time from appending a batch of entries to the Raft log to its durable (group-committed) write",
            self.append.clone(),
        );
        registry.register(
            "plum_raft_apply_duration_seconds",
            "Time to apply one chunk of committed entries to the state machine (memory and one RocksDB batch)",
            self.apply.clone(),
        );
        registry.register(
            "plum_raft_snapshots",
            "Snapshots built by this replica or installed from the leader",
            self.snapshots.clone(),
        );
        registry.register(
            "plum_raft_leader_changes",
            "Leaderships this replica saw begin: each new (term, leader) pair, the first one included",
            self.leader_changes.clone(),
        );
    }

    /// What the store reports to.
    pub fn store_observer(&self) -> plum_raft_store::Observer {
        plum_raft_store::Observer(Some(Arc::new(self.clone())))
    }

    /// Notes the leader known in `term`; returns whether it is a leadership not seen before.
    pub fn saw_leader(&self, term: u64, leader: Option<u64>) -> bool {
        let Some(leader) = leader else { return false };
        let mut last = self.last_leadership.lock().unwrap_or_else(|p| p.into_inner());
        if *last == Some((term, leader)) {
            return false;
        }
        *last = Some((term, leader));
        self.leader_changes.inc();
        true
    }

    /// Counts leader changes as this replica learns of them, until the handle is dropped.
    pub fn follow_leadership(&self, cluster: &Cluster) -> LeadershipFollower {
        let metrics = self.clone();
        // Each look reads the value the watch holds and marks it seen; the wait after it wakes
        // on any newer one: no change is missed between the two.
        let mut watch = cluster.leadership_watch();
        let task = tokio::spawn(async move {
            loop {
                let now = watch.current();
                metrics.saw_leader(now.term, now.leader);
                watch.changed().await;
            }
        });
        LeadershipFollower { task }
    }
}

impl StoreObserver for RaftMetrics {
    fn appended(&self, _entries: usize, took: Duration) {
        self.append.observe(took.as_secs_f64());
    }

    fn applied(&self, _entries: usize, took: Duration) {
        self.apply.observe(took.as_secs_f64());
    }

    fn snapshot_built(&self) {
        self.snapshots.get_or_create(&SnapshotLabels { kind: "built" }).inc();
    }

    fn snapshot_installed(&self) {
        self.snapshots.get_or_create(&SnapshotLabels { kind: "installed" }).inc();
    }
}

/// Stops following leadership when dropped.
pub struct LeadershipFollower {
    task: JoinHandle<()>,
}

impl Drop for LeadershipFollower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(metrics: &RaftMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn each_leadership_counts_once() {
        let m = RaftMetrics::default();
        assert!(!m.saw_leader(1, None), "no leader is no change");
        assert!(m.saw_leader(1, Some(2)));
        assert!(!m.saw_leader(1, Some(2)), "the same leadership seen again");
        assert!(!m.saw_leader(2, None));
        assert!(m.saw_leader(2, Some(2)), "re-elected in a new term");
        assert!(m.saw_leader(3, Some(1)));
        assert!(encoded(&m).contains("plum_raft_leader_changes_total 3"));
    }

    #[test]
    fn store_timings_and_snapshots_are_recorded() {
        let m = RaftMetrics::default();
        let observer = m.store_observer();
        let o = observer.0.as_deref().unwrap();
        o.appended(3, Duration::from_millis(2));
        o.applied(3, Duration::from_micros(300));
        o.applied(1, Duration::from_micros(50));
        o.snapshot_built();
        let text = encoded(&m);
        assert!(text.contains("plum_raft_append_duration_seconds_count 1"), "{text}");
        assert!(text.contains("plum_raft_apply_duration_seconds_count 2"), "{text}");
        assert!(text.contains(r#"plum_raft_snapshots_total{kind="built"} 1"#), "{text}");
        assert!(text.contains(r#"plum_raft_snapshots_total{kind="installed"} 0"#), "{text}");
    }
}
