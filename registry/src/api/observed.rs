//! Observed dependencies: a client that names the service it serves (`clientService` on a
//! discovery request) tells the cluster that service depends on the one it looks up. A replica
//! proposes a pair the first time it sees it, then again only once the replicated record is
//! older than `REFRESH_MS`: steady lookups cost one small write per pair every few minutes, and
//! the edge is the same on every replica.

use std::collections::HashSet;
use std::sync::Mutex;

use super::Shared;
use crate::cluster::unix_now_ms;
use crate::state::Op;

/// How old the replicated record of a pair may get before a lookup reports it again (well
/// inside the hour after which it is forgotten).
const REFRESH_MS: u64 = 5 * 60 * 1000;

/// Pairs this replica is proposing now: one write per pair at a time.
#[derive(Default)]
pub struct Observations {
    pending: Mutex<HashSet<(String, String)>>,
}

impl Observations {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A client serving `from` looked up `to`.
pub fn saw(state: &Shared, from: &str, to: &str) {
    if from == to {
        return;
    }
    let now = unix_now_ms();
    let at = state.cluster.with_registry(|r| r.observed_at(from, to));
    if at.is_some_and(|at| now.saturating_sub(at) < REFRESH_MS) {
        return;
    }
    let pair = (from.to_string(), to.to_string());
    if !state.observations.pending().insert(pair.clone()) {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = state.cluster.write(Op::ObserveEdges { edges: vec![pair.clone()] }).await {
            tracing::debug!(id = state.cluster.id, from = %pair.0, to = %pair.1, error = %e, "observed edge not recorded");
        }
        state.observations.pending().remove(&pair);
    });
}
