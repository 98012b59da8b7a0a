//! Background compaction of purged log ranges, so deleted entries stop costing disk and reads.
//! Runs on its own thread: a compaction may take a while and must not delay appends or syncs.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

use crate::codec::index_key;
use crate::db::{CF_LOG, Db};

pub(crate) struct Compactor {
    requests: Option<mpsc::Sender<u64>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Compactor {
    pub(crate) fn start(db: Arc<Db>) -> Compactor {
        let (requests, incoming) = mpsc::channel::<u64>();
        let thread = thread::Builder::new()
            .name("raft-log-compactor".into())
            .spawn(move || {
                while let Ok(mut upto) = incoming.recv() {
                    // Several purges queued while compacting: one compaction covers them all.
                    upto = incoming.try_iter().fold(upto, u64::max);
                    let end = index_key(upto);
                    db.db.compact_range_cf(db.cf(CF_LOG), None::<&[u8]>, Some(&end[..]));
                    tracing::debug!(upto, "compacted purged raft log range");
                }
            })
            .expect("spawn compactor thread");
        Compactor { requests: Some(requests), thread: Some(thread) }
    }

    /// Asks for the log below index `upto` (exclusive) to be compacted.
    pub(crate) fn compact_below(&self, upto: u64) {
        // The thread only stops when the store is dropped; a lost request is harmless then.
        if let Some(requests) = &self.requests {
            let _ = requests.send(upto);
        }
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
