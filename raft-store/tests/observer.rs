//! A store opened with a `StoreObserver` tells it of every durable append, applied chunk,
//! snapshot built and snapshot installed, with the number of entries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::common::log_id;
use openraft::type_config::TypeConfigExt;
use plum_raft_store::testkit::{KvApp, KvCommand, TestConfig};
use plum_raft_store::{FatalPolicy, LogStore, Observer, StateMachine, StoreObserver, StoreOptions};
use tempfile::TempDir;

type Entry = <TestConfig as openraft::RaftTypeConfig>::Entry;

#[derive(Default)]
struct Counts {
    appended: AtomicUsize,
    applied: AtomicUsize,
    built: AtomicUsize,
    installed: AtomicUsize,
}

impl StoreObserver for Counts {
    fn appended(&self, entries: usize, took: Duration) {
        assert!(took < Duration::from_secs(60));
        self.appended.fetch_add(entries, Ordering::Relaxed);
    }

    fn applied(&self, entries: usize, _took: Duration) {
        self.applied.fetch_add(entries, Ordering::Relaxed);
    }

    fn snapshot_built(&self) {
        self.built.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot_installed(&self) {
        self.installed.fetch_add(1, Ordering::Relaxed);
    }
}

fn open(dir: &TempDir, counts: &Arc<Counts>) -> (LogStore<TestConfig>, StateMachine<TestConfig, KvApp>) {
    let app = Arc::new(RwLock::new(KvApp::default()));
    let observer = Observer(Some(counts.clone()));
    let options = StoreOptions { fatal: FatalPolicy::ReturnError, observer };
    plum_raft_store::open(dir.path(), app, options).expect("open store")
}

fn entries(from: u64, to: u64) -> Vec<Entry> {
    (from..=to)
        .map(|i| {
            Entry::new_normal(log_id::<TestConfig>(1, 1, i), KvCommand::Set { key: format!("k{i}"), value: "v".into() })
        })
        .collect()
}

#[tokio::test]
async fn the_observer_hears_of_appends_applies_and_snapshots() {
    let (leader_dir, follower_dir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let (leader_counts, follower_counts) = (Arc::new(Counts::default()), Arc::new(Counts::default()));
    let (mut log, mut sm) = open(&leader_dir, &leader_counts);

    for (from, to) in [(1, 3), (4, 5)] {
        let (tx, rx) = TestConfig::oneshot();
        log.append(entries(from, to), IOFlushed::signal(tx)).await.expect("append");
        rx.await.expect("flush callback").expect("flushed");
    }
    assert_eq!(leader_counts.appended.load(Ordering::Relaxed), 5, "told before the append is acknowledged");

    sm.apply(futures::stream::iter(entries(1, 5).into_iter().map(|e| Ok((e, None))))).await.expect("apply");
    assert_eq!(leader_counts.applied.load(Ordering::Relaxed), 5);

    let snapshot = sm.get_snapshot_builder().await.build_snapshot().await.expect("snapshot");
    assert_eq!(leader_counts.built.load(Ordering::Relaxed), 1);

    let (_flog, mut follower) = open(&follower_dir, &follower_counts);
    follower.install_snapshot(&snapshot.meta, snapshot.snapshot).await.expect("install");
    assert_eq!(follower_counts.installed.load(Ordering::Relaxed), 1);
    assert_eq!(leader_counts.installed.load(Ordering::Relaxed), 0);
}
