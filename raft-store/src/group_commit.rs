//! Group commit: one synced WAL write acknowledges every append waiting at that moment.
//!
//! `append` writes its entries without syncing (so they are readable when it returns) and then
//! queues its completion here. A single thread takes everything queued, performs one synced
//! write (which makes every earlier WAL record durable), then completes them all. Under load the
//! queue fills while the previous sync runs, so one fsync covers many appends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;

use rocksdb::WriteBatch;

use crate::db::{CF_RAFT_META, Db};

type Completion = Box<dyn FnOnce(Result<(), std::io::Error>) + Send>;

/// Counters that show how many appends each sync covered.
#[derive(Debug, Default)]
pub struct GroupCommitStats {
    pub syncs: AtomicU64,
    pub completions: AtomicU64,
}

pub(crate) struct GroupCommit {
    queue: Option<mpsc::Sender<Completion>>,
    thread: Option<thread::JoinHandle<()>>,
    stats: Arc<GroupCommitStats>,
}

const SYNC_MARKER_KEY: &[u8] = b"group_commit_seq";

impl GroupCommit {
    pub(crate) fn start(db: Arc<Db>) -> GroupCommit {
        let (queue, waiting) = mpsc::channel::<Completion>();
        let stats = Arc::new(GroupCommitStats::default());
        let thread_stats = stats.clone();
        let thread = thread::Builder::new()
            .name("raft-group-commit".into())
            .spawn(move || run(db, waiting, thread_stats))
            .expect("spawn group commit thread");
        GroupCommit { queue: Some(queue), thread: Some(thread), stats }
    }

    /// Completes `done` once everything written before this call is durable.
    pub(crate) fn after_sync(&self, done: Completion) {
        let queue = self.queue.as_ref().expect("queue lives until drop");
        if let Err(mpsc::SendError(done)) = queue.send(done) {
            done(Err(std::io::Error::other("group commit thread has stopped")));
        }
    }

    pub(crate) fn stats(&self) -> Arc<GroupCommitStats> {
        self.stats.clone()
    }
}

impl Drop for GroupCommit {
    /// Completes what is queued and joins the thread, so the database is closed before the
    /// process exits (RocksDB must not outlive its own static state).
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(db: Arc<Db>, waiting: mpsc::Receiver<Completion>, stats: Arc<GroupCommitStats>) {
    let mut seq: u64 = 0;
    // Exits when every `GroupCommit` handle (every clone of the log store) is gone.
    while let Ok(first) = waiting.recv() {
        let mut group = vec![first];
        group.extend(waiting.try_iter());
        seq += 1;
        // A synced write of a tiny marker: RocksDB syncs the WAL up to and including it, which
        // covers every append written before the completions were queued.
        let mut batch = WriteBatch::default();
        batch.put_cf(db.cf(CF_RAFT_META), SYNC_MARKER_KEY, seq.to_be_bytes());
        let result = db.write_synced(batch);
        stats.syncs.fetch_add(1, Ordering::Relaxed);
        stats.completions.fetch_add(group.len() as u64, Ordering::Relaxed);
        match result {
            Ok(()) => group.into_iter().for_each(|done| done(Ok(()))),
            Err(err) => {
                let err = db.fail(err);
                let msg = err.to_string();
                group.into_iter().for_each(|done| done(Err(std::io::Error::other(msg.clone()))));
            }
        }
    }
    tracing::debug!(syncs = seq, "group commit thread stopped");
}
