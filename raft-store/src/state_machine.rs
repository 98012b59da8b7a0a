//! openraft's `RaftStateMachine` around a [`StateMachineApp`].

use std::io;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use futures::{Stream, StreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine, Snapshot};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{OptionalSend, StoredMembership};
use rocksdb::{IteratorMode, WriteBatch};

use crate::app::{DataOp, DataWrites, StateMachineApp};
use crate::codec::{decode, encode};
use crate::db::{CF_SM_DATA, CF_SM_META, Db};
use crate::error::StoreError;
use crate::snapshot::{
    KEY_LAST_APPLIED, KEY_MEMBERSHIP, KEY_SNAPSHOT, SnapshotBuilder, StoredSnapshot, decode_rows, read_current,
};
use crate::types::StoreTypes;

/// Entries applied per RocksDB batch at most; bounds the batch and the time readers wait.
const MAX_APPLY_BATCH: usize = 512;

pub struct StateMachine<C: StoreTypes, A> {
    db: Arc<Db>,
    app: Arc<RwLock<A>>,
    last_applied: Option<LogIdOf<C>>,
    last_membership: StoredMembershipOf<C>,
    current_snapshot_lock: Arc<Mutex<()>>,
    _types: PhantomData<fn() -> C>,
}

impl<C, A> StateMachine<C, A>
where
    C: StoreTypes,
    A: StateMachineApp<Command = C::D, Response = C::R>,
{
    pub(crate) fn open(db: Arc<Db>, app: Arc<RwLock<A>>) -> Result<Self, StoreError> {
        let last_applied: Option<LogIdOf<C>> = match db.get(CF_SM_META, KEY_LAST_APPLIED)? {
            Some(b) => Some(decode("last applied", &b)?),
            None => None,
        };
        let last_membership: StoredMembershipOf<C> = match db.get(CF_SM_META, KEY_MEMBERSHIP)? {
            Some(b) => decode("membership", &b)?,
            None => StoredMembership::default(),
        };
        let sm = StateMachine {
            db,
            app,
            last_applied,
            last_membership,
            current_snapshot_lock: Arc::new(Mutex::new(())),
            _types: PhantomData,
        };
        sm.restore_app()?;
        Ok(sm)
    }

    /// The application, shared with readers of its in-memory view.
    pub fn app(&self) -> Arc<RwLock<A>> {
        self.app.clone()
    }

    fn applied_index(&self) -> u64 {
        self.last_applied.as_ref().map(|id| id.index()).unwrap_or(0)
    }

    fn restore_app(&self) -> Result<(), StoreError> {
        let mut rows = Vec::new();
        for item in self.db.db.iterator_cf(self.db.cf(CF_SM_DATA), IteratorMode::Start) {
            let (k, v) = item.map_err(StoreError::rocks("scan data"))?;
            rows.push((k.into_vec(), v.into_vec()));
        }
        let mut app = self.app.write().unwrap_or_else(|p| p.into_inner());
        app.restore(self.applied_index(), &mut rows.into_iter()).map_err(|e| StoreError::Restore(e.to_string()))?;
        tracing::info!(applied_index = self.applied_index(), "state machine view restored");
        Ok(())
    }

    /// Applies one ready chunk of entries: memory first, then one atomic RocksDB batch holding
    /// their data changes and the new last-applied, then the client responses.
    fn apply_chunk(&mut self, chunk: Vec<EntryResponder<C>>) -> Result<(), StoreError> {
        let (started, count) = (Instant::now(), chunk.len());
        let mut writes = DataWrites::default();
        let mut responders = Vec::with_capacity(chunk.len());
        let mut membership_changed = false;
        {
            let mut app = self.app.write().unwrap_or_else(|p| p.into_inner());
            for (entry, responder) in chunk {
                let log_id = entry.log_id();
                let response = match C::app_data(&entry) {
                    Some(command) => app.apply(log_id.index(), command, &mut writes),
                    None => {
                        if let Some(membership) = entry.get_membership() {
                            self.last_membership = StoredMembership::new(Some(log_id.clone()), membership);
                            membership_changed = true;
                        }
                        app.skip(log_id.index())
                    }
                };
                self.last_applied = Some(log_id);
                responders.push((responder, response));
            }
        }
        let mut batch = WriteBatch::default();
        let data = self.db.cf(CF_SM_DATA);
        for op in writes.into_ops() {
            match op {
                DataOp::Put(k, v) => batch.put_cf(data, k, v),
                DataOp::Delete(k) => batch.delete_cf(data, k),
            }
        }
        let meta = self.db.cf(CF_SM_META);
        batch.put_cf(meta, KEY_LAST_APPLIED, encode("last applied", &self.last_applied)?);
        if membership_changed {
            batch.put_cf(meta, KEY_MEMBERSHIP, encode("membership", &self.last_membership)?);
        }
        // Not synced: the log is durable, and a replica that loses this write re-applies it.
        self.db.write_buffered(batch)?;
        if let Some(o) = self.db.observer.get() {
            o.applied(count, started.elapsed());
        }
        for (responder, response) in responders {
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    fn install_blocking(&mut self, meta: &SnapshotMetaOf<C>, data: Vec<u8>) -> Result<(), StoreError> {
        // Validate everything before touching the database.
        let rows = decode_rows(&data)?;
        let stored = StoredSnapshot::<C> {
            last_log_id: meta.last_log_id.clone(),
            last_membership: meta.last_membership.clone(),
            data,
        };
        let mut batch = WriteBatch::default();
        let data_cf = self.db.cf(CF_SM_DATA);
        for item in self.db.db.iterator_cf(data_cf, IteratorMode::Start) {
            let (k, _) = item.map_err(StoreError::rocks("scan data"))?;
            batch.delete_cf(data_cf, k);
        }
        for (k, v) in &rows {
            batch.put_cf(data_cf, k, v);
        }
        let meta_cf = self.db.cf(CF_SM_META);
        batch.put_cf(meta_cf, KEY_LAST_APPLIED, encode("last applied", &meta.last_log_id)?);
        batch.put_cf(meta_cf, KEY_MEMBERSHIP, encode("membership", &meta.last_membership)?);
        batch.put_cf(meta_cf, KEY_SNAPSHOT, encode("snapshot", &stored)?);
        {
            let _guard = self.current_snapshot_lock.lock().unwrap_or_else(|p| p.into_inner());
            // One synced batch: after a crash the old state or the new one, never a mix.
            self.db.write_synced(batch)?;
        }
        self.last_applied = meta.last_log_id.clone();
        self.last_membership = meta.last_membership.clone();
        let mut app = self.app.write().unwrap_or_else(|p| p.into_inner());
        app.restore(self.applied_index(), &mut rows.into_iter()).map_err(|e| StoreError::Restore(e.to_string()))?;
        tracing::info!(last_log_id = ?meta.last_log_id, "snapshot installed");
        if let Some(o) = self.db.observer.get() {
            o.snapshot_installed();
        }
        Ok(())
    }
}

impl<C, A> RaftStateMachine<C> for StateMachine<C, A>
where
    C: StoreTypes,
    A: StateMachineApp<Command = C::D, Response = C::R>,
{
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SnapshotBuilder<C>;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        Ok((self.last_applied.clone(), self.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        let mut chunks = entries.ready_chunks(MAX_APPLY_BATCH);
        while let Some(chunk) = chunks.next().await {
            let chunk: Vec<EntryResponder<C>> = chunk.into_iter().collect::<Result<_, _>>()?;
            self.apply_chunk(chunk).map_err(|e| self.db.fail(e))?;
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { db: self.db.clone(), current_lock: self.current_snapshot_lock.clone(), _types: PhantomData }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<C>, snapshot: Vec<u8>) -> Result<(), io::Error> {
        // Blocking RocksDB work of bounded size (one snapshot); openraft awaits it anyway.
        self.install_blocking(meta, snapshot).map_err(|e| self.db.fail(e))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Vec<u8>>>, io::Error> {
        let current = read_current::<C>(&self.db).map_err(|e| self.db.fail(e))?;
        Ok(current.map(|s| Snapshot { meta: s.meta(), snapshot: s.data }))
    }
}
