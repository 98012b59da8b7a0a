//! Openraft log and state-machine storage on one RocksDB database.
//!
//! - [`LogStore`] implements openraft's `RaftLogStorage`: appends are written at once (so they are
//!   readable when `append` returns) and acknowledged by a group-commit thread after one synced
//!   write covers every append waiting at that moment.
//! - [`StateMachine`] implements `RaftStateMachine` around an application supplied through the
//!   small [`StateMachineApp`] trait, so the application never sees openraft's types.
//!
//! Column families: `raft_meta` (vote, committed, last purged), `raft_log` (big-endian index
//! keys), `sm_meta` (last applied, last membership, current snapshot), `sm_data` (application).
//! All four share one WAL, so the order of writes across them survives a crash.

mod app;
mod codec;
mod compactor;
mod db;
mod error;
mod group_commit;
mod log_store;
mod observe;
mod snapshot;
mod state_machine;
pub mod testkit;
mod types;

pub use app::{AppError, DataOp, DataWrites, StateMachineApp};
pub use db::{FatalPolicy, StoreOptions};
pub use error::StoreError;
pub use group_commit::GroupCommitStats;
pub use log_store::LogStore;
pub use observe::{Observer, StoreObserver};
pub use snapshot::{Rows, SnapshotBuilder, decode_rows, encode_rows};
pub use state_machine::StateMachine;
pub use types::StoreTypes;

use std::path::Path;
use std::sync::{Arc, RwLock};

/// Opens (or creates) the store at `path` and returns its two openraft halves.
///
/// The application's in-memory view is rebuilt from the durable data before this returns.
pub fn open<C, A>(
    path: &Path,
    app: Arc<RwLock<A>>,
    options: StoreOptions,
) -> Result<(LogStore<C>, StateMachine<C, A>), StoreError>
where
    C: StoreTypes,
    A: StateMachineApp<Command = C::D, Response = C::R>,
{
    let db = db::Db::open(path, options)?;
    let log = LogStore::new(db.clone());
    let sm = StateMachine::open(db, app)?;
    Ok((log, sm))
}
