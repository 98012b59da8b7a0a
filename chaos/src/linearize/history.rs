//! What the clients did: one record per KV operation (who, what, on which key, when it was
//! invoked and answered, and how it ended). Each client task keeps its own [`ClientLog`] (no
//! lock on the hot path); the logs are merged once the clients are done. Every time is taken
//! from one [`Clock`], so times of different clients compare.

use std::fmt;
use std::time::{Duration, Instant};

/// Which client issued an operation.
pub type ClientId = u32;

/// The operation asked of the register at one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    Read,
    Write(String),
}

/// How an operation ended, as far as its client can tell.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Applied. For a read, the value it returned (`None`: the key was absent); `None` for a
    /// write.
    Ok(Option<String>),
    /// Certainly not applied (refused before it was proposed).
    Fail,
    /// May or may not have been applied, at any time after its invocation.
    Unknown,
}

/// One operation of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub client: ClientId,
    pub key: String,
    pub kind: Kind,
    /// Since the run's [`Clock`] origin.
    pub invoke: Duration,
    /// When the client got its answer or gave up. For an `Unknown` outcome only a lower
    /// bound of when it may take effect, never an upper one.
    pub complete: Duration,
    pub outcome: Outcome,
}

impl Op {
    pub fn is_write(&self) -> bool {
        matches!(self.kind, Kind::Write(_))
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (start, end) = (self.invoke.as_secs_f64() * 1e3, self.complete.as_secs_f64() * 1e3);
        match (&self.kind, &self.outcome) {
            (Kind::Write(v), _) => write!(f, "c{} write({v})", self.client)?,
            (Kind::Read, Outcome::Ok(Some(v))) => write!(f, "c{} read -> {v}", self.client)?,
            (Kind::Read, Outcome::Ok(None)) => write!(f, "c{} read -> absent", self.client)?,
            (Kind::Read, _) => write!(f, "c{} read", self.client)?,
        }
        let outcome = match self.outcome {
            Outcome::Ok(_) => "ok",
            Outcome::Fail => "fail",
            Outcome::Unknown => "unknown",
        };
        write!(f, " [{start:.3}ms..{end:.3}ms] {outcome}")
    }
}

/// The one time origin of a run.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock { origin: Instant::now() }
    }

    pub fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// An operation sent and not yet answered (from [`ClientLog::invoke`]).
#[derive(Debug)]
#[must_use = "complete the operation, or it is not recorded"]
pub struct Invoked {
    key: String,
    kind: Kind,
    at: Duration,
}

/// One client's operations, in the order it issued them.
#[derive(Debug)]
pub struct ClientLog {
    client: ClientId,
    clock: Clock,
    ops: Vec<Op>,
}

impl ClientLog {
    pub fn new(client: ClientId, clock: Clock) -> ClientLog {
        ClientLog { client, clock, ops: Vec::new() }
    }

    /// Notes the invocation time; call just before sending the request.
    pub fn invoke(&self, key: &str, kind: Kind) -> Invoked {
        Invoked { key: key.to_string(), kind, at: self.clock.now() }
    }

    /// Records the operation with its completion time; call just after the answer (or error).
    pub fn complete(&mut self, invoked: Invoked, outcome: Outcome) {
        let complete = self.clock.now();
        self.ops.push(Op {
            client: self.client,
            key: invoked.key,
            kind: invoked.kind,
            invoke: invoked.at,
            complete,
            outcome,
        });
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}

/// The logs of every client as one history, ordered by invocation time.
pub fn merge(logs: impl IntoIterator<Item = ClientLog>) -> Vec<Op> {
    let mut ops: Vec<Op> = logs.into_iter().flat_map(|l| l.ops).collect();
    ops.sort_by_key(|o| (o.invoke, o.client));
    ops
}

/// How many operations ended which way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub ops: usize,
    pub ok: usize,
    pub fail: usize,
    pub unknown: usize,
    pub keys: usize,
}

impl Counts {
    pub fn of(history: &[Op]) -> Counts {
        let mut c = Counts { ops: history.len(), ..Counts::default() };
        for op in history {
            match op.outcome {
                Outcome::Ok(_) => c.ok += 1,
                Outcome::Fail => c.fail += 1,
                Outcome::Unknown => c.unknown += 1,
            }
        }
        c.keys = history.iter().map(|o| o.key.as_str()).collect::<std::collections::BTreeSet<_>>().len();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_merge_in_invocation_order() {
        let clock = Clock::start();
        let mut a = ClientLog::new(0, clock);
        let mut b = ClientLog::new(1, clock);
        let first = a.invoke("k", Kind::Write("c0-0".into()));
        let second = b.invoke("k", Kind::Read);
        b.complete(second, Outcome::Ok(None));
        a.complete(first, Outcome::Unknown);
        let third = b.invoke("j", Kind::Read);
        b.complete(third, Outcome::Fail);
        assert_eq!(a.ops().len(), 1);
        let history = merge([b, a]);
        assert_eq!(history.iter().map(|o| o.client).collect::<Vec<_>>(), vec![0, 1, 1]);
        assert!(history.iter().all(|o| o.invoke <= o.complete));
        let counts = Counts::of(&history);
        assert_eq!(counts, Counts { ops: 3, ok: 1, fail: 1, unknown: 1, keys: 2 });
    }

    #[test]
    fn ops_print_what_they_did() {
        let op = Op {
            client: 2,
            key: "k".into(),
            kind: Kind::Read,
            invoke: Duration::from_millis(1),
            complete: Duration::from_millis(3),
            outcome: Outcome::Ok(Some("c1-4".into())),
        };
        assert_eq!(op.to_string(), "c2 read -> c1-4 [1.000ms..3.000ms] ok");
    }
}
