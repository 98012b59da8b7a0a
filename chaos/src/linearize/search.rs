//! The search for a linearization of one register's history: Wing & Gong's backtracking over
//! the ops that are open at each point, with Lowe's memoization of (set of ops linearized,
//! register state), as in Knossos and Porcupine. Iterative (no recursion on input size) and
//! bounded by a [`Meter`].
//!
//! Cost: every step either lifts an op (and caches the configuration it reaches) or moves on;
//! a configuration is never explored twice, so the work is bounded by the number of distinct
//! (linearized set, state) pairs. With `c` clients at most `c` ops are open at once and that is
//! about `n · 2^c · values`; unknown writes that stay open to the end widen it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The register's state: `0` is "absent", other values are interned value ids.
pub type State = u32;
pub const ABSENT: State = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A read that returned this state.
    Read(State),
    Write(State),
}

impl Action {
    fn step(self, state: State) -> Option<State> {
        match self {
            Action::Read(seen) => (seen == state).then_some(state),
            Action::Write(v) => Some(v),
        }
    }
}

/// One op to linearize: it takes effect at one instant within `[call, ret]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub call: u64,
    /// `u64::MAX`: may take effect at any time after `call`.
    pub ret: u64,
    pub action: Action,
}

/// Steps and time left for the whole check (shared by every key).
#[derive(Debug)]
pub struct Meter {
    steps: u64,
    max_steps: u64,
    deadline: Instant,
}

/// Steps between two looks at the clock.
const CLOCK_EVERY: u64 = 4096;

impl Meter {
    pub fn new(max_steps: u64, max_time: Duration) -> Meter {
        let now = Instant::now();
        Meter { steps: 0, max_steps, deadline: now.checked_add(max_time).unwrap_or(now + Duration::from_secs(86_400)) }
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Counts one step; `false` once the budget is spent.
    fn tick(&mut self) -> bool {
        self.steps += 1;
        if self.steps > self.max_steps {
            return false;
        }
        !self.steps.is_multiple_of(CLOCK_EVERY) || Instant::now() < self.deadline
    }

    pub fn exhausted(&self) -> bool {
        self.steps >= self.max_steps || Instant::now() >= self.deadline
    }
}

/// Where the search got furthest before it had to give up: what explains the violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// How many ops were linearized at that point.
    pub depth: usize,
    pub state: State,
    /// The last ops linearized, oldest first (entry indices).
    pub tail: Vec<usize>,
    /// The op whose answer came before any order of the open ops could explain the state.
    pub blocking: usize,
    /// The ops open at that point (invoked, not linearized), `blocking` included.
    pub open: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Linearizable,
    Violation(Stuck),
    OutOfBudget,
}

/// Ops linearized before the stuck point that a report shows.
const TAIL: usize = 6;
/// Open ops a report shows at most.
const OPEN: usize = 16;
const NIL: usize = usize::MAX;

/// Searches a linearization of `entries` (sorted by `call`) from the absent register.
pub fn search(entries: &[Entry], meter: &mut Meter) -> Found {
    let mut list = Events::new(entries);
    let mut done = Linearized::new(entries.len());
    let mut seen: HashSet<(State, Compact)> = HashSet::new();
    // (call event lifted, state before it)
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state = ABSENT;
    let mut stuck: Option<Stuck> = None;
    let mut at = list.first();
    while list.first() != NIL {
        if !meter.tick() {
            return Found::OutOfBudget;
        }
        if at != NIL && list.is_call(at) {
            let e = list.entry(at);
            if let Some(next) = entries[e].action.step(state) {
                done.set(e);
                if seen.insert((next, done.compact())) {
                    stack.push((at, state));
                    state = next;
                    list.lift(at);
                    at = list.first();
                    continue;
                }
                done.clear(e);
            }
            at = list.next(at);
            continue;
        }
        // A return event: its op was not linearized in time with this prefix; undo the last.
        if stuck.as_ref().is_none_or(|s| stack.len() > s.depth) {
            stuck = Some(list.stuck_here(at, state, &stack));
        }
        let Some((call, before)) = stack.pop() else {
            return Found::Violation(stuck.unwrap_or_else(|| list.stuck_here(at, state, &stack)));
        };
        state = before;
        done.clear(list.entry(call));
        list.unlift(call);
        at = list.next(call);
    }
    Found::Linearizable
}

/// The call and return events of every entry in time order, as a doubly linked list from
/// which a linearized entry's two events are lifted (and put back on backtracking).
struct Events {
    /// Per event: entry index, and whether it is the call.
    entry: Vec<(usize, bool)>,
    /// Per call event: its return event.
    ret_of: Vec<usize>,
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
}

impl Events {
    fn new(entries: &[Entry]) -> Events {
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(entries.len() * 2);
        for (i, e) in entries.iter().enumerate() {
            // A return no earlier than its call, even from a clock that went wrong.
            order.push((e.call, false, i));
            order.push((e.ret.max(e.call), true, i));
        }
        // At equal times calls first: ops that touch are taken as concurrent (the lenient
        // reading: it may miss a violation, it never invents one).
        order.sort_by_key(|&(t, is_ret, i)| (t, is_ret, i));
        let n = order.len();
        let head = n;
        let mut ev = Events {
            entry: order.iter().map(|&(_, is_ret, i)| (i, !is_ret)).collect(),
            ret_of: vec![NIL; n],
            next: (1..=n).map(|i| if i == n { NIL } else { i }).chain([if n == 0 { NIL } else { 0 }]).collect(),
            prev: (0..n).map(|i| if i == 0 { head } else { i - 1 }).chain([NIL]).collect(),
            head,
        };
        let mut call_at = vec![NIL; entries.len()];
        for (pos, &(_, is_ret, i)) in order.iter().enumerate() {
            if is_ret {
                ev.ret_of[call_at[i]] = pos;
            } else {
                call_at[i] = pos;
            }
        }
        ev
    }

    fn first(&self) -> usize {
        self.next[self.head]
    }

    fn next(&self, at: usize) -> usize {
        self.next[at]
    }

    fn is_call(&self, at: usize) -> bool {
        self.entry[at].1
    }

    fn entry(&self, at: usize) -> usize {
        self.entry[at].0
    }

    fn unlink(&mut self, at: usize) {
        let (p, n) = (self.prev[at], self.next[at]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, at: usize) {
        let (p, n) = (self.prev[at], self.next[at]);
        self.next[p] = at;
        if n != NIL {
            self.prev[n] = at;
        }
    }

    /// Takes a call event and its return out of the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.ret_of[call]);
    }

    /// Puts them back, in the reverse order of `lift`.
    fn unlift(&mut self, call: usize) {
        self.relink(self.ret_of[call]);
        self.relink(call);
    }

    /// The picture at a return event the search cannot pass.
    fn stuck_here(&self, at: usize, state: State, stack: &[(usize, State)]) -> Stuck {
        let tail = stack[stack.len().saturating_sub(TAIL)..].iter().map(|&(c, _)| self.entry(c)).collect();
        let mut open = Vec::new();
        let mut e = self.first();
        while e != NIL && e != at && open.len() < OPEN {
            if self.is_call(e) {
                open.push(self.entry(e));
            }
            e = self.next(e);
        }
        let blocking = if at == NIL { open.last().copied().unwrap_or(0) } else { self.entry(at) };
        Stuck { depth: stack.len(), state, tail, blocking, open }
    }
}

/// The set of linearized entries, with a compact canonical form for the cache: in a real
/// history the set is "every entry up to some index, and a few after it" (entries are sorted
/// by call and only the open ones are undecided), so the cache keeps only the words from the
/// first unset bit to the last set one.
#[derive(Debug)]
struct Linearized {
    words: Vec<u64>,
    /// Words below are all ones.
    full: usize,
    /// Words from here on are all zeros.
    end: usize,
}

impl Linearized {
    fn new(n: usize) -> Linearized {
        Linearized { words: vec![0; n.div_ceil(64)], full: 0, end: 0 }
    }

    fn set(&mut self, i: usize) {
        let w = i / 64;
        self.words[w] |= 1 << (i % 64);
        self.end = self.end.max(w + 1);
        while self.full < self.words.len() && self.words[self.full] == u64::MAX {
            self.full += 1;
        }
    }

    fn clear(&mut self, i: usize) {
        let w = i / 64;
        self.words[w] &= !(1 << (i % 64));
        self.full = self.full.min(w);
        while self.end > 0 && self.words[self.end - 1] == 0 {
            self.end -= 1;
        }
    }

    /// The same set, storing only the undecided words.
    fn compact(&self) -> Compact {
        let end = self.end.max(self.full);
        Compact { full: self.full, words: self.words[self.full..end].into() }
    }
}

/// A [`Linearized`] as the cache keeps it: `full` words of ones, then `words`, then zeros.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Compact {
    full: usize,
    words: Box<[u64]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter() -> Meter {
        Meter::new(1_000_000, Duration::from_secs(10))
    }

    fn w(call: u64, ret: u64, v: State) -> Entry {
        Entry { call, ret, action: Action::Write(v) }
    }

    fn r(call: u64, ret: u64, v: State) -> Entry {
        Entry { call, ret, action: Action::Read(v) }
    }

    #[test]
    fn empty_and_sequential_histories_linearize() {
        assert_eq!(search(&[], &mut meter()), Found::Linearizable);
        let h = [r(0, 1, ABSENT), w(2, 3, 1), r(4, 5, 1), w(6, 7, 2), r(8, 9, 2)];
        assert_eq!(search(&h, &mut meter()), Found::Linearizable);
    }

    #[test]
    fn a_read_may_take_effect_before_a_concurrent_write() {
        // The read sees the old value although it answered after the write did.
        let h = [w(0, 1, 1), w(2, 10, 2), r(3, 12, 1)];
        assert_eq!(search(&h, &mut meter()), Found::Linearizable);
    }

    #[test]
    fn a_stale_read_names_where_it_got_stuck() {
        let h = [w(0, 1, 1), w(2, 3, 2), r(4, 5, 1)];
        let Found::Violation(stuck) = search(&h, &mut meter()) else { panic!("not a violation") };
        assert_eq!(stuck.blocking, 2);
        assert_eq!(stuck.depth, 2);
        assert_eq!(stuck.state, 2);
        assert_eq!(stuck.tail, vec![0, 1]);
        assert_eq!(stuck.open, vec![2]);
    }

    #[test]
    fn an_open_write_may_come_last() {
        let h = [w(0, u64::MAX, 1), r(1, 2, ABSENT), r(3, 4, 1)];
        assert_eq!(search(&h, &mut meter()), Found::Linearizable);
        let h = [w(0, u64::MAX, 1), r(1, 2, 1), r(3, 4, ABSENT)];
        assert!(matches!(search(&h, &mut meter()), Found::Violation(_)));
    }

    #[test]
    fn the_step_budget_is_kept() {
        // 30 concurrent writes and a read of a value none wrote: exponential without a bound.
        let mut h: Vec<Entry> = (1..=30).map(|v| w(0, 100, v)).collect();
        h.push(r(0, 100, 99));
        let mut m = Meter::new(10_000, Duration::from_secs(10));
        assert_eq!(search(&h, &mut m), Found::OutOfBudget);
        assert!(m.exhausted());
        assert!(m.steps() <= 10_001);
    }

    #[test]
    fn the_cached_form_of_a_set_is_canonical() {
        let mut a = Linearized::new(200);
        for i in 0..130 {
            a.set(i);
        }
        a.set(150);
        let mut b = Linearized::new(200);
        b.set(150);
        for i in (0..130).rev() {
            b.set(i);
        }
        b.set(190);
        b.clear(190);
        assert_eq!(a.compact(), b.compact());
        assert_eq!(a.compact().words.len(), 1);
        b.clear(3);
        assert_ne!(a.compact(), b.compact());
    }
}
