//! Observed dependencies: a client that names the service it serves (`clientService` on a
//! discovery request) tells the cluster that service depends on the one it looks up. A replica
//! proposes a pair the first time it sees it, then again only once the replicated record is
//! older than `REFRESH_MS`: steady lookups cost one small write per pair every few minutes, and
//! the edge is the same on every replica.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Shared;
use crate::cluster::unix_now_ms;
use crate::state::{Op, deps};

/// How old the replicated record of a pair may get before a lookup reports it again (well
/// inside the hour after which it is forgotten).
const REFRESH_MS: u64 = 5 * 60 * 1000;

/// Bounds on what clients can make a replica write: pairs being proposed at once, and new
/// proposals per second (a client inventing names must not flood the log).
const MAX_PENDING: usize = 256;
const MAX_PER_SECOND: u32 = 20;

/// Pairs this replica is proposing now (one write per pair at a time), and this second's count.
#[derive(Default)]
pub struct Observations {
    pending: Mutex<HashSet<(String, String)>>,
    second: Mutex<Option<(Instant, u32)>>,
}

impl Observations {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one of this second's proposals, if any is left.
    fn budget(&self) -> bool {
        let mut second = self.second.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match &mut *second {
            Some((start, used)) if now.duration_since(*start) < Duration::from_secs(1) => {
                *used += 1;
                *used <= MAX_PER_SECOND
            }
            _ => {
                *second = Some((now, 1));
                true
            }
        }
    }
}

/// A client serving `from` looked up `to`.
pub fn saw(state: &Shared, from: &str, to: &str) {
    if from == to {
        return;
    }
    let now = unix_now_ms();
    // Only services the cluster knows (registered, or provided by a deployment): a lookup of
    // a made-up name records nothing.
    let (at, known) = state.cluster.with_registry(|r| (r.observed_at(from, to), deps::known_service(r, to)));
    if !known || at.is_some_and(|at| now.saturating_sub(at) < REFRESH_MS) {
        return;
    }
    let pair = (from.to_string(), to.to_string());
    {
        let mut pending = state.observations.pending();
        if pending.len() >= MAX_PENDING || pending.contains(&pair) || !state.observations.budget() {
            return;
        }
        pending.insert(pair.clone());
    }
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = state.cluster.write(Op::ObserveEdges { edges: vec![pair.clone()] }).await {
            tracing::debug!(id = state.cluster.id, from = %pair.0, to = %pair.1, error = %e, "observed edge not recorded");
        }
        state.observations.pending().remove(&pair);
    });
}
