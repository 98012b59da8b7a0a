//! Fuzz tests of everything the store decodes, run by `cargo test` within a small budget:
//!
//! 1. snapshot data (`decode_rows`): arbitrary and mutated encodings decode to rows or an error,
//!    never a panic, and what decodes is exactly what `encode_rows` writes for those rows;
//! 2. the values the store keeps (log entries, vote, committed, last purged, last applied,
//!    membership), decoded the way the store decodes them;
//! 3. a store whose RocksDB was corrupted (values mutated, keys changed, rows dropped or added)
//!    opens and answers every read with a value or an error, never a panic; installing a
//!    mutated snapshot does too.
//!
//! Inputs are mostly mutations of valid encodings (bit flips, MessagePack markers, huge lengths,
//! truncation, insertion, duplication, splicing).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, RwLock};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::common::{blank_ent, log_id, membership_ent};
use openraft::type_config::TypeConfigExt;
use openraft::type_config::alias::{EntryOf, LogIdOf, StoredMembershipOf, VoteOf};
use openraft::{BasicNode, Membership, StoredMembership};
use plum_raft_store::testkit::{KvApp, KvCommand, TestConfig};
use plum_raft_store::{FatalPolicy, LogStore, StateMachine, StoreOptions, decode_rows, encode_rows};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use rocksdb::{DB, IteratorMode, Options};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Mutations of valid encodings.

// The mutations and the bounded runner are shared: `plum-fuzzing`.
use plum_fuzzing::{Mutation, fuzz, mutate, mutation, near};

// ---------------------------------------------------------------------------------------------
// Seeds.

type Entry = EntryOf<TestConfig>;

fn lid(term: u64, index: u64) -> LogIdOf<TestConfig> {
    log_id::<TestConfig>(term, 1, index)
}

fn set(key: &str, value: &str) -> KvCommand {
    KvCommand::Set { key: key.into(), value: value.into() }
}

fn membership() -> Membership<u64, BasicNode> {
    let nodes: Vec<(u64, BasicNode)> =
        (1..=3).map(|id| (id, BasicNode { addr: format!("127.0.0.1:700{id}") })).collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes.into_iter().collect::<std::collections::BTreeMap<_, _>>())
        .expect("membership")
}

fn entries() -> Vec<Entry> {
    vec![
        blank_ent::<TestConfig>(1, 1, 1),
        membership_ent::<TestConfig>(1, 1, 2, vec![BTreeSet::from([1])]),
        Entry::new_normal(lid(1, 3), set("color", "red")),
        Entry::new_normal(lid(2, 4), KvCommand::Delete { key: "color".into() }),
        Entry::new_normal(lid(2, 5), set("k\u{e9}y", "")),
        Entry::new_membership(lid(2, 6), membership()),
    ]
}

fn named<T: serde::Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).expect("seed encodes")
}

fn row_sets() -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    vec![
        vec![],
        vec![(b"a".to_vec(), b"1".to_vec())],
        vec![(b"color".to_vec(), b"red".to_vec()), (b"shape".to_vec(), vec![]), (vec![], b"x".to_vec())],
        (0..20).map(|i| (format!("key{i:02}").into_bytes(), vec![i as u8; i])).collect(),
    ]
}

// ---------------------------------------------------------------------------------------------
// 1. Snapshot data.

#[test]
fn snapshot_data_decodes_exactly_or_fails() {
    let seeds: Vec<Vec<u8>> = row_sets().iter().map(|r| encode_rows(r)).collect();
    fuzz("decode_rows", 4000, near(seeds), |bytes| {
        if let Ok(rows) = decode_rows(&bytes) {
            prop_assert_eq!(encode_rows(&rows), bytes, "decoded rows encode to other bytes");
        }
        Ok(())
    });
}

/// Regression guard: a header that announces 2^64 - 1 rows is an error at once, without
/// reserving memory for them.
#[test]
fn a_huge_row_count_is_refused() {
    let mut bytes = b"PSN1".to_vec();
    bytes.extend_from_slice(&u64::MAX.to_be_bytes());
    assert!(decode_rows(&bytes).is_err());
    bytes.extend_from_slice(&[0xff; 4]);
    assert!(decode_rows(&bytes).is_err());
}

// ---------------------------------------------------------------------------------------------
// 2. Values the store keeps, decoded as the store decodes them (`codec::decode` is
//    `rmp_serde::from_slice`).

#[test]
fn stored_values_decode_or_fail() {
    let mut seeds: Vec<Vec<u8>> = entries().iter().map(named).collect();
    seeds.extend([
        named(&VoteOf::<TestConfig>::new(3, 2)),
        named(&VoteOf::<TestConfig>::new_committed(4, 1)),
        named(&lid(2, 9)),
        named(&Some(lid(2, 9))),
        named(&StoredMembershipOf::<TestConfig>::new(Some(lid(2, 6)), membership())),
        named(&StoredMembership::<_, u64, BasicNode>::default() as &StoredMembershipOf<TestConfig>),
    ]);
    fuzz("stored values", 4000, near(seeds), |bytes| {
        if let Ok(entry) = rmp_serde::from_slice::<Entry>(&bytes) {
            let _ = (entry.index(), entry.log_id(), entry.get_membership());
            rmp_serde::from_slice::<Entry>(&named(&entry)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let _ = rmp_serde::from_slice::<VoteOf<TestConfig>>(&bytes);
        let _ = rmp_serde::from_slice::<LogIdOf<TestConfig>>(&bytes);
        let _ = rmp_serde::from_slice::<Option<LogIdOf<TestConfig>>>(&bytes);
        if let Ok(m) = rmp_serde::from_slice::<StoredMembershipOf<TestConfig>>(&bytes) {
            let _ = (m.membership().voter_ids().count(), m.membership().nodes().count(), m.log_id());
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// 3. A corrupted database.

const COLUMN_FAMILIES: [&str; 4] = ["raft_meta", "raft_log", "sm_meta", "sm_data"];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn open_store(path: &Path) -> Result<(LogStore<TestConfig>, StateMachine<TestConfig, KvApp>), String> {
    let app = Arc::new(RwLock::new(KvApp::default()));
    plum_raft_store::open(path, app, StoreOptions { fatal: FatalPolicy::ReturnError, ..StoreOptions::default() })
        .map_err(|e| e.to_string())
}

/// A store with something in every key it writes: vote, committed, a purged prefix, log
/// entries of every kind, applied commands with a membership, a snapshot.
fn pristine(dir: &Path) {
    runtime().block_on(async {
        let (mut log, mut sm) = open_store(dir).expect("open");
        log.save_vote(&VoteOf::<TestConfig>::new_committed(2, 1)).await.unwrap();
        let (tx, rx) = TestConfig::oneshot();
        log.append(entries(), IOFlushed::signal(tx)).await.unwrap();
        rx.await.unwrap().unwrap();
        log.save_committed(Some(lid(2, 5))).await.unwrap();
        let applied = entries().into_iter().take(5).map(|e| Ok((e, None)));
        sm.apply(futures::stream::iter(applied)).await.unwrap();
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        log.purge(lid(1, 1)).await.unwrap();
    });
}

fn copy_dir(from: &Path, to: &Path) {
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        if item.file_type().unwrap().is_file() {
            std::fs::copy(item.path(), to.join(item.file_name())).unwrap();
        }
    }
}

/// One change to the raw database.
#[derive(Debug, Clone)]
enum DbChange {
    /// Mutates the value of one key (of every column family's keys, in order).
    Value(Index, Vec<Mutation>),
    /// Moves a value to a mutated key.
    Key(Index, Vec<Mutation>),
    Drop(Index),
    /// Gives one key the value of another.
    Copy(Index, Index),
}

fn db_change() -> impl Strategy<Value = DbChange> {
    prop_oneof![
        6 => (any::<Index>(), vec(mutation(), 1..4)).prop_map(|(i, m)| DbChange::Value(i, m)),
        1 => (any::<Index>(), vec(mutation(), 1..3)).prop_map(|(i, m)| DbChange::Key(i, m)),
        1 => any::<Index>().prop_map(DbChange::Drop),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| DbChange::Copy(a, b)),
    ]
}

fn corrupt(path: &Path, changes: &[DbChange]) {
    let db = DB::open_cf(&Options::default(), path, COLUMN_FAMILIES).expect("raw open");
    let all = |db: &DB| -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for name in COLUMN_FAMILIES {
            let cf = db.cf_handle(name).unwrap();
            for item in db.iterator_cf(cf, IteratorMode::Start) {
                let (k, v) = item.unwrap();
                out.push((name, k.into_vec(), v.into_vec()));
            }
        }
        out
    };
    for change in changes {
        let rows = all(&db);
        if rows.is_empty() {
            break;
        }
        let values: Vec<Vec<u8>> = rows.iter().map(|r| r.2.clone()).collect();
        let row = |i: &Index| &rows[i.index(rows.len())];
        match change {
            DbChange::Value(i, m) => {
                let (cf, k, v) = row(i);
                db.put_cf(db.cf_handle(cf).unwrap(), k, mutate(v, m, &values)).unwrap();
            }
            DbChange::Key(i, m) => {
                let (cf, k, v) = row(i);
                let cf = db.cf_handle(cf).unwrap();
                db.delete_cf(cf, k).unwrap();
                db.put_cf(cf, mutate(k, m, &values), v).unwrap();
            }
            DbChange::Drop(i) => {
                let (cf, k, _) = row(i);
                db.delete_cf(db.cf_handle(cf).unwrap(), k).unwrap();
            }
            DbChange::Copy(a, b) => {
                let (cf, k, _) = row(a);
                db.put_cf(db.cf_handle(cf).unwrap(), k, &row(b).2).unwrap();
            }
        }
    }
}

/// Every read the store answers openraft, after opening a corrupted database.
async fn read_everything(path: &Path) {
    let Ok((mut log, mut sm)) = open_store(path) else { return };
    let _ = log.read_vote().await;
    let _ = log.read_committed().await;
    let _ = log.get_log_state().await;
    let _ = log.try_get_log_entries(0..u64::MAX).await;
    let _ = log.get_log_reader().await.try_get_log_entries(3..5).await;
    let _ = sm.applied_state().await;
    let _ = sm.get_current_snapshot().await;
    let _ = sm.get_snapshot_builder().await.build_snapshot().await;
}

#[test]
fn a_corrupted_store_opens_and_reads_or_fails() {
    let template = TempDir::new().unwrap();
    pristine(template.path());
    let rt = runtime();
    fuzz("corrupted store", 120, vec(db_change(), 1..4), |changes| {
        let dir = TempDir::new().unwrap();
        copy_dir(template.path(), dir.path());
        corrupt(dir.path(), &changes);
        rt.block_on(read_everything(dir.path()));
        Ok(())
    });
}

/// `install_snapshot` with mutated data (from a peer): installed or refused, never a panic.
#[test]
fn mutated_snapshots_install_or_fail() {
    let dir = TempDir::new().unwrap();
    pristine(dir.path());
    let rt = runtime();
    let (_log, sm) = open_store(dir.path()).expect("open");
    let mut sm = sm;
    let snapshot = rt.block_on(sm.get_current_snapshot()).unwrap().expect("a snapshot");
    let mut seeds = vec![snapshot.snapshot.clone()];
    seeds.extend(row_sets().iter().map(|r| encode_rows(r)));
    let sm = std::sync::Mutex::new(sm);
    fuzz("install snapshot", 300, near(seeds), |data| {
        let mut sm = sm.lock().unwrap_or_else(|p| p.into_inner());
        let _ = rt.block_on(sm.install_snapshot(&snapshot.meta, data));
        let _ = rt.block_on(sm.applied_state());
        Ok(())
    });
}
