//! Outlier detection: an endpoint that fails (connect error, timeout, 5xx) several times in a row
//! is ejected from load balancing for a while, longer each time it is ejected again, until a
//! success resets it. Never more than a share of the set is ejected: when everything fails it is
//! better to keep trying than to have nothing to call.
//!
//! The per-endpoint state lives in the [`Balancer`](crate::balance::Balancer)'s endpoint table
//! (one lookup per pick serves both the in-flight count and the ejection check); this module
//! holds the policy, the clock and the state machine.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// When to eject an endpoint and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierConfig {
    /// Failures in a row that eject an endpoint; 0 turns outlier detection off.
    pub consecutive_failures: u32,
    /// First ejection time; doubled for each further ejection without a success in between.
    pub base_ejection: Duration,
    /// Upper bound of the doubled ejection time.
    pub max_ejection: Duration,
    /// Largest share of the endpoint set (0.0..=1.0) that may be ejected at once.
    pub max_ejected_share: f64,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejected_share: 0.5,
        }
    }
}

impl OutlierConfig {
    /// Ejection time for the `previous`+1-th ejection in a row.
    pub fn ejection_time(&self, previous: u32) -> Duration {
        let factor = 1u32.checked_shl(previous).unwrap_or(u32::MAX);
        self.base_ejection.saturating_mul(factor).min(self.max_ejection.max(self.base_ejection))
    }

    /// How many endpoints of a set of `n` may be ejected at once.
    pub fn max_ejected(&self, n: usize) -> usize {
        let share = if self.max_ejected_share.is_nan() { 0.0 } else { self.max_ejected_share.clamp(0.0, 1.0) };
        ((n as f64) * share).floor() as usize
    }
}

/// A monotonic clock: time since an arbitrary fixed origin. Injectable so tests are deterministic.
pub trait Clock: Send + Sync {
    fn now(&self) -> Duration;
}

/// The real clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        SystemClock { origin: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told to (tests, simulations).
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn advance(&self, by: Duration) {
        self.nanos.fetch_add(saturating_nanos(by), Ordering::SeqCst);
    }

    pub fn set(&self, to: Duration) {
        self.nanos.store(saturating_nanos(to), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }
}

/// What a call to an endpoint came to, as far as outlier detection is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Connect error, timeout or 5xx.
    Failure,
}

fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The policy and the clock, shared by every endpoint of a balancer.
pub(crate) struct Detector {
    config: OutlierConfig,
    clock: Arc<dyn Clock>,
    /// Endpoints with an ejection not yet seen to expire. Zero lets `pick` skip every check.
    active: AtomicUsize,
    /// Serializes ejection decisions so concurrent failures cannot exceed the max share.
    deciding: Mutex<()>,
}

impl Detector {
    pub(crate) fn new(config: OutlierConfig, clock: Arc<dyn Clock>) -> Self {
        Detector { config, clock, active: AtomicUsize::new(0), deciding: Mutex::new(()) }
    }

    pub(crate) fn config(&self) -> &OutlierConfig {
        &self.config
    }

    /// Nanoseconds on the detector's clock.
    pub(crate) fn now(&self) -> u64 {
        saturating_nanos(self.clock.now())
    }

    /// False when no endpoint can be ejected, so `pick` needs no clock read and no checks.
    #[inline]
    pub(crate) fn any_ejected(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    /// Held while deciding whether to eject (counting the set's ejected endpoints, then ejecting).
    pub(crate) fn deciding(&self) -> std::sync::MutexGuard<'_, ()> {
        self.deciding.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One endpoint's outlier state.
#[derive(Debug, Default)]
pub(crate) struct Health {
    failures: AtomicU32,
    /// Ejections since the last success: the exponent of the next ejection time.
    ejections: AtomicU32,
    /// Detector-clock nanoseconds the current ejection ends at; 0 when not ejected.
    until: AtomicU64,
}

impl Health {
    /// Whether the endpoint is ejected at `now`; an expired ejection is cleared (readmission).
    #[inline]
    pub(crate) fn is_ejected(&self, det: &Detector, now: u64, key: &dyn Display) -> bool {
        let until = self.until.load(Ordering::Acquire);
        if until == 0 {
            return false;
        }
        if now < until {
            return true;
        }
        match self.until.compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                det.active.fetch_sub(1, Ordering::AcqRel);
                tracing::info!(endpoint = %key, "outlier ejection over, endpoint readmitted");
                false
            }
            // Someone else readmitted it, or it was ejected again meanwhile.
            Err(current) => current != 0 && now < current,
        }
    }

    pub(crate) fn on_success(&self, det: &Detector, now: u64, key: &dyn Display) {
        // A late answer from before an ejection says little about the endpoint now.
        if self.is_ejected(det, now, key) {
            return;
        }
        // Loads first: successes are the common case, keep their cache line shared.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.ejections.load(Ordering::Relaxed) != 0 {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a failure; true when the endpoint has now failed often enough to be ejected.
    pub(crate) fn on_failure(&self, det: &Detector, now: u64, key: &dyn Display) -> bool {
        let threshold = det.config.consecutive_failures;
        if threshold == 0 || self.is_ejected(det, now, key) {
            return false;
        }
        self.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1) >= threshold
    }

    /// Ejects the endpoint; the caller holds [`Detector::deciding`] and checked the max share.
    pub(crate) fn eject(&self, det: &Detector, now: u64, key: &dyn Display) {
        if self.is_ejected(det, now, key) {
            return;
        }
        let previous = self.ejections.fetch_add(1, Ordering::AcqRel);
        let time = det.config.ejection_time(previous);
        let failures = self.failures.swap(0, Ordering::AcqRel);
        let until = now.saturating_add(saturating_nanos(time)).max(1);
        if self.until.swap(until, Ordering::AcqRel) == 0 {
            det.active.fetch_add(1, Ordering::AcqRel);
        }
        tracing::warn!(
            endpoint = %key,
            failures,
            ejection = ?time,
            ejections = previous + 1,
            "endpoint ejected after consecutive failures"
        );
    }

    /// The endpoint leaves the table: its ejection no longer counts.
    pub(crate) fn forget(&self, det: &Detector) {
        if self.until.swap(0, Ordering::AcqRel) != 0 {
            det.active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use plum_types::Endpoint;

    use super::*;
    use crate::balance::{Balancer, Strategy};

    fn ep(port: u16) -> Endpoint {
        Endpoint {
            service_name: "svc".into(),
            instance_id: format!("i{port}"),
            node_id: "n1".into(),
            ip: "127.0.0.1".into(),
            port,
            protocol: "http".into(),
            version: "1".into(),
            labels: BTreeMap::new(),
            healthy: true,
            last_seen: 0,
        }
    }

    fn set(n: u16) -> Vec<Endpoint> {
        (1..=n).map(ep).collect()
    }

    fn balancer(strategy: Strategy) -> (Balancer, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        (Balancer::with_outlier(strategy, OutlierConfig::default(), clock.clone()), clock)
    }

    fn fail(b: &Balancer, eps: &[Endpoint], e: &Endpoint, times: u32) {
        for _ in 0..times {
            b.report(eps, e, Outcome::Failure);
        }
    }

    #[test]
    fn outlier_ejection_time_doubles_up_to_the_max() {
        let c = OutlierConfig::default();
        assert_eq!(c.ejection_time(0), Duration::from_secs(10));
        assert_eq!(c.ejection_time(1), Duration::from_secs(20));
        assert_eq!(c.ejection_time(4), Duration::from_secs(160));
        assert_eq!(c.ejection_time(5), Duration::from_secs(300));
        assert_eq!(c.ejection_time(200), Duration::from_secs(300));
        assert_eq!(c.max_ejected(1), 0);
        assert_eq!(c.max_ejected(2), 1);
        assert_eq!(c.max_ejected(5), 2);
    }

    #[test]
    fn outlier_ejects_after_consecutive_failures_only() {
        let (b, _clock) = balancer(Strategy::RoundRobin);
        let eps = set(4);
        fail(&b, &eps, &eps[0], 2);
        b.report(&eps, &eps[0], Outcome::Success);
        fail(&b, &eps, &eps[0], 2);
        assert!(!b.is_ejected(&eps[0]), "a success in between resets the count");
        fail(&b, &eps, &eps[0], 1);
        assert!(b.is_ejected(&eps[0]));
        for _ in 0..100 {
            let p = b.pick(&eps).unwrap();
            assert_ne!(p.endpoint().port, 1, "pick skips the ejected endpoint");
        }
    }

    #[test]
    fn outlier_readmits_after_ejection_time_and_doubles_on_repeat() {
        let (b, clock) = balancer(Strategy::Random);
        let eps = set(4);
        fail(&b, &eps, &eps[0], 3);
        assert!(b.is_ejected(&eps[0]));
        clock.advance(Duration::from_millis(9_999));
        assert!(b.is_ejected(&eps[0]));
        clock.advance(Duration::from_millis(1));
        assert!(!b.is_ejected(&eps[0]), "readmitted after 10 s");
        assert!((0..200).any(|_| b.pick(&eps).unwrap().endpoint().port == 1), "readmitted endpoint is picked again");

        // Failing again without a success in between: twice as long.
        fail(&b, &eps, &eps[0], 3);
        clock.advance(Duration::from_secs(19));
        assert!(b.is_ejected(&eps[0]));
        clock.advance(Duration::from_secs(1));
        assert!(!b.is_ejected(&eps[0]));

        // A success resets the backoff.
        b.report(&eps, &eps[0], Outcome::Success);
        fail(&b, &eps, &eps[0], 3);
        clock.advance(Duration::from_secs(10));
        assert!(!b.is_ejected(&eps[0]));
    }

    #[test]
    fn outlier_outcomes_while_ejected_are_ignored() {
        let (b, clock) = balancer(Strategy::RoundRobin);
        let eps = set(4);
        fail(&b, &eps, &eps[0], 3);
        // Late failures of requests sent before the ejection neither extend nor double it.
        fail(&b, &eps, &eps[0], 10);
        clock.advance(Duration::from_secs(10));
        assert!(!b.is_ejected(&eps[0]));
        // Still counted from zero after readmission.
        fail(&b, &eps, &eps[0], 2);
        assert!(!b.is_ejected(&eps[0]));
    }

    #[test]
    fn outlier_never_ejects_more_than_the_max_share() {
        let (b, _clock) = balancer(Strategy::RoundRobin);
        let eps = set(4);
        for e in &eps {
            fail(&b, &eps, e, 5);
        }
        let ejected = eps.iter().filter(|e| b.is_ejected(e)).count();
        assert_eq!(ejected, 2, "50% of 4");
        for _ in 0..40 {
            let p = b.pick(&eps).unwrap();
            assert!(!b.is_ejected(p.endpoint()));
        }

        // A single endpoint is never ejected: there is nothing else to call.
        let (b, _clock) = balancer(Strategy::PowerOfTwo);
        let one = set(1);
        fail(&b, &one, &one[0], 10);
        assert!(!b.is_ejected(&one[0]));
        assert!(b.pick(&one).is_some());
    }

    #[test]
    fn outlier_everything_ejected_still_serves() {
        // The set shrank to only ejected endpoints: keep serving them rather than nothing.
        for strategy in [Strategy::Random, Strategy::RoundRobin, Strategy::PowerOfTwo] {
            let (b, _clock) = balancer(strategy);
            let eps = set(4);
            fail(&b, &eps, &eps[0], 3);
            fail(&b, &eps, &eps[1], 3);
            assert!(b.is_ejected(&eps[0]) && b.is_ejected(&eps[1]));
            let shrunk = &eps[..2];
            let mut seen = [0; 2];
            for _ in 0..200 {
                seen[b.pick(shrunk).unwrap().endpoint().port as usize - 1] += 1;
            }
            assert!(seen.iter().all(|&s| s > 0), "{strategy:?}: {seen:?}");
        }
    }

    #[test]
    fn outlier_detection_can_be_turned_off() {
        let clock = Arc::new(ManualClock::new());
        let config = OutlierConfig { consecutive_failures: 0, ..OutlierConfig::default() };
        let b = Balancer::with_outlier(Strategy::RoundRobin, config, clock);
        let eps = set(4);
        fail(&b, &eps, &eps[0], 100);
        assert!(!b.is_ejected(&eps[0]));
    }

    #[test]
    fn outlier_failures_through_picked() {
        let (b, _clock) = balancer(Strategy::RoundRobin);
        let eps = set(2);
        for _ in 0..3 {
            let p = b.pick_other(&eps, &eps[1]).unwrap();
            assert_eq!(p.endpoint().port, 1);
            p.report(Outcome::Failure);
        }
        assert!(b.is_ejected(&eps[0]));
        assert!(b.pick_other(&eps, &eps[1]).is_some(), "the only other endpoint is served even when ejected");
    }
}
