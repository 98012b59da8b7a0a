//! Property tests: snapshot/restore fidelity, and log truncate/purge never leaving a hole.

use std::sync::{Arc, RwLock};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::common::log_id;
use openraft::type_config::TypeConfigExt;
use plum_raft_store::testkit::{KvApp, KvCommand, TestConfig};
use plum_raft_store::{FatalPolicy, LogStore, StateMachine, StoreOptions};
use proptest::prelude::*;
use tempfile::TempDir;

type Entry = <TestConfig as openraft::RaftTypeConfig>::Entry;

fn open(dir: &TempDir) -> (LogStore<TestConfig>, StateMachine<TestConfig, KvApp>, Arc<RwLock<KvApp>>) {
    let app = Arc::new(RwLock::new(KvApp::default()));
    let (log, sm) = plum_raft_store::open(
        dir.path(),
        app.clone(),
        StoreOptions { fatal: FatalPolicy::ReturnError, ..StoreOptions::default() },
    )
    .expect("open store");
    (log, sm, app)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn entry(term: u64, index: u64, command: KvCommand) -> Entry {
    Entry::new_normal(log_id::<TestConfig>(term, 1, index), command)
}

async fn append(log: &mut LogStore<TestConfig>, entries: Vec<Entry>) {
    let (tx, rx) = TestConfig::oneshot();
    log.append(entries, IOFlushed::signal(tx)).await.expect("append");
    rx.await.expect("flush callback").expect("flushed");
}

async fn apply(sm: &mut StateMachine<TestConfig, KvApp>, entries: Vec<Entry>) {
    let items = entries.into_iter().map(|e| Ok((e, None)));
    sm.apply(futures::stream::iter(items)).await.expect("apply");
}

fn command() -> impl Strategy<Value = KvCommand> {
    let key = "[a-e]{1,2}";
    prop_oneof![
        3 => (key, "[a-z0-9]{0,8}").prop_map(|(key, value)| KvCommand::Set { key, value }),
        1 => key.prop_map(|key| KvCommand::Delete { key }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// A snapshot installed on a fresh replica gives the same view and applied state, and both
    /// survive a reopen of the follower's database.
    #[test]
    fn snapshot_then_restore_gives_identical_state(commands in proptest::collection::vec(command(), 1..60)) {
        runtime().block_on(async {
            let leader_dir = TempDir::new().unwrap();
            let (_log, mut leader, leader_app) = open(&leader_dir);
            let entries: Vec<Entry> = commands.iter().cloned().enumerate()
                .map(|(i, c)| entry(1, i as u64 + 1, c)).collect();
            apply(&mut leader, entries).await;

            let snapshot = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();

            let follower_dir = TempDir::new().unwrap();
            {
                let (_flog, mut follower, follower_app) = open(&follower_dir);
                // Some unrelated state that the snapshot must replace, not merge with.
                apply(&mut follower, vec![entry(1, 1, KvCommand::Set { key: "zz".into(), value: "stale".into() })]).await;
                follower.install_snapshot(&snapshot.meta, snapshot.snapshot.clone()).await.unwrap();
                assert_eq!(follower.applied_state().await.unwrap(), leader.applied_state().await.unwrap());
                assert_eq!(*follower_app.read().unwrap(), *leader_app.read().unwrap());
            }
            // Dropping the store closed the database; open it again from disk.
            let (_flog, mut follower, follower_app) = open(&follower_dir);
            assert_eq!(follower.applied_state().await.unwrap(), leader.applied_state().await.unwrap());
            assert_eq!(*follower_app.read().unwrap(), *leader_app.read().unwrap());
            let current = follower.get_current_snapshot().await.unwrap().expect("snapshot kept");
            assert_eq!(current.meta, snapshot.meta);
        });
    }

    /// Any sequence of appends, truncations and purges leaves a gap-free log that matches a
    /// simple model, also after a reopen.
    #[test]
    fn truncate_and_purge_never_leave_a_hole(ops in proptest::collection::vec(log_op(), 1..40)) {
        runtime().block_on(async {
            let dir = TempDir::new().unwrap();
            let (mut log, sm, app) = open(&dir);
            let mut model = LogModel::default();
            for op in ops {
                model.apply(&mut log, op).await;
                model.check(&mut log).await;
            }
            drop((log, sm, app));
            let (mut log, _sm, _app) = open(&dir);
            model.check(&mut log).await;
        });
    }
}

#[derive(Debug, Clone)]
enum LogOp {
    Append(u64),
    /// Truncate after the entry at this fraction (in 1/100) of the live range.
    TruncateAt(u8),
    PurgeAt(u8),
}

fn log_op() -> impl Strategy<Value = LogOp> {
    prop_oneof![
        3 => (1u64..8).prop_map(LogOp::Append),
        1 => (0u8..=100).prop_map(LogOp::TruncateAt),
        1 => (0u8..=100).prop_map(LogOp::PurgeAt),
    ]
}

/// The reference: which indexes exist, with which term, and what was purged.
#[derive(Default)]
struct LogModel {
    purged: Option<(u64, u64)>,
    /// (index, term) of live entries, ascending and contiguous.
    live: Vec<(u64, u64)>,
    term: u64,
}

impl LogModel {
    fn last(&self) -> Option<(u64, u64)> {
        self.live.last().copied().or(self.purged)
    }

    fn pick(&self, fraction: u8) -> Option<(u64, u64)> {
        if self.live.is_empty() {
            return None;
        }
        let at = (self.live.len() - 1) * fraction as usize / 100;
        Some(self.live[at])
    }

    async fn apply(&mut self, log: &mut LogStore<TestConfig>, op: LogOp) {
        match op {
            LogOp::Append(n) => {
                // A new term after every change of direction, like a new leader would.
                self.term += 1;
                let start = self.last().map(|(i, _)| i + 1).unwrap_or(1);
                let entries: Vec<Entry> = (start..start + n)
                    .map(|i| entry(self.term, i, KvCommand::Set { key: format!("k{i}"), value: String::new() }))
                    .collect();
                append(log, entries).await;
                self.live.extend((start..start + n).map(|i| (i, self.term)));
            }
            LogOp::TruncateAt(f) => {
                if let Some((index, term)) = self.pick(f) {
                    log.truncate_after(Some(log_id::<TestConfig>(term, 1, index))).await.unwrap();
                    self.live.retain(|(i, _)| *i <= index);
                }
            }
            LogOp::PurgeAt(f) => {
                if let Some((index, term)) = self.pick(f) {
                    log.purge(log_id::<TestConfig>(term, 1, index)).await.unwrap();
                    self.live.retain(|(i, _)| *i > index);
                    self.purged = Some((index, term));
                }
            }
        }
    }

    async fn check(&self, log: &mut LogStore<TestConfig>) {
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|id| id.index()), self.purged.map(|p| p.0));
        assert_eq!(state.last_log_id.map(|id| id.index()), self.last().map(|p| p.0));
        let entries = log.get_log_reader().await.try_get_log_entries(0..u64::MAX).await.unwrap();
        let found: Vec<(u64, u64)> = entries.iter().map(|e| (e.index(), e.log_id().leader_id.term)).collect();
        assert_eq!(found, self.live, "log content differs from the model");
        for pair in found.windows(2) {
            assert_eq!(pair[0].0 + 1, pair[1].0, "hole in the log");
        }
        if let (Some(first), Some((purged, _))) = (found.first(), self.purged) {
            assert_eq!(first.0, purged + 1, "gap after the purged prefix");
        }
    }
}
