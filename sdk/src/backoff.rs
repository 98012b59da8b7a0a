//! Exponential backoff with full jitter (a random wait between zero and the exponential bound):
//! clients that failed together do not come back together.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_millis(20), max: Duration::from_secs(1) }
    }
}

impl Backoff {
    /// The bound for retry number `attempt` (0 for the first retry): base * 2^attempt, capped.
    pub fn bound(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A wait drawn uniformly from zero to the bound.
    pub fn delay(&self, attempt: u32) -> Duration {
        let bound = self.bound(attempt).as_micros() as u64;
        Duration::from_micros(if bound == 0 { 0 } else { rand::random::<u64>() % (bound + 1) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_double_up_to_the_cap_and_delays_stay_below_them() {
        let b = Backoff { base: Duration::from_millis(10), max: Duration::from_millis(100) };
        assert_eq!(b.bound(0), Duration::from_millis(10));
        assert_eq!(b.bound(3), Duration::from_millis(80));
        assert_eq!(b.bound(4), Duration::from_millis(100));
        assert_eq!(b.bound(60), Duration::from_millis(100), "no overflow");
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(2)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(40)));
        assert!(delays.iter().any(|d| *d < Duration::from_millis(20)), "full jitter reaches low");
    }
}
