//! The RocksDB handle shared by the log store and the state machine.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};

use crate::error::StoreError;
use crate::observe::Observer;

pub(crate) const CF_RAFT_META: &str = "raft_meta";
pub(crate) const CF_LOG: &str = "raft_log";
pub(crate) const CF_SM_META: &str = "sm_meta";
pub(crate) const CF_SM_DATA: &str = "sm_data";
const ALL_CFS: [&str; 4] = [CF_RAFT_META, CF_LOG, CF_SM_META, CF_SM_DATA];

/// What the store does when storage fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FatalPolicy {
    /// Log the failure and exit the process (code 70): a replica must not limp on after its
    /// disk lied to it. This is the default.
    #[default]
    Exit,
    /// Only return the error to openraft (which then stops the Raft node). For tests.
    ReturnError,
}

#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    pub fatal: FatalPolicy,
    /// Told how long appends, applies and snapshots took (the controller's metrics).
    pub observer: Observer,
}

pub(crate) struct Db {
    pub(crate) db: DB,
    fatal: FatalPolicy,
    pub(crate) observer: Observer,
}

impl Db {
    pub(crate) fn open(path: &Path, options: StoreOptions) -> Result<Arc<Db>, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // A torn WAL tail after a crash is cut at the last whole record: a consistent prefix.
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        opts.set_keep_log_file_num(4);
        let cfs = ALL_CFS.iter().map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(StoreError::rocks("open"))?;
        for name in ALL_CFS {
            if db.cf_handle(name).is_none() {
                return Err(StoreError::MissingColumnFamily(name));
            }
        }
        tracing::info!(path = %path.display(), "raft store opened");
        Ok(Arc::new(Db { db, fatal: options.fatal, observer: options.observer }))
    }

    pub(crate) fn cf(&self, name: &'static str) -> &ColumnFamily {
        // Every family was checked in `open`.
        self.db.cf_handle(name).expect("column family checked at open")
    }

    /// Turns a storage failure into the error openraft sees, after applying the fatal policy.
    pub(crate) fn fail(&self, err: StoreError) -> io::Error {
        tracing::error!(error = %err, "raft store: storage failure");
        if self.fatal == FatalPolicy::Exit {
            tracing::error!("raft store: exiting because storage failed (exit code 70)");
            eprintln!("plum raft store: fatal storage failure: {err}");
            std::process::exit(70);
        }
        io::Error::from(err)
    }

    pub(crate) fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.cf(cf), key).map_err(StoreError::rocks("get"))
    }

    /// Writes without waiting for the disk: readable at once, durable with the next synced write.
    pub(crate) fn write_buffered(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.db.write(batch).map_err(StoreError::rocks("write"))
    }

    /// Writes and syncs the WAL before returning; every earlier write is durable too.
    pub(crate) fn write_synced(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).map_err(StoreError::rocks("synced write"))
    }
}
