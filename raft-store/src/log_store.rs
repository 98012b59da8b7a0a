//! openraft's `RaftLogStorage` on the `raft_log` and `raft_meta` column families.

use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::time::Instant;

use openraft::OptionalSend;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::alias::{LogIdOf, VoteOf};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::codec::{decode, encode, index_key, key_index};
use crate::compactor::Compactor;
use crate::db::{CF_LOG, CF_RAFT_META, Db};
use crate::error::StoreError;
use crate::group_commit::{GroupCommit, GroupCommitStats};
use crate::types::StoreTypes;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// The Raft log. Cheap to clone: every clone shares the database and the group-commit thread.
pub struct LogStore<C> {
    db: Arc<Db>,
    group_commit: Arc<GroupCommit>,
    compactor: Arc<Compactor>,
    _types: PhantomData<fn() -> C>,
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            db: self.db.clone(),
            group_commit: self.group_commit.clone(),
            compactor: self.compactor.clone(),
            _types: PhantomData,
        }
    }
}

impl<C: StoreTypes> LogStore<C> {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        LogStore {
            group_commit: Arc::new(GroupCommit::start(db.clone())),
            compactor: Arc::new(Compactor::start(db.clone())),
            db,
            _types: PhantomData,
        }
    }

    /// How many synced writes acknowledged how many appends, for benchmarks and tests.
    pub fn group_commit_stats(&self) -> Arc<GroupCommitStats> {
        self.group_commit.stats()
    }

    fn meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &'static [u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        match self.db.get(CF_RAFT_META, key)? {
            Some(bytes) => Ok(Some(decode(what, &bytes)?)),
            None => Ok(None),
        }
    }

    fn read_entries<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<C::Entry>, StoreError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => match i.checked_add(1) {
                Some(i) => i,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let start_key = index_key(start);
        let iter = self.db.db.iterator_cf(self.db.cf(CF_LOG), IteratorMode::From(&start_key, Direction::Forward));
        let mut entries = Vec::new();
        for item in iter {
            let (key, value) = item.map_err(StoreError::rocks("read log"))?;
            let index = key_index(&key)?;
            if !range.contains(&index) {
                break;
            }
            let entry: C::Entry = decode("log entry", &value)?;
            if entry.index() != index {
                return Err(StoreError::Corrupt {
                    what: "log entry",
                    detail: format!("key {index} holds entry {}", entry.index()),
                });
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    fn last_log_id(&self) -> Result<Option<LogIdOf<C>>, StoreError> {
        let mut iter = self.db.db.iterator_cf(self.db.cf(CF_LOG), IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(StoreError::rocks("read last log"))?;
                let entry: C::Entry = decode("log entry", &value)?;
                Ok(Some(entry.log_id()))
            }
        }
    }

    fn put_meta_synced<T: serde::Serialize>(
        &self,
        key: &'static [u8],
        what: &'static str,
        value: &T,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.db.cf(CF_RAFT_META), key, encode(what, value)?);
        self.db.write_synced(batch)
    }
}

impl<C: StoreTypes> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        self.read_entries(range).map_err(|e| self.db.fail(e))
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        self.meta(KEY_VOTE, "vote").map_err(|e| self.db.fail(e))
    }
}

impl<C: StoreTypes> RaftLogStorage<C> for LogStore<C> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let last_purged: Option<LogIdOf<C>> = self.meta(KEY_LAST_PURGED, "last purged").map_err(|e| self.db.fail(e))?;
        let last = self.last_log_id().map_err(|e| self.db.fail(e))?;
        Ok(LogState { last_log_id: last.or_else(|| last_purged.clone()), last_purged_log_id: last_purged })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        // Synced before returning: a vote that could be forgotten allows two leaders in a term.
        let this = self.clone();
        let vote = vote.clone();
        let result = tokio::task::spawn_blocking(move || this.put_meta_synced(KEY_VOTE, "vote", &vote))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))
            .and_then(|r| r);
        result.map_err(|e| self.db.fail(e))
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        // Not synced: it only lets a restarted replica re-apply sooner; losing it is safe.
        let mut batch = WriteBatch::default();
        let cf = self.db.cf(CF_RAFT_META);
        match committed {
            Some(c) => batch.put_cf(cf, KEY_COMMITTED, encode("committed", &c).map_err(|e| self.db.fail(e))?),
            None => batch.delete_cf(cf, KEY_COMMITTED),
        }
        self.db.write_buffered(batch).map_err(|e| self.db.fail(e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        self.meta(KEY_COMMITTED, "committed").map_err(|e| self.db.fail(e))
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = Instant::now();
        let mut batch = WriteBatch::default();
        let cf = self.db.cf(CF_LOG);
        let mut count = 0;
        for entry in entries {
            let value = encode("log entry", &entry).map_err(|e| self.db.fail(e))?;
            batch.put_cf(cf, index_key(entry.index()), value);
            count += 1;
        }
        // Readable now; acknowledged to openraft only after the group commit's synced write.
        self.db.write_buffered(batch).map_err(|e| self.db.fail(e))?;
        let observer = self.db.observer.clone();
        self.group_commit.after_sync(Box::new(move |result| {
            if let Some(o) = observer.get() {
                o.appended(count, started.elapsed());
            }
            callback.io_completed(result)
        }));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.map(|id| id.index() + 1).unwrap_or(0);
        tracing::debug!(from, "truncate raft log");
        // One range delete: the log never has a hole, whether or not it reaches the disk.
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.db.cf(CF_LOG), index_key(from), index_key(u64::MAX));
        batch.delete_cf(self.db.cf(CF_LOG), index_key(u64::MAX));
        self.db.write_buffered(batch).map_err(|e| self.db.fail(e))
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let upto = log_id.index() + 1;
        tracing::debug!(upto, "purge raft log");
        // Last-purged and the deletion in one batch: a crash leaves both or neither.
        let mut batch = WriteBatch::default();
        let value = encode("last purged", &log_id).map_err(|e| self.db.fail(e))?;
        batch.put_cf(self.db.cf(CF_RAFT_META), KEY_LAST_PURGED, value);
        batch.delete_range_cf(self.db.cf(CF_LOG), index_key(0), index_key(upto));
        self.db.write_buffered(batch).map_err(|e| self.db.fail(e))?;
        self.compactor.compact_below(upto);
        Ok(())
    }
}
