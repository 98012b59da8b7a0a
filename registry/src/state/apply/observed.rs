//! Observed dependencies: (client service, service it discovered) pairs clients reported by
//! naming the service they serve on discovery requests, each with when it was last seen.
//! Bounded in count and age, pruned by the entries that record them (leader time).

use plum_raft_store::DataWrites;

use crate::state::command::CommandResult;
use crate::state::keys;
use crate::state::rows;
use crate::state::view::Registry;

/// Pairs kept at most; beyond it the least recently seen go.
pub const MAX_OBSERVED: usize = 10_000;
/// A pair not seen again for this long is forgotten (and no longer drawn).
pub const OBSERVED_TTL_MS: u64 = 60 * 60 * 1000;

impl Registry {
    pub(super) fn observe_edges(
        &mut self,
        edges: &[(String, String)],
        now: u64,
        writes: &mut DataWrites,
    ) -> CommandResult {
        let stale: Vec<(String, String)> = self
            .observed
            .iter()
            .filter(|(_, at)| now.saturating_sub(**at) > OBSERVED_TTL_MS)
            .map(|(pair, _)| pair.clone())
            .collect();
        for pair in stale {
            self.forget_observed(&pair, writes);
        }
        for (from, to) in edges.iter().filter(|(from, to)| from != to) {
            writes.put(keys::observed(from, to), rows::encode(&now));
            self.observed.insert((from.clone(), to.clone()), now);
        }
        while self.observed.len() > MAX_OBSERVED {
            let Some(oldest) = self.observed.iter().min_by_key(|(_, at)| **at).map(|(pair, _)| pair.clone()) else {
                break;
            };
            self.forget_observed(&oldest, writes);
        }
        CommandResult::Changed { count: edges.len() }
    }

    fn forget_observed(&mut self, pair: &(String, String), writes: &mut DataWrites) {
        self.observed.remove(pair);
        writes.delete(keys::observed(&pair.0, &pair.1));
    }
}

#[cfg(test)]
mod tests {
    use plum_raft_store::DataWrites;

    use super::{MAX_OBSERVED, OBSERVED_TTL_MS};
    use crate::state::{Command, Op, Registry};

    fn observe(r: &mut Registry, now_ms: u64, edges: Vec<(String, String)>) {
        let index = r.applied_index() + 1;
        r.apply(index, &Command { now_ms, op: Op::ObserveEdges { edges } }, &mut DataWrites::default());
    }

    fn pair(from: &str, to: &str) -> (String, String) {
        (from.to_string(), to.to_string())
    }

    #[test]
    fn pairs_are_refreshed_forgotten_after_their_ttl_and_bounded() {
        let mut r = Registry::default();
        observe(&mut r, 1_000, vec![pair("web", "api"), pair("api", "api")]);
        assert_eq!(r.observed_at("web", "api"), Some(1_000));
        assert_eq!(r.observed_at("api", "api"), None, "a service on itself is no edge");
        observe(&mut r, 2_000, vec![pair("api", "db")]);
        observe(&mut r, 3_000, vec![pair("web", "api")]);
        assert_eq!(r.observed_at("web", "api"), Some(3_000), "seen again: refreshed");
        observe(&mut r, 2_000 + OBSERVED_TTL_MS + 1, vec![pair("cron", "db")]);
        assert_eq!(r.observed_at("api", "db"), None, "not seen for the TTL: forgotten");
        assert_eq!(r.observed_at("web", "api"), Some(3_000));
        let many: Vec<(String, String)> = (0..MAX_OBSERVED + 5).map(|i| pair(&format!("c{i}"), "db")).collect();
        // Older than cron's, yet within web's TTL: web is the least recently seen and goes first.
        observe(&mut r, 4_000, many);
        assert_eq!(r.observed_edges().count(), MAX_OBSERVED);
        assert_eq!(r.observed_at("web", "api"), None, "the least recently seen go first");
        assert_eq!(r.observed_at("cron", "db"), Some(2_000 + OBSERVED_TTL_MS + 1));
    }
}
