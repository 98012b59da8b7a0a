//! How long this replica goes between appends from its leader. The leader sends one at least
//! every heartbeat interval, so the distribution shows the margin consensus keeps before an
//! election while clients load the API; a benchmark diffs it before and after a run.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Bucket upper bounds, ms: fine around the 50 ms heartbeat and the 150-300 ms election window.
pub const BUCKET_LE_MS: [u64; 9] = [25, 50, 75, 100, 150, 200, 300, 500, 1000];

#[derive(Debug, Default)]
pub struct ContactGaps {
    /// The leader and term of the last append, and when it arrived.
    last: Mutex<Option<(u64, u64, Instant)>>,
    counts: [AtomicU64; BUCKET_LE_MS.len() + 1],
    max_ms: AtomicU64,
}

fn bucket(gap_ms: u64) -> usize {
    BUCKET_LE_MS.iter().position(|le| gap_ms <= *le).unwrap_or(BUCKET_LE_MS.len())
}

impl ContactGaps {
    /// An append from `leader` in `term` arrived. A gap is counted only between appends of the
    /// same leader and term: the silence across a leader change is the failover's, timed
    /// elsewhere.
    pub fn record(&self, leader: u64, term: u64) {
        self.record_at(leader, term, Instant::now());
    }

    fn record_at(&self, leader: u64, term: u64, now: Instant) {
        let previous = self.last.lock().unwrap_or_else(|p| p.into_inner()).replace((leader, term, now));
        let Some((prev_leader, prev_term, at)) = previous else { return };
        if prev_leader != leader || prev_term != term {
            return;
        }
        let gap_ms = now.saturating_duration_since(at).as_millis() as u64;
        self.counts[bucket(gap_ms)].fetch_add(1, Ordering::Relaxed);
        self.max_ms.fetch_max(gap_ms, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> plum_types::ContactGaps {
        plum_types::ContactGaps {
            bucket_le_ms: BUCKET_LE_MS.to_vec(),
            counts: self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            max_ms: self.max_ms.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn gaps_are_counted_within_one_leader_and_term_only() {
        let gaps = ContactGaps::default();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        gaps.record_at(1, 5, ms(0));
        gaps.record_at(1, 5, ms(40)); // 40 ms: the ≤50 bucket
        gaps.record_at(1, 5, ms(160)); // 120 ms: the ≤150 bucket
        gaps.record_at(2, 6, ms(900)); // a new leader: not a gap
        gaps.record_at(2, 6, ms(2_100)); // 1.2 s: beyond every bound
        let s = gaps.snapshot();
        assert_eq!(s.counts.len(), s.bucket_le_ms.len() + 1);
        assert_eq!(s.counts[bucket(40)], 1);
        assert_eq!(s.counts[bucket(120)], 1);
        assert_eq!(s.counts[BUCKET_LE_MS.len()], 1);
        assert_eq!(s.counts.iter().sum::<u64>(), 3);
        assert_eq!(s.max_ms, 1_200);
    }

    #[test]
    fn a_gap_on_a_bound_falls_in_that_bucket() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(25), 0);
        assert_eq!(bucket(26), 1);
        assert_eq!(bucket(1_000), BUCKET_LE_MS.len() - 1);
        assert_eq!(bucket(1_001), BUCKET_LE_MS.len());
    }
}
