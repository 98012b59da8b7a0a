//! `plum-bench linearize`: concurrent clients doing random reads and writes on a few keys of
//! a fresh namespace for a bounded time, each recording its own history; then the merged
//! history is checked. Writes go through the SDK's `Kv::put` (a request id makes its retries
//! exactly-once); reads are linearizable reads (`Kv::get_consistent`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plum_sdk::kv::Kv;
use plum_sdk::{Controllers, Options};

use super::checker::{Budget, Report, Verdict, check};
use super::classify;
use super::history::{ClientId, ClientLog, Clock, Counts, Kind, merge};

/// Ops one client records at most (bounds memory and the check on a fast cluster).
const MAX_OPS_PER_CLIENT: usize = 100_000;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub urls: Vec<String>,
    pub clients: usize,
    pub keys: usize,
    /// How long clients keep starting operations (each then ends within the SDK's deadline).
    pub duration: Duration,
    pub budget: Budget,
}

#[derive(Debug)]
pub enum RunError {
    /// Nothing to run: no clients or no keys.
    Options(String),
    /// The SDK transport could not be set up (token, CA file).
    Setup(String),
    /// A client task ended without its log.
    Client(String),
    /// The history has no linearization (details were logged).
    Violation { keys: Vec<String> },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Options(m) => write!(f, "linearize options: {m}"),
            RunError::Setup(m) => write!(f, "SDK setup: {m}"),
            RunError::Client(m) => write!(f, "client task: {m}"),
            RunError::Violation { keys } => write!(f, "linearizability violation on key(s) {}", keys.join(", ")),
        }
    }
}

impl std::error::Error for RunError {}

pub struct RunReport {
    pub namespace: String,
    pub counts: Counts,
    pub report: Report,
    /// From the first operation to the end of the check.
    pub elapsed: Duration,
    pub check_time: Duration,
}

impl RunReport {
    pub fn verdict(&self) -> Verdict {
        self.report.verdict()
    }

    /// The one line `plum-bench linearize` prints.
    pub fn line(&self) -> String {
        let c = &self.counts;
        format!(
            "linearizability ops={} ok={} fail={} unknown={} keys={} result={} elapsed_ms={} check_ms={} steps={}",
            c.ops,
            c.ok,
            c.fail,
            c.unknown,
            c.keys,
            self.verdict().as_str(),
            self.elapsed.as_millis(),
            self.check_time.as_millis(),
            self.report.steps
        )
    }

    /// `Err` on a violation (the bench then exits non-zero); `Ok` also when undecided.
    pub fn ensure_no_violation(&self) -> Result<(), RunError> {
        let keys: Vec<String> = self.report.violations().map(|v| v.key.clone()).collect();
        if keys.is_empty() { Ok(()) } else { Err(RunError::Violation { keys }) }
    }
}

/// Runs the clients, then checks what they saw.
pub async fn run(opts: &RunOptions) -> Result<RunReport, RunError> {
    if opts.clients == 0 || opts.keys == 0 {
        return Err(RunError::Options(format!("clients={} keys={}: both must be at least 1", opts.clients, opts.keys)));
    }
    let transport = crate::target::sdk_options(Options::default()).map_err(|e| RunError::Setup(format!("{e:#}")))?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    // A fresh namespace: every key starts absent, as the model does.
    let namespace = format!("lin-{}-{stamp}", std::process::id());
    tracing::info!(namespace, clients = opts.clients, keys = opts.keys, "linearizability run");

    let clock = Clock::start();
    let until = Instant::now() + opts.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..opts.clients {
        // One transport per client: each learns the leader and picks replicas on its own.
        let controllers = Arc::new(Controllers::with_options(opts.urls.clone(), transport.clone()));
        let client = Client { id: id as ClientId, namespace: namespace.clone(), keys: opts.keys, controllers };
        tasks.spawn(client.run(clock, until));
    }
    let mut logs = Vec::with_capacity(opts.clients);
    while let Some(joined) = tasks.join_next().await {
        logs.push(joined.map_err(|e| RunError::Client(e.to_string()))?);
    }
    let history = merge(logs);

    let checking = Instant::now();
    let report = check(&history, opts.budget);
    let check_time = checking.elapsed();
    for v in report.violations() {
        tracing::error!("{v}");
    }
    if report.verdict() == Verdict::Unknown {
        tracing::warn!(steps = report.steps, "the check ran out of budget before deciding every key");
    }
    Ok(RunReport { namespace, counts: Counts::of(&history), report, elapsed: clock.now(), check_time })
}

struct Client {
    id: ClientId,
    namespace: String,
    keys: usize,
    controllers: Arc<Controllers>,
}

impl Client {
    async fn run(self, clock: Clock, until: Instant) -> ClientLog {
        let kv = Kv::new(self.controllers.clone());
        let mut log = ClientLog::new(self.id, clock);
        let mut seq = 0u64;
        while Instant::now() < until && log.ops().len() < MAX_OPS_PER_CLIENT {
            let key = format!("k{}", rand::random_range(0..self.keys));
            if rand::random_bool(0.5) {
                // Unique values: a read names the one write it saw.
                let value = format!("c{}-{seq}", self.id);
                seq += 1;
                let op = log.invoke(&key, Kind::Write(value.clone()));
                let result = kv.put(&self.namespace, &key, &value).await;
                log.complete(op, classify::write(&result));
            } else {
                let op = log.invoke(&key, Kind::Read);
                let result = kv.get_consistent(&self.namespace, &key).await;
                log.complete(op, classify::read(result));
            }
        }
        tracing::debug!(client = self.id, ops = log.ops().len(), "client done");
        log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_run_needs_clients_and_keys() {
        let opts = RunOptions {
            urls: vec!["http://127.0.0.1:9".into()],
            clients: 0,
            keys: 3,
            duration: Duration::from_millis(10),
            budget: Budget::default(),
        };
        assert!(matches!(run(&opts).await, Err(RunError::Options(_))));
    }
}
