//! Checks a recorded history against a register per key. Keys are independent registers, so
//! each key's sub-history is checked alone (P-compositionality): the history is linearizable
//! iff every key's is. The search itself is in [`super::search`]; this module turns ops into
//! what it searches, and its findings into a report.
//!
//! What each outcome tells: a `fail` op never happened and is dropped; an `unknown` read
//! says nothing and is dropped; an `unknown` write may take effect at any time after its
//! invocation, or never. Such a write whose value no read returned is dropped (placing it
//! "never" explains everything it could); one whose value was read must take effect before
//! the first of those reads returns, which is then its deadline (exact when it is the only
//! write of that value, as with the runner's unique values; otherwise it stays open).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use super::history::{Kind, Op, Outcome};
use super::search::{ABSENT, Action, Entry, Found, Meter, State, Stuck, search};

/// How much work the whole check may do before answering `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Search steps, over every key.
    pub max_steps: u64,
    pub max_time: Duration,
}

impl Default for Budget {
    /// A long run's history takes a step or two per op; a step may cache one configuration
    /// (some 50 bytes), so the steps also bound memory (here to a few hundred MB).
    fn default() -> Self {
        Budget { max_steps: 5_000_000, max_time: Duration::from_secs(60) }
    }
}

/// The verdict on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVerdict {
    Linearizable,
    Violation(Box<Violation>),
    /// The budget ran out before the search decided.
    BudgetExceeded,
}

/// No linearization of one key's ops exists; what the search saw where it got furthest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    /// Ops of the key that were checked (after dropping `fail` ops and uninformative ones).
    pub checked: usize,
    /// How many of them the longest valid prefix linearized.
    pub linearized: usize,
    /// The register's value after that prefix (`None`: absent).
    pub value: Option<String>,
    /// The last ops of that prefix, in linearization order.
    pub tail: Vec<Op>,
    /// The op that answered before the ops open with it could be ordered to explain it.
    pub blocking: Option<Op>,
    /// The ops open at that point (invoked, not linearized), `blocking` included.
    pub open: Vec<Op>,
    /// Values some read of the key returned that no write which may have happened wrote.
    pub never_written: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.value.as_deref().unwrap_or("absent");
        writeln!(
            f,
            "key {}: not linearizable; {} of {} ops linearized, then the register holds {value}",
            self.key, self.linearized, self.checked
        )?;
        for op in &self.tail {
            writeln!(f, "  linearized: {op}")?;
        }
        if let Some(op) = &self.blocking {
            writeln!(f, "  answered before any order of the open ops explains it: {op}")?;
        }
        for op in &self.open {
            writeln!(f, "  open: {op}")?;
        }
        if !self.never_written.is_empty() {
            writeln!(
                f,
                "  read but never written by a write that may have happened: {}",
                self.never_written.join(", ")
            )?;
        }
        Ok(())
    }
}

/// One key's verdict and the size of its sub-history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    pub key: String,
    pub ops: usize,
    /// Ops left to search after dropping what carries no information.
    pub checked: usize,
    pub verdict: KeyVerdict,
}

/// The whole history's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Violation,
    /// No violation found, but some key was not decided within the budget.
    Unknown,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Violation => "violation",
            Verdict::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub keys: Vec<KeyReport>,
    pub steps: u64,
}

impl Report {
    /// A violation on any key decides; else any undecided key makes it unknown.
    pub fn verdict(&self) -> Verdict {
        let verdicts = || self.keys.iter().map(|k| &k.verdict);
        if verdicts().any(|v| matches!(v, KeyVerdict::Violation(_))) {
            Verdict::Violation
        } else if verdicts().any(|v| matches!(v, KeyVerdict::BudgetExceeded)) {
            Verdict::Unknown
        } else {
            Verdict::Ok
        }
    }

    pub fn violations(&self) -> impl Iterator<Item = &Violation> {
        self.keys.iter().filter_map(|k| match &k.verdict {
            KeyVerdict::Violation(v) => Some(v.as_ref()),
            _ => None,
        })
    }
}

/// Checks every key of `history` within `budget` (shared by the keys, in key order; keys left
/// when it runs out are `BudgetExceeded`).
pub fn check(history: &[Op], budget: Budget) -> Report {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut meter = Meter::new(budget.max_steps, budget.max_time);
    let keys = by_key.into_iter().map(|(key, ops)| check_key(key, &ops, &mut meter)).collect();
    Report { keys, steps: meter.steps() }
}

fn check_key(key: &str, ops: &[&Op], meter: &mut Meter) -> KeyReport {
    let register = Register::of(ops);
    let checked = register.entries.len();
    let verdict = if meter.exhausted() {
        KeyVerdict::BudgetExceeded
    } else {
        match search(&register.entries, meter) {
            Found::Linearizable => KeyVerdict::Linearizable,
            Found::OutOfBudget => KeyVerdict::BudgetExceeded,
            Found::Violation(stuck) => KeyVerdict::Violation(Box::new(register.violation(key, &stuck))),
        }
    };
    tracing::debug!(key, ops = ops.len(), checked, steps = meter.steps(), "key checked");
    KeyReport { key: key.to_string(), ops: ops.len(), checked, verdict }
}

/// One key's ops as the search sees them: values interned, entries sorted by call, each
/// entry remembering the op it came from.
struct Register<'a> {
    entries: Vec<Entry>,
    source: Vec<&'a Op>,
    values: Vec<&'a str>,
}

impl<'a> Register<'a> {
    fn of(ops: &[&'a Op]) -> Register<'a> {
        let mut ids: HashMap<&'a str, State> = HashMap::new();
        let mut values: Vec<&'a str> = Vec::new();
        let mut intern = |v: &'a str| {
            *ids.entry(v).or_insert_with(|| {
                values.push(v);
                values.len() as State
            })
        };
        // First pass: what reads returned, and who may have written what.
        let mut first_read_ret: HashMap<State, u64> = HashMap::new();
        let mut writers: HashMap<State, usize> = HashMap::new();
        let mut kept: Vec<(&'a Op, Action)> = Vec::new();
        for &op in ops {
            let action = match (&op.kind, &op.outcome) {
                (_, Outcome::Fail) | (Kind::Read, Outcome::Unknown) => continue,
                (Kind::Read, Outcome::Ok(seen)) => {
                    let v = seen.as_deref().map_or(ABSENT, &mut intern);
                    let ret = nanos(op.complete);
                    first_read_ret.entry(v).and_modify(|r| *r = (*r).min(ret)).or_insert(ret);
                    Action::Read(v)
                }
                (Kind::Write(value), _) => {
                    let v = intern(value);
                    *writers.entry(v).or_default() += 1;
                    Action::Write(v)
                }
            };
            kept.push((op, action));
        }
        let mut rows: Vec<(Entry, &'a Op)> = Vec::with_capacity(kept.len());
        for (op, action) in kept {
            let call = nanos(op.invoke);
            let ret = match (&op.outcome, action) {
                (Outcome::Unknown, Action::Write(v)) => match first_read_ret.get(&v) {
                    None => continue,
                    Some(&first) if writers.get(&v) == Some(&1) => first.max(call),
                    Some(_) => u64::MAX,
                },
                _ => nanos(op.complete).max(call),
            };
            rows.push((Entry { call, ret, action }, op));
        }
        rows.sort_by_key(|(e, op)| (e.call, e.ret, op.client));
        let (entries, source) = rows.into_iter().unzip();
        Register { entries, source, values }
    }

    fn value(&self, state: State) -> Option<String> {
        if state == ABSENT { None } else { self.values.get(state as usize - 1).map(|v| v.to_string()) }
    }

    fn violation(&self, key: &str, stuck: &Stuck) -> Violation {
        let op = |i: usize| self.source.get(i).map(|&o| o.clone());
        let written: HashSet<State> = self
            .entries
            .iter()
            .filter_map(|e| match e.action {
                Action::Write(v) => Some(v),
                Action::Read(_) => None,
            })
            .collect();
        let never_written: BTreeSet<String> = self
            .entries
            .iter()
            .filter_map(|e| match e.action {
                Action::Read(v) if v != ABSENT && !written.contains(&v) => self.value(v),
                _ => None,
            })
            .collect();
        Violation {
            key: key.to_string(),
            checked: self.entries.len(),
            linearized: stuck.depth,
            value: self.value(stuck.state),
            tail: stuck.tail.iter().filter_map(|&i| op(i)).collect(),
            blocking: op(stuck.blocking),
            open: stuck.open.iter().filter_map(|&i| op(i)).collect(),
            never_written: never_written.into_iter().collect(),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
}
