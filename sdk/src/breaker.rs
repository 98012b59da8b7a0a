//! A circuit breaker per replica: after a run of failures the replica is skipped for a cool-down
//! (doubling while it keeps failing), then one request probes it. Requests do not queue behind
//! a replica that is down or black-holed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    pub cool_down: Duration,
    pub max_cool_down: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy { failures: 3, cool_down: Duration::from_millis(500), max_cool_down: Duration::from_secs(10) }
    }
}

#[derive(Debug, Default)]
struct State {
    consecutive: u32,
    /// Set while open: closed to requests until then.
    open_until: Option<Instant>,
    /// Times it opened without a success in between (the cool-down doubles).
    trips: u32,
}

#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<State>,
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a request may go to this replica now. When the cool-down is over, one caller
    /// gets through as the probe and the breaker stays open for the others until it answers.
    pub fn allows(&self, policy: &BreakerPolicy, now: Instant) -> bool {
        let mut s = self.lock();
        match s.open_until {
            None => true,
            Some(until) if now >= until => {
                // Half-open: let this one through; hold the rest for another cool-down.
                s.open_until = Some(now + policy.cool_down);
                true
            }
            Some(_) => false,
        }
    }

    pub fn is_open(&self, now: Instant) -> bool {
        self.lock().open_until.is_some_and(|until| now < until)
    }

    pub fn success(&self) {
        *self.lock() = State::default();
    }

    pub fn failure(&self, policy: &BreakerPolicy, now: Instant) {
        let mut s = self.lock();
        s.consecutive += 1;
        if s.consecutive >= policy.failures {
            let cool = policy.cool_down.saturating_mul(1u32.checked_shl(s.trips.min(16)).unwrap_or(u32::MAX));
            s.open_until = Some(now + cool.min(policy.max_cool_down));
            s.trips += 1;
            s.consecutive = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_a_run_of_failures_probes_after_the_cool_down_and_closes_on_success() {
        let p =
            BreakerPolicy { failures: 2, cool_down: Duration::from_millis(100), max_cool_down: Duration::from_secs(1) };
        let b = Breaker::default();
        let t0 = Instant::now();
        b.failure(&p, t0);
        assert!(b.allows(&p, t0), "one failure is not a run");
        b.failure(&p, t0);
        assert!(!b.allows(&p, t0 + Duration::from_millis(50)), "open");
        assert!(b.allows(&p, t0 + Duration::from_millis(100)), "the probe");
        assert!(!b.allows(&p, t0 + Duration::from_millis(101)), "only one probe");
        // The probe failed twice more: the cool-down doubles.
        b.failure(&p, t0 + Duration::from_millis(110));
        b.failure(&p, t0 + Duration::from_millis(110));
        assert!(!b.allows(&p, t0 + Duration::from_millis(300)));
        assert!(b.allows(&p, t0 + Duration::from_millis(310)));
        b.success();
        assert!(b.allows(&p, t0 + Duration::from_millis(311)) && !b.is_open(t0 + Duration::from_millis(311)));
    }
}
