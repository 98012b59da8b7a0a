//! Client-side load balancing over the endpoints discovery returns: random, round robin and
//! power-of-two-choices on requests in flight, skipping endpoints that outlier detection ejected
//! (see [`crate::outlier`]). [`call`] adds a deadline and one retry on another endpoint.
//!
//! The endpoint set is passed to every pick, so it may change between picks as discovery
//! updates. Per-endpoint state (in-flight count, outlier state) is keyed by `ip:port` and kept in
//! a table owned by the [`Balancer`]; use one balancer per service.

mod call;

use std::borrow::Borrow;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use plum_types::Endpoint;

use crate::outlier::{Clock, Detector, Health, Outcome, OutlierConfig, SystemClock};

pub use call::{AttemptError, CallError, base_url, call};

/// How [`Balancer::pick`] chooses among the usable endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Uniformly at random.
    Random,
    /// Every endpoint in turn, from one counter shared by all callers. Assumes discovery keeps
    /// the set in a stable order (it sorts it).
    RoundRobin,
    /// Two distinct endpoints at random, the one with fewer requests in flight.
    #[default]
    PowerOfTwo,
}

/// Picks endpoints; tracks requests in flight and outlier state per endpoint.
pub struct Balancer {
    strategy: Strategy,
    next: AtomicUsize,
    table: RwLock<Table>,
    outliers: Detector,
}

/// The table is pruned of endpoints no longer in the set once it is this much larger than it.
const PRUNE_SLACK: usize = 256;

impl Balancer {
    /// Default outlier detection (3 failures in a row, 10 s doubling, at most 50% ejected).
    pub fn new(strategy: Strategy) -> Self {
        Self::with_outlier(strategy, OutlierConfig::default(), Arc::new(SystemClock::new()))
    }

    /// Custom outlier detection and clock (tests pass a [`crate::outlier::ManualClock`]).
    pub fn with_outlier(strategy: Strategy, config: OutlierConfig, clock: Arc<dyn Clock>) -> Self {
        Balancer {
            strategy,
            next: AtomicUsize::new(0),
            table: RwLock::new(Table::default()),
            outliers: Detector::new(config, clock),
        }
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    pub fn outlier_config(&self) -> &OutlierConfig {
        self.outliers.config()
    }

    /// Chooses an endpoint, skipping ejected ones unless nothing else is left. `None` only for
    /// an empty set. The request counts as in flight until the [`Picked`] is dropped.
    #[inline]
    pub fn pick<'a>(&'a self, endpoints: &'a [Endpoint]) -> Option<Picked<'a>> {
        self.pick_inner(endpoints, None)
    }

    /// Like [`Balancer::pick`] but never `avoid` (same `ip:port`): for a retry elsewhere. `None`
    /// when no other endpoint exists.
    pub fn pick_other<'a>(&'a self, endpoints: &'a [Endpoint], avoid: &Endpoint) -> Option<Picked<'a>> {
        self.pick_inner(endpoints, Some(avoid))
    }

    /// Reports a call's outcome to outlier detection; `endpoints` is the set the endpoint was
    /// picked from (it bounds the ejected share). [`Picked::report`] does the same.
    pub fn report(&self, endpoints: &[Endpoint], endpoint: &Endpoint, outcome: Outcome) {
        let slot = self.slot(endpoints, endpoint);
        self.report_slot(endpoints, &slot, outcome);
    }

    /// Whether outlier detection currently ejects the endpoint.
    pub fn is_ejected(&self, endpoint: &Endpoint) -> bool {
        let table = self.read();
        match table.get(endpoint) {
            Some(slot) => slot.health.is_ejected(&self.outliers, self.outliers.now(), &slot.key),
            None => false,
        }
    }

    /// Requests to the endpoint currently in flight through this balancer.
    pub fn in_flight(&self, endpoint: &Endpoint) -> usize {
        self.read().get(endpoint).map_or(0, |slot| slot.in_flight.load(Ordering::Relaxed))
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pick_inner<'a>(&'a self, endpoints: &'a [Endpoint], avoid: Option<&Endpoint>) -> Option<Picked<'a>> {
        let (index, slot) = {
            let table = self.read();
            let (index, slot) = self.choose(&table, endpoints, avoid)?;
            (index, slot.cloned())
        };
        let endpoint = &endpoints[index];
        // First pick of a new endpoint: the only path that takes the write lock.
        let slot = slot.unwrap_or_else(|| self.slot(endpoints, endpoint));
        Some(Picked { endpoint, set: endpoints, balancer: self, guard: InFlight::new(slot) })
    }

    fn choose<'t>(
        &self,
        table: &'t Table,
        endpoints: &[Endpoint],
        avoid: Option<&Endpoint>,
    ) -> Option<(usize, Option<&'t Arc<Slot>>)> {
        if endpoints.is_empty() {
            return None;
        }
        let check = self.outliers.any_ejected();
        if !check && avoid.is_none() {
            // The common case: nothing ejected, nothing to avoid, no clock read.
            return self.choose_among(table, endpoints, |_, _| true);
        }
        let now = if check { self.outliers.now() } else { 0 };
        let avoided = |i: usize| avoid.is_some_and(|a| same_key(a, &endpoints[i]));
        let found = self.choose_among(table, endpoints, |i, slot| {
            !(avoided(i) || check && slot.is_some_and(|s| s.health.is_ejected(&self.outliers, now, &s.key)))
        });
        // Only ejected endpoints left (the set shrank, or the max share was hit): serve them
        // anyway rather than nothing.
        found.or_else(|| self.choose_among(table, endpoints, |i, _| !avoided(i)))
    }

    /// The strategy's choice among the endpoints `usable` accepts.
    #[inline]
    fn choose_among<'t>(
        &self,
        table: &'t Table,
        endpoints: &[Endpoint],
        usable: impl Fn(usize, Option<&Arc<Slot>>) -> bool,
    ) -> Option<(usize, Option<&'t Arc<Slot>>)> {
        let n = endpoints.len();
        let probe = |i: usize| {
            let slot = table.get(&endpoints[i]);
            usable(i, slot).then_some((i, slot))
        };
        match self.strategy {
            Strategy::RoundRobin => {
                // Unusable endpoints give up their turn: the next one takes the next counter value,
                // so the usable ones still share evenly.
                (0..n).find_map(|_| probe(self.next.fetch_add(1, Ordering::Relaxed) % n))
            }
            Strategy::Random => (0..RANDOM_DRAWS).find_map(|_| probe(below(n))).or_else(|| scan(n, probe)),
            Strategy::PowerOfTwo => {
                if n == 1 {
                    return probe(0);
                }
                for _ in 0..RANDOM_DRAWS {
                    let i = below(n);
                    let mut j = below(n - 1);
                    if j >= i {
                        j += 1;
                    }
                    match (probe(i), probe(j)) {
                        (Some(a), Some(b)) => return Some(less_loaded(a, b)),
                        (Some(a), None) | (None, Some(a)) => return Some(a),
                        (None, None) => {}
                    }
                }
                // Mostly unusable: the first two usable ones from a random start.
                let start = below(n);
                let mut candidates = (0..n).filter_map(|k| probe((start + k) % n));
                let first = candidates.next()?;
                Some(match candidates.next() {
                    Some(second) => less_loaded(first, second),
                    None => first,
                })
            }
        }
    }

    /// The endpoint's slot, created (with slots for the rest of the set) when missing.
    fn slot(&self, endpoints: &[Endpoint], endpoint: &Endpoint) -> Arc<Slot> {
        if let Some(slot) = self.read().get(endpoint) {
            return slot.clone();
        }
        let mut table = self.table.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = table.get_or_insert(endpoint);
        for e in endpoints {
            table.get_or_insert(e);
        }
        if table.map.len() > endpoints.len().saturating_mul(2).saturating_add(PRUNE_SLACK) {
            table.prune(endpoints, &self.outliers);
        }
        slot
    }

    fn report_slot(&self, endpoints: &[Endpoint], slot: &Slot, outcome: Outcome) {
        let now = self.outliers.now();
        match outcome {
            Outcome::Success => slot.health.on_success(&self.outliers, now, &slot.key),
            Outcome::Failure => {
                if !slot.health.on_failure(&self.outliers, now, &slot.key) {
                    return;
                }
                let _deciding = self.outliers.deciding();
                let already = {
                    let table = self.read();
                    let mut seen = 0;
                    for e in endpoints {
                        if let Some(s) = table.get(e)
                            && !std::ptr::eq(&**s, slot)
                            && s.health.is_ejected(&self.outliers, now, &s.key)
                        {
                            seen += 1;
                        }
                    }
                    seen
                };
                let max = self.outliers.config().max_ejected(endpoints.len());
                if already < max {
                    slot.health.eject(&self.outliers, now, &slot.key);
                } else {
                    tracing::debug!(
                        endpoint = %slot.key,
                        ejected = already,
                        of = endpoints.len(),
                        "failing endpoint kept: the maximum share is already ejected"
                    );
                }
            }
        }
    }
}

impl fmt::Debug for Balancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balancer")
            .field("strategy", &self.strategy)
            .field("endpoints", &self.read().map.len())
            .field("outliers", self.outliers.config())
            .finish()
    }
}

/// A picked endpoint. The request counts as in flight (for [`Strategy::PowerOfTwo`]) until this
/// is dropped, however the call ends.
#[derive(Debug)]
pub struct Picked<'a> {
    endpoint: &'a Endpoint,
    set: &'a [Endpoint],
    balancer: &'a Balancer,
    guard: InFlight,
}

impl<'a> Picked<'a> {
    pub fn endpoint(&self) -> &'a Endpoint {
        self.endpoint
    }

    /// The in-flight guard; dropping `self` drops it.
    pub fn guard(&self) -> &InFlight {
        &self.guard
    }

    /// Reports the call's outcome to outlier detection.
    pub fn report(&self, outcome: Outcome) {
        self.balancer.report_slot(self.set, &self.guard.slot, outcome);
    }

    pub fn success(&self) {
        self.report(Outcome::Success);
    }

    /// Connect error, timeout or 5xx.
    pub fn failure(&self) {
        self.report(Outcome::Failure);
    }

    /// Keeps only the in-flight guard (e.g. to hold it while a response body streams).
    pub fn into_guard(self) -> InFlight {
        self.guard
    }
}

/// Counts one request in flight to an endpoint, until dropped.
pub struct InFlight {
    slot: Arc<Slot>,
}

impl InFlight {
    fn new(slot: Arc<Slot>) -> Self {
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { slot }
    }

    /// Requests in flight to this endpoint, this one included.
    pub fn count(&self) -> usize {
        self.slot.in_flight.load(Ordering::Relaxed)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.slot.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight").field("endpoint", &self.slot.key).field("count", &self.count()).finish()
    }
}

/// Per-endpoint state.
#[derive(Debug)]
pub(crate) struct Slot {
    key: Key,
    in_flight: AtomicUsize,
    health: Health,
}

/// Random draws before scanning, when draws keep hitting unusable endpoints.
const RANDOM_DRAWS: usize = 8;

fn less_loaded<'t>(
    a: (usize, Option<&'t Arc<Slot>>),
    b: (usize, Option<&'t Arc<Slot>>),
) -> (usize, Option<&'t Arc<Slot>>) {
    let load = |s: Option<&Arc<Slot>>| s.map_or(0, |s| s.in_flight.load(Ordering::Relaxed));
    // Ties go to `a`, itself a random draw.
    if load(b.1) < load(a.1) { b } else { a }
}

/// The first endpoint `probe` accepts, from a random start.
fn scan<T>(n: usize, probe: impl Fn(usize) -> Option<T>) -> Option<T> {
    let start = below(n);
    (0..n).find_map(|k| probe((start + k) % n))
}

fn same_key(a: &Endpoint, b: &Endpoint) -> bool {
    a.port == b.port && a.ip == b.ip
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(rand::random());
}

/// Uniform in `0..n` (`n > 0`) from a per-thread wyrand: no locking, no allocation.
#[inline]
fn below(n: usize) -> usize {
    let x = RNG.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s).wrapping_mul(u128::from(s ^ 0xe703_7ed1_a0b4_28db));
        ((t >> 64) as u64) ^ (t as u64)
    });
    // Lemire's multiply-shift: no division, bias negligible for endpoint counts.
    ((u128::from(x) * n as u128) >> 64) as usize
}

/// `ip:port`, owned. Looked up with a borrowed `&Endpoint` through [`KeyView`], so a pick
/// allocates nothing.
#[derive(Debug)]
struct Key {
    ip: Box<str>,
    port: u16,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

trait KeyView {
    fn ip(&self) -> &str;
    fn port(&self) -> u16;
}

impl KeyView for Key {
    fn ip(&self) -> &str {
        &self.ip
    }
    fn port(&self) -> u16 {
        self.port
    }
}

impl KeyView for Endpoint {
    fn ip(&self) -> &str {
        &self.ip
    }
    fn port(&self) -> u16 {
        self.port
    }
}

impl Hash for dyn KeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.ip().hash(state);
        state.write_u16(self.port());
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.port() == other.port() && self.ip() == other.ip()
    }
}

impl Eq for dyn KeyView + '_ {}

// Hash and Eq must agree with the `dyn KeyView` ones for borrowed lookups.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn KeyView).hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        (self as &dyn KeyView) == (other as &dyn KeyView)
    }
}

impl Eq for Key {}

impl<'a> Borrow<dyn KeyView + 'a> for Key {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

#[derive(Default)]
struct Table {
    map: HashMap<Key, Arc<Slot>, FastHash>,
}

impl Table {
    #[inline]
    fn get(&self, endpoint: &Endpoint) -> Option<&Arc<Slot>> {
        self.map.get(endpoint as &dyn KeyView)
    }

    fn get_or_insert(&mut self, endpoint: &Endpoint) -> Arc<Slot> {
        if let Some(slot) = self.get(endpoint) {
            return slot.clone();
        }
        let key = Key { ip: endpoint.ip.as_str().into(), port: endpoint.port };
        let slot = Arc::new(Slot {
            key: Key { ip: key.ip.clone(), port: key.port },
            in_flight: AtomicUsize::new(0),
            health: Health::default(),
        });
        self.map.insert(key, slot.clone());
        slot
    }

    /// Drops endpoints that left the set and have nothing in flight.
    fn prune(&mut self, endpoints: &[Endpoint], outliers: &Detector) {
        let current: HashSet<(&str, u16)> = endpoints.iter().map(|e| (e.ip.as_str(), e.port)).collect();
        let before = self.map.len();
        self.map.retain(|key, slot| {
            let keep = current.contains(&(&*key.ip, key.port)) || Arc::strong_count(slot) > 1;
            if !keep {
                slot.health.forget(outliers);
            }
            keep
        });
        tracing::debug!(before, after = self.map.len(), "pruned endpoints that left the set");
    }
}

/// A fast hasher for the endpoint table: keys come from the registry, not from attackers.
#[derive(Debug, Default, Clone, Copy)]
struct FastHash;

impl BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

struct FastHasher(u64);

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits (the bucket index) weak: mix the high ones down.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::outlier::ManualClock;

    fn ep(ip: &str, port: u16) -> Endpoint {
        Endpoint {
            service_name: "svc".into(),
            instance_id: format!("{ip}:{port}"),
            node_id: "n1".into(),
            ip: ip.into(),
            port,
            protocol: "http".into(),
            version: "1".into(),
            labels: BTreeMap::new(),
            healthy: true,
            last_seen: 0,
        }
    }

    fn set(n: u16) -> Vec<Endpoint> {
        (0..n).map(|i| ep(&format!("10.0.0.{}", i + 1), 8080)).collect()
    }

    fn index_of(eps: &[Endpoint], e: &Endpoint) -> usize {
        eps.iter().position(|x| same_key(x, e)).unwrap()
    }

    fn counts(b: &Balancer, eps: &[Endpoint], picks: usize) -> Vec<usize> {
        let mut seen = vec![0; eps.len()];
        for _ in 0..picks {
            seen[index_of(eps, b.pick(eps).unwrap().endpoint())] += 1;
        }
        seen
    }

    #[test]
    fn balance_empty_set_picks_nothing() {
        for strategy in [Strategy::Random, Strategy::RoundRobin, Strategy::PowerOfTwo] {
            let b = Balancer::new(strategy);
            assert!(b.pick(&[]).is_none());
            let one = set(1);
            assert_eq!(b.pick(&one).unwrap().endpoint(), &one[0]);
            assert!(b.pick_other(&one, &one[0]).is_none());
        }
    }

    #[test]
    fn balance_round_robin_visits_every_endpoint_equally() {
        let b = Balancer::new(Strategy::RoundRobin);
        let eps = set(7);
        assert_eq!(counts(&b, &eps, 7 * 100), vec![100; 7]);
        // In order, one after the other.
        let order: Vec<usize> = (0..14).map(|_| index_of(&eps, b.pick(&eps).unwrap().endpoint())).collect();
        let start = order[0];
        assert!(order.iter().enumerate().all(|(k, &i)| i == (start + k) % 7), "{order:?}");
    }

    #[test]
    fn balance_round_robin_stays_fair_when_the_set_changes() {
        let b = Balancer::new(Strategy::RoundRobin);
        let big = set(5);
        // The counter is wherever 5-set picks left it; smaller and larger sets are still fair.
        for picks in [3, 11, 1, 7] {
            counts(&b, &big, picks);
            let small = &big[..3];
            assert_eq!(counts(&b, small, 3 * 50), vec![50; 3]);
            let mut grown = set(5);
            grown.push(ep("10.0.0.99", 9000));
            assert_eq!(counts(&b, &grown, 6 * 50), vec![50; 6]);
        }
    }

    #[test]
    fn balance_round_robin_is_shared_between_threads() {
        let b = Balancer::new(Strategy::RoundRobin);
        let eps = set(4);
        let per_thread: Vec<Vec<usize>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4).map(|_| s.spawn(|| counts(&b, &eps, 1000))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let total: Vec<usize> = (0..4).map(|i| per_thread.iter().map(|c| c[i]).sum()).collect();
        assert_eq!(total, vec![1000; 4]);
    }

    #[test]
    fn balance_round_robin_skips_ejected_fairly() {
        let clock = Arc::new(ManualClock::new());
        let b = Balancer::with_outlier(Strategy::RoundRobin, OutlierConfig::default(), clock);
        let eps = set(5);
        for _ in 0..3 {
            b.report(&eps, &eps[2], Outcome::Failure);
        }
        assert!(b.is_ejected(&eps[2]));
        assert_eq!(counts(&b, &eps, 4 * 100), vec![100, 100, 0, 100, 100]);
    }

    #[test]
    fn balance_random_covers_all() {
        let b = Balancer::new(Strategy::Random);
        let eps = set(10);
        let seen = counts(&b, &eps, 10_000);
        // Expect 1000 each; 700 is more than 9 standard deviations away.
        assert!(seen.iter().all(|&c| c > 700), "{seen:?}");
    }

    #[test]
    fn balance_power_of_two_prefers_the_less_loaded() {
        let b = Balancer::new(Strategy::PowerOfTwo);
        let eps = set(3);
        // Five requests in flight on the first endpoint (a one-endpoint set shares its slot).
        let held: Vec<Picked<'_>> = (0..5).map(|_| b.pick(&eps[..1]).unwrap()).collect();
        assert_eq!(b.in_flight(&eps[0]), 5);
        // Any two distinct endpoints include an idle one, so the loaded one never wins.
        let seen = counts(&b, &eps, 3000);
        assert_eq!(seen[0], 0, "{seen:?}");
        assert!(seen[1] > 1000 && seen[2] > 1000, "{seen:?}");
        drop(held);
        assert_eq!(b.in_flight(&eps[0]), 0);
        let seen = counts(&b, &eps, 3000);
        assert!(seen.iter().all(|&c| c > 700), "idle again, shared again: {seen:?}");
    }

    #[test]
    fn balance_power_of_two_spreads_held_requests() {
        // Holding every pick, p2c keeps in-flight counts close together.
        let b = Balancer::new(Strategy::PowerOfTwo);
        let eps = set(8);
        let held: Vec<Picked<'_>> = (0..800).map(|_| b.pick(&eps).unwrap()).collect();
        let loads: Vec<usize> = eps.iter().map(|e| b.in_flight(e)).collect();
        let (min, max) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
        assert!(max - min <= 10, "{loads:?}");
        drop(held);
        assert!(eps.iter().all(|e| b.in_flight(e) == 0));
    }

    #[test]
    fn balance_in_flight_guard_ends_with_the_call() {
        let b = Balancer::new(Strategy::RoundRobin);
        let eps = set(1);
        let p = b.pick(&eps).unwrap();
        let q = b.pick(&eps).unwrap();
        assert_eq!(p.guard().count(), 2);
        drop(p);
        assert_eq!(b.in_flight(&eps[0]), 1);
        let guard = q.into_guard();
        assert_eq!(guard.count(), 1);
        drop(guard);
        assert_eq!(b.in_flight(&eps[0]), 0);
        // A panic while holding the guard still releases it.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _p = b.pick(&eps).unwrap();
            panic!("request handler failed");
        }));
        assert!(r.is_err());
        assert_eq!(b.in_flight(&eps[0]), 0);
    }

    #[test]
    fn balance_pick_other_never_returns_the_avoided() {
        for strategy in [Strategy::Random, Strategy::RoundRobin, Strategy::PowerOfTwo] {
            let b = Balancer::new(strategy);
            let eps = set(3);
            for _ in 0..300 {
                assert!(!same_key(b.pick_other(&eps, &eps[1]).unwrap().endpoint(), &eps[1]));
            }
        }
    }

    #[test]
    fn balance_keys_by_ip_and_port() {
        let b = Balancer::new(Strategy::RoundRobin);
        let eps = vec![ep("10.0.0.1", 80), ep("10.0.0.1", 81), ep("10.0.0.2", 80)];
        let _a = b.pick(&eps).unwrap();
        assert_eq!(b.in_flight(&eps[0]), 1);
        assert_eq!(b.in_flight(&eps[1]), 0);
        assert_eq!(b.in_flight(&eps[2]), 0);
        // Another instance on the same address shares the state.
        let mut same = ep("10.0.0.1", 80);
        same.instance_id = "other".into();
        assert_eq!(b.in_flight(&same), 1);
    }

    #[test]
    fn balance_table_forgets_endpoints_that_left() {
        let b = Balancer::new(Strategy::Random);
        let kept = set(2);
        let held = b.pick(&kept).unwrap();
        for round in 0..20u16 {
            let eps: Vec<Endpoint> = (0..100).map(|i| ep("10.1.0.1", round * 100 + i)).collect();
            b.pick(&eps).unwrap();
        }
        let len = b.read().map.len();
        assert!(len <= 2 * 100 + PRUNE_SLACK + 100, "{len}");
        assert_eq!(b.in_flight(held.endpoint()), 1, "endpoints with requests in flight stay");
    }
}
