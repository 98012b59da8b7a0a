//! Registration storms become few Raft entries: node registrations (`UpsertNode`) and single
//! instance registrations that arrive within a couple of milliseconds on one replica are
//! proposed as one `Op::Batch`, like heartbeats are renewed in batches. A fleet that starts
//! at once, or re-registers after a controller restart, costs a few hundred entries instead of
//! one per node. Only idempotent upserts go through here: a batch whose outcome is unknown may
//! be sent again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Cluster, WriteError, codec};
use crate::state::Op;

/// How long the first write of a batch waits for company.
const GATHER: Duration = Duration::from_millis(2);
/// A batch holds at most this many ops, and at most this many encoded bytes (a forwarded
/// proposal must fit the internal routes' 2 MiB body limit with room to spare).
const MAX_OPS: usize = 512;
const MAX_BYTES: usize = 512 * 1024;

type Reply = oneshot::Sender<Result<(), WriteError>>;

#[derive(Clone)]
pub struct Coalescer {
    tx: mpsc::UnboundedSender<(Op, usize, Reply)>,
}

impl Coalescer {
    pub fn start(cluster: Arc<Cluster>) -> Coalescer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(gather(cluster, rx));
        Coalescer { tx }
    }

    /// Commits `op` (an `UpsertNode` or `RegisterInstance`), possibly together with others.
    pub async fn write(&self, op: Op) -> Result<(), WriteError> {
        let size = codec::encode(&op).map_or(MAX_BYTES, |b| b.len());
        let (reply, answer) = oneshot::channel();
        self.tx.send((op, size, reply)).map_err(|_| WriteError::Unavailable("replica stopping".into()))?;
        answer.await.unwrap_or_else(|_| Err(WriteError::Unavailable("replica stopping".into())))
    }
}

async fn gather(cluster: Arc<Cluster>, mut rx: mpsc::UnboundedReceiver<(Op, usize, Reply)>) {
    while let Some(first) = rx.recv().await {
        let mut bytes = first.1;
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + GATHER;
        while batch.len() < MAX_OPS && bytes < MAX_BYTES {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(next)) => {
                    bytes += next.1;
                    batch.push(next);
                }
                _ => break,
            }
        }
        // Written concurrently with the next batch's gathering.
        tokio::spawn(commit(cluster.clone(), batch));
    }
}

async fn commit(cluster: Arc<Cluster>, batch: Vec<(Op, usize, Reply)>) {
    let (ops, replies): (Vec<Op>, Vec<Reply>) = batch.into_iter().map(|(op, _, reply)| (op, reply)).unzip();
    let op = if ops.len() == 1 { ops.into_iter().next().expect("one op") } else { Op::Batch { ops } };
    let result = cluster.write(op).await.map(|_| ());
    for reply in replies {
        let _ = reply.send(result.clone());
    }
}
