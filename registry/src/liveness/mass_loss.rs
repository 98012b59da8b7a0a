//! Mass-loss protection: when more than a share of the nodes that can run work expire within
//! one TTL, the likely culprit is the controllers' own network, not the nodes. Moving the whole
//! fleet then would do harm (and duplicate everything when the network heals), so the leader
//! pauses rescheduling, says so, and resumes when nodes come back or an operator confirms.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Nodes that can run work expired recently, on this leader (forgotten at a leader change:
/// a new leader starts every clock anew anyway).
#[derive(Default)]
pub struct LossWindow {
    recent: VecDeque<(Instant, String)>,
}

impl LossWindow {
    /// Records `nodes` expiring at `now` and forgets those older than `window`; returns every
    /// node lost within the window.
    pub fn record(&mut self, now: Instant, window: Duration, nodes: &[String]) -> Vec<String> {
        while self.recent.front().is_some_and(|(at, _)| now.duration_since(*at) > window) {
            self.recent.pop_front();
        }
        self.recent.extend(nodes.iter().map(|n| (now, n.clone())));
        self.recent.iter().map(|(_, n)| n.clone()).collect()
    }

    pub fn clear(&mut self) {
        self.recent.clear();
    }
}

/// More than `share` of `fleet` lost? A share of 1.0 or more never pauses.
pub fn is_mass_loss(fleet: usize, lost: usize, share: f64) -> bool {
    fleet > 0 && (lost as f64) > share * (fleet as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losing_more_than_the_share_within_the_window_is_a_mass_loss() {
        assert!(!is_mass_loss(4, 2, 0.5), "half is not more than half");
        assert!(is_mass_loss(4, 3, 0.5));
        assert!(!is_mass_loss(4, 4, 1.0), "a share of 1 disables the protection");
        assert!(!is_mass_loss(0, 0, 0.5));
    }

    #[test]
    fn the_window_forgets_old_losses() {
        let mut w = LossWindow::default();
        let t0 = Instant::now();
        let window = Duration::from_millis(1000);
        assert_eq!(w.record(t0, window, &["a".into()]).len(), 1);
        assert_eq!(w.record(t0 + Duration::from_millis(900), window, &["b".into()]).len(), 2);
        assert_eq!(w.record(t0 + Duration::from_millis(1500), window, &["c".into()]), vec!["b", "c"]);
    }
}
