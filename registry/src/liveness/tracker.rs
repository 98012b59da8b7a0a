//! The leader's in-memory liveness book: when each live node and instance must be heard from
//! next, ordered by that deadline.
//!
//! Shaped like mini-redis's expirations: a map from id to its lease and an ordered set of
//! (deadline, id), so finding what expired costs the number of expiries, not the fleet size,
//! and the sweeper sleeps until the earliest deadline (woken through [`Tracker::woken`] when an
//! earlier one appears). Every method takes the current time as an argument so tests run
//! without sleeping; the callers pass `Instant::now()`.
//!
//! The book belongs to one term: a replica that leads in term 5, follows, then leads in term 7
//! starts a new book at 7 even if it never saw itself as follower in between, so it never
//! sweeps with clocks from an older reign. Starting a book gives every live record a full TTL
//! from that moment (DESIGN.md, invariant 5).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::state::{Lease, LeaseKind, LeaseObserver};

/// Ids with a unix-ms time each: heartbeats to replicate, or a sweep's verdict (expire `id`,
/// last seen at that time).
pub type SeenList = Vec<(String, u64)>;

/// Default TTLs for records that declared none (`ttl_ms == 0`).
#[derive(Debug, Clone, Copy)]
pub struct DefaultTtls {
    pub node: Duration,
    pub instance: Duration,
}

type Key = (LeaseKind, String);

#[derive(Debug, Clone, Copy)]
struct Entry {
    deadline: Instant,
    ttl: Duration,
    /// Leader time of the last heartbeat known for it (what an expiry verdict carries).
    seen_ms: u64,
}

#[derive(Default)]
struct Book {
    /// The term this book belongs to; `None` while this replica does not lead.
    term: Option<u64>,
    entries: HashMap<Key, Entry>,
    by_deadline: BTreeSet<(Instant, Key)>,
    /// Heartbeats not yet replicated: id -> unix ms.
    pending: HashMap<Key, u64>,
}

impl Book {
    fn set(&mut self, key: Key, entry: Entry) {
        if let Some(old) = self.entries.insert(key.clone(), entry) {
            self.by_deadline.remove(&(old.deadline, key.clone()));
        }
        self.by_deadline.insert((entry.deadline, key));
    }

    fn remove(&mut self, key: &Key) {
        if let Some(old) = self.entries.remove(key) {
            self.by_deadline.remove(&(old.deadline, key.clone()));
        }
    }

    fn earliest(&self) -> Option<Instant> {
        self.by_deadline.first().map(|(at, _)| *at)
    }
}

/// A std mutex, never held across `.await`: every operation is a few map updates. Lock order:
/// the registry's lock (when held) before this one; apply calls in with the registry locked.
pub struct Tracker {
    book: Mutex<Book>,
    defaults: DefaultTtls,
    /// Signalled when a deadline earlier than the one the sweeper sleeps towards appears.
    wake: Notify,
}

impl Tracker {
    pub fn new(defaults: DefaultTtls) -> Tracker {
        Tracker { book: Mutex::new(Book::default()), defaults, wake: Notify::new() }
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The TTL a lease gets: its own, or the default for its kind.
    pub fn ttl_of(&self, kind: LeaseKind, ttl_ms: u64) -> Duration {
        match (ttl_ms, kind) {
            (0, LeaseKind::Node) => self.defaults.node,
            (0, LeaseKind::Instance) => self.defaults.instance,
            (ms, _) => Duration::from_millis(ms),
        }
    }

    /// Starts a book for `term` holding every live lease, each with a full TTL from `now`.
    pub fn lead<'a>(&self, term: u64, now: Instant, leases: impl Iterator<Item = (LeaseKind, &'a str, Lease)>) {
        let mut book = Book { term: Some(term), ..Book::default() };
        for (kind, id, lease) in leases {
            let ttl = self.ttl_of(kind, lease.ttl_ms);
            book.set((kind, id.to_string()), Entry { deadline: now + ttl, ttl, seen_ms: lease.last_seen_ms });
        }
        *self.lock() = book;
        self.wake.notify_one();
    }

    pub fn stop_leading(&self) {
        *self.lock() = Book::default();
    }

    /// The term the current book belongs to.
    pub fn term(&self) -> Option<u64> {
        self.lock().term
    }

    /// Records heartbeats received at `now` (`unix_ms` on the leader's wall clock). Refused
    /// (false) unless the book belongs to `term`, the term the caller checked its lease in.
    pub fn record(&self, term: u64, now: Instant, unix_ms: u64, nodes: &[String], instances: &[String]) -> bool {
        let mut book = self.lock();
        if book.term != Some(term) {
            return false;
        }
        let kinds =
            nodes.iter().map(|id| (LeaseKind::Node, id)).chain(instances.iter().map(|id| (LeaseKind::Instance, id)));
        for (kind, id) in kinds {
            let key = (kind, id.clone());
            // Unknown here (its registration is still on the way, or it is about to be
            // revived by this renewal): the default TTL until the log says otherwise.
            let ttl = book.entries.get(&key).map(|e| e.ttl).unwrap_or_else(|| self.ttl_of(kind, 0));
            book.set(key.clone(), Entry { deadline: now + ttl, ttl, seen_ms: unix_ms });
            book.pending.insert(key, unix_ms);
        }
        true
    }

    /// A command changed a lease. One that is news from the record (`heard_from`) restarts its
    /// clock; any other keeps the deadline it had (a record the book did not hold gets a full
    /// TTL from now); a record no longer alive leaves the book.
    pub fn set_lease(&self, kind: LeaseKind, id: &str, lease: Option<Lease>, heard_from: bool, now: Instant) {
        let mut book = self.lock();
        if book.term.is_none() {
            return;
        }
        let key = (kind, id.to_string());
        let Some(lease) = lease else {
            book.remove(&key);
            return;
        };
        let ttl = self.ttl_of(kind, lease.ttl_ms);
        let kept = book.entries.get(&key).filter(|_| !heard_from).map(|e| e.deadline);
        let deadline = kept.unwrap_or(now + ttl);
        let earlier = book.earliest().is_none_or(|e| deadline < e);
        let seen_ms = book.entries.get(&key).map_or(lease.last_seen_ms, |e| e.seen_ms.max(lease.last_seen_ms));
        book.set(key, Entry { deadline, ttl, seen_ms });
        drop(book);
        if earlier {
            self.wake.notify_one();
        }
    }

    /// Takes the heartbeats to replicate in the next `Renew` entry.
    pub fn take_pending(&self) -> (SeenList, SeenList) {
        let mut book = self.lock();
        split_by_kind(book.pending.drain())
    }

    /// Puts back heartbeats whose `Renew` entry failed, keeping the newer time per id.
    pub fn restore_pending(&self, nodes: SeenList, instances: SeenList) {
        let mut book = self.lock();
        if book.term.is_none() {
            return;
        }
        let keyed = nodes.into_iter().map(|(id, ms)| ((LeaseKind::Node, id), ms));
        for (key, ms) in keyed.chain(instances.into_iter().map(|(id, ms)| ((LeaseKind::Instance, id), ms))) {
            let e = book.pending.entry(key).or_insert(ms);
            *e = (*e).max(ms);
        }
    }

    /// Up to `limit` of the records whose deadline passed by `now`, earliest first, as (nodes,
    /// instances) with their last-seen time. They stay in the book with a deadline `retry`
    /// later: the expiry entry removes them when it applies, and if it fails they come up again.
    /// The limit keeps one expiry entry small when thousands fall silent together.
    pub fn take_expired(&self, now: Instant, retry: Duration, limit: usize) -> (SeenList, SeenList) {
        let mut book = self.lock();
        let mut expired = Vec::new();
        while let Some((deadline, key)) = book.by_deadline.first().cloned() {
            if deadline > now || expired.len() >= limit {
                break;
            }
            let Some(entry) = book.entries.get(&key).copied() else {
                book.by_deadline.pop_first();
                continue;
            };
            expired.push((key.clone(), entry.seen_ms));
            book.set(key, Entry { deadline: now + retry, ..entry });
        }
        split_by_kind(expired.into_iter())
    }

    /// The earliest deadline in the book.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.lock().earliest()
    }

    /// Resolves when an earlier deadline may have appeared (or a book started).
    pub async fn woken(&self) {
        self.wake.notified().await
    }
}

fn split_by_kind(items: impl Iterator<Item = (Key, u64)>) -> (SeenList, SeenList) {
    let (mut nodes, mut instances) = (Vec::new(), Vec::new());
    for ((kind, id), ms) in items {
        match kind {
            LeaseKind::Node => nodes.push((id, ms)),
            LeaseKind::Instance => instances.push((id, ms)),
        }
    }
    (nodes, instances)
}

impl LeaseObserver for Tracker {
    fn lease_changed(&self, kind: LeaseKind, id: &str, lease: Option<Lease>, heard_from: bool) {
        self.set_lease(kind, id, lease, heard_from, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_millis(1000);
    const RETRY: Duration = Duration::from_millis(100);
    const ALL: usize = usize::MAX;

    fn tracker() -> Tracker {
        Tracker::new(DefaultTtls { node: TTL, instance: Duration::from_millis(5000) })
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ids(v: &[(String, u64)]) -> Vec<&str> {
        v.iter().map(|(id, _)| id.as_str()).collect()
    }

    fn lease(ttl_ms: u64, last_seen_ms: u64) -> Lease {
        Lease { ttl_ms, last_seen_ms }
    }

    #[test]
    fn nothing_expires_within_one_ttl_of_becoming_leader() {
        let t = tracker();
        let t0 = Instant::now();
        // A node whose last replicated heartbeat is ancient still gets a full TTL.
        t.lead(5, t0, [(LeaseKind::Node, "a", lease(0, 1))].into_iter());
        assert!(t.take_expired(t0 + ms(999), RETRY, ALL).0.is_empty());
        let (nodes, _) = t.take_expired(t0 + ms(1000), RETRY, ALL);
        assert_eq!(nodes, vec![("a".to_string(), 1)]);
    }

    #[test]
    fn heartbeats_push_the_deadline_and_are_handed_out_once() {
        let t = tracker();
        let t0 = Instant::now();
        t.lead(1, t0, [(LeaseKind::Node, "a", lease(0, 1)), (LeaseKind::Node, "b", lease(0, 1))].into_iter());
        assert!(t.record(1, t0 + ms(600), 600, &["a".to_string()], &[]));
        let (nodes, _) = t.take_expired(t0 + ms(1200), RETRY, ALL);
        assert_eq!(ids(&nodes), vec!["b"]);
        let (pending, _) = t.take_pending();
        assert_eq!(pending, vec![("a".to_string(), 600)]);
        assert!(t.take_pending().0.is_empty());
        assert_eq!(t.next_deadline(), Some(t0 + ms(1300)), "b retries; a is due at 1600");
    }

    #[test]
    fn each_lease_keeps_its_own_ttl() {
        let t = tracker();
        let t0 = Instant::now();
        t.lead(
            1,
            t0,
            [
                (LeaseKind::Node, "fast", lease(300, 0)),
                (LeaseKind::Node, "old-client", lease(0, 0)),
                (LeaseKind::Instance, "svc", lease(0, 0)),
            ]
            .into_iter(),
        );
        assert_eq!(ids(&t.take_expired(t0 + ms(300), RETRY, ALL).0), vec!["fast"]);
        assert!(t.take_expired(t0 + ms(999), RETRY, ALL).1.is_empty());
        assert_eq!(ids(&t.take_expired(t0 + ms(1000), RETRY, ALL).0), vec!["old-client"]);
        assert_eq!(ids(&t.take_expired(t0 + ms(5000), RETRY, ALL).1), vec!["svc"]);
    }

    #[test]
    fn a_heartbeat_for_another_term_is_refused() {
        let t = tracker();
        let t0 = Instant::now();
        assert!(!t.record(3, t0, 0, &["a".to_string()], &[]), "not leading");
        t.lead(5, t0, std::iter::empty());
        assert!(!t.record(3, t0, 0, &["a".to_string()], &[]), "stale term");
        assert!(t.record(5, t0, 0, &["a".to_string()], &[]));
        // Leading again in a later term starts a new book: the old clocks are gone.
        t.lead(7, t0 + ms(10), std::iter::empty());
        assert_eq!(t.term(), Some(7));
        assert!(t.take_pending().0.is_empty());
        assert!(t.next_deadline().is_none());
        t.stop_leading();
        assert_eq!(t.term(), None);
    }

    #[test]
    fn writes_restart_a_clock_and_dead_records_leave() {
        let t = tracker();
        let t0 = Instant::now();
        t.lead(1, t0, [(LeaseKind::Instance, "i", lease(2000, 100))].into_iter());
        // Re-registered at 1500 with a shorter TTL: due at 2000, not at 2000 + old TTL.
        t.set_lease(LeaseKind::Instance, "i", Some(lease(500, 200)), true, t0 + ms(1500));
        assert!(t.take_expired(t0 + ms(1999), RETRY, ALL).1.is_empty());
        assert_eq!(t.take_expired(t0 + ms(2000), RETRY, ALL).1, vec![("i".to_string(), 200)]);
        t.set_lease(LeaseKind::Instance, "i", None, false, t0 + ms(2050));
        assert!(t.next_deadline().is_none());
    }

    #[test]
    fn a_command_that_is_not_news_from_the_node_keeps_its_clock() {
        let t = tracker();
        let t0 = Instant::now();
        t.lead(1, t0, [(LeaseKind::Node, "busy", lease(0, 0))].into_iter());
        // A refused delete, retried by an operator every 400 ms, must not keep it alive.
        for step in 1..5 {
            t.set_lease(LeaseKind::Node, "busy", Some(lease(0, 0)), false, t0 + ms(400 * step));
        }
        assert_eq!(ids(&t.take_expired(t0 + ms(1000), RETRY, ALL).0), vec!["busy"]);
    }

    #[test]
    fn a_failed_expiry_comes_up_again_after_the_retry_interval() {
        let t = tracker();
        let t0 = Instant::now();
        t.lead(1, t0, [(LeaseKind::Node, "a", lease(0, 1))].into_iter());
        assert_eq!(t.take_expired(t0 + ms(1000), RETRY, ALL).0.len(), 1);
        assert!(t.take_expired(t0 + ms(1050), RETRY, ALL).0.is_empty());
        assert_eq!(t.take_expired(t0 + ms(1100), RETRY, ALL).0.len(), 1);
    }

    #[test]
    fn one_sweep_takes_at_most_the_limit_earliest_first() {
        let t = tracker();
        let t0 = Instant::now();
        let names: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
        t.lead(1, t0, names.iter().map(|id| (LeaseKind::Node, id.as_str(), lease(0, 0))));
        assert!(t.record(1, t0 + ms(5), 5, &names[..5], &[]), "n0..n4 are due 5 ms later");
        let (first, _) = t.take_expired(t0 + ms(2000), RETRY, 4);
        assert_eq!(ids(&first), vec!["n5", "n6", "n7", "n8"]);
        let (second, _) = t.take_expired(t0 + ms(2000), RETRY, 4);
        assert_eq!(ids(&second), vec!["n9", "n0", "n1", "n2"]);
    }

    #[test]
    fn a_follower_records_and_learns_nothing() {
        let t = tracker();
        let t0 = Instant::now();
        t.set_lease(LeaseKind::Node, "a", Some(lease(0, 0)), true, t0);
        assert!(t.next_deadline().is_none());
        assert!(t.take_expired(t0 + ms(100_000), RETRY, ALL).0.is_empty());
    }
}
