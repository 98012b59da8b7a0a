//! How long storage work took, told to the application (for its metrics) without the store
//! knowing what metrics are. Every method has an empty default; all are called on the store's
//! own threads and tasks, so they must return at once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub trait StoreObserver: Send + Sync {
    /// `entries` appended to the log became durable (the group commit's synced write) `took`
    /// after `append` was called.
    fn appended(&self, entries: usize, took: Duration) {
        let _ = (entries, took);
    }

    /// One chunk of `entries` was applied: the application's memory, then one RocksDB batch.
    fn applied(&self, entries: usize, took: Duration) {
        let _ = (entries, took);
    }

    /// A snapshot was built from this replica's state machine.
    fn snapshot_built(&self) {}

    /// A snapshot received from the leader replaced this replica's state machine.
    fn snapshot_installed(&self) {}
}

/// The observer a store was opened with, if any (`Debug` for [`crate::StoreOptions`]).
#[derive(Clone, Default)]
pub struct Observer(pub Option<Arc<dyn StoreObserver>>);

impl Observer {
    pub(crate) fn get(&self) -> Option<&dyn StoreObserver> {
        self.0.as_deref()
    }
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Observer(Some)" } else { "Observer(None)" })
    }
}
