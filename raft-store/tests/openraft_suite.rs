//! openraft's own storage test suite, run against the RocksDB store.

use std::sync::{Arc, RwLock};

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use plum_raft_store::testkit::{KvApp, TestConfig};
use plum_raft_store::{FatalPolicy, LogStore, StateMachine, StoreOptions};
use tempfile::TempDir;

struct RocksBuilder;

impl StoreBuilder<TestConfig, LogStore<TestConfig>, StateMachine<TestConfig, KvApp>, TempDir> for RocksBuilder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore<TestConfig>, StateMachine<TestConfig, KvApp>), StorageError<TestConfig>> {
        let dir = TempDir::new().expect("temp dir");
        let options = StoreOptions { fatal: FatalPolicy::ReturnError, ..StoreOptions::default() };
        let (log, sm) =
            plum_raft_store::open(dir.path(), Arc::new(RwLock::new(KvApp::default())), options).expect("open store");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes() {
    Suite::test_all(RocksBuilder).await.expect("openraft storage suite");
}
