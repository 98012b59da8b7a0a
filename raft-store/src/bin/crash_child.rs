//! Worker for the crash test (`tests/crash.rs`): appends and applies entries until it is killed,
//! reporting on stdout each append once it is acknowledged durable and each apply once done;
//! or, with `inspect`, prints what a reopened store holds as one JSON line.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openraft::Vote;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage, RaftStateMachine};
use openraft::testing::common::log_id;
use openraft::type_config::TypeConfigExt;
use openraft::vote::RaftLeaderId;
use plum_raft_store::testkit::{KvApp, KvCommand, TestConfig};
use plum_raft_store::{FatalPolicy, StoreOptions};

type Entry = <TestConfig as openraft::RaftTypeConfig>::Entry;

/// Entries per term: the vote moves to a new term this often.
const TERM_EVERY: u64 = 40;
/// Appends in flight at once, so the group commit has something to group.
const IN_FLIGHT: usize = 16;
/// The worker stops by itself after this long, should nobody kill it.
const MAX_RUN: Duration = Duration::from_secs(30);

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let dir = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!("usage: crash_child run|inspect DIR"))?);
    let app = Arc::new(RwLock::new(KvApp::default()));
    let (log, sm) = plum_raft_store::open::<TestConfig, KvApp>(
        &dir,
        app.clone(),
        StoreOptions { fatal: FatalPolicy::Exit, ..StoreOptions::default() },
    )?;
    // Both functions consume the store, so it is closed (threads joined) before main returns.
    match mode.as_str() {
        "run" => run(log, sm).await,
        "inspect" => inspect(log, sm, app).await,
        other => anyhow::bail!("unknown mode {other}"),
    }
}

fn report(line: String) {
    let mut out = std::io::stdout().lock();
    // The parent reads these lines; unflushed output would under-report acknowledgements.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn term_of(index: u64) -> u64 {
    1 + index / TERM_EVERY
}

async fn run(
    mut log: plum_raft_store::LogStore<TestConfig>,
    mut sm: plum_raft_store::StateMachine<TestConfig, KvApp>,
) -> anyhow::Result<()> {
    let state = log.get_log_state().await?;
    let (applied, _) = sm.applied_state().await?;
    let mut next = state.last_log_id.map(|id| id.index() + 1).unwrap_or(1);
    let mut next_apply = applied.map(|id| id.index() + 1).unwrap_or(1);
    report(format!("started {next}"));
    // Entries that reached the log before the last kill but were not applied yet.
    let unapplied = log.get_log_reader().await.try_get_log_entries(next_apply..next).await?;
    apply(&mut sm, unapplied, &mut next_apply).await?;

    let mut voted_term = log.read_vote().await?.map(|v| v.leader_id.term()).unwrap_or(0);
    let mut pending: VecDeque<(u64, _)> = VecDeque::new();
    let started = Instant::now();
    while started.elapsed() < MAX_RUN {
        while pending.len() < IN_FLIGHT {
            let term = term_of(next);
            if term > voted_term {
                log.save_vote(&Vote::new_committed(term, 1)).await?;
                voted_term = term;
                report(format!("vote {term}"));
            }
            let command = KvCommand::Set { key: format!("k{next:08}"), value: format!("v{next}") };
            let (tx, rx) = TestConfig::oneshot();
            log.append([Entry::new_normal(log_id::<TestConfig>(term, 1, next), command)], IOFlushed::signal(tx))
                .await?;
            pending.push_back((next, rx));
            next += 1;
        }
        let (index, rx) = pending.pop_front().expect("in flight");
        rx.await??;
        report(format!("appended {index}"));
        let entries = log.get_log_reader().await.try_get_log_entries(index..index + 1).await?;
        apply(&mut sm, entries, &mut next_apply).await?;
        log.save_committed(Some(log_id::<TestConfig>(term_of(index), 1, index))).await?;
    }
    drop(pending);
    drop((log, sm));
    Ok(())
}

async fn apply(
    sm: &mut plum_raft_store::StateMachine<TestConfig, KvApp>,
    entries: Vec<Entry>,
    next_apply: &mut u64,
) -> anyhow::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let last = entries.last().map(|e| e.index()).unwrap_or(0);
    sm.apply(futures::stream::iter(entries.into_iter().map(|e| Ok((e, None))))).await?;
    *next_apply = last + 1;
    report(format!("applied {last}"));
    Ok(())
}

async fn inspect(
    mut log: plum_raft_store::LogStore<TestConfig>,
    mut sm: plum_raft_store::StateMachine<TestConfig, KvApp>,
    app: Arc<RwLock<KvApp>>,
) -> anyhow::Result<()> {
    let state = log.get_log_state().await?;
    let entries = log.get_log_reader().await.try_get_log_entries(0..u64::MAX).await?;
    let indexes: Vec<u64> = entries.iter().map(|e| e.index()).collect();
    let contiguous = indexes.windows(2).all(|w| w[0] + 1 == w[1]);
    let (applied, _) = sm.applied_state().await?;
    let applied = applied.map(|id| id.index());
    let vote_term = log.read_vote().await?.map(|v| v.leader_id.term());
    let committed = log.read_committed().await?.map(|id| id.index());
    let view = app.read().expect("view");
    // Every applied index must be in the view with its value.
    let view_ok = (1..=applied.unwrap_or(0)).all(|i| view.map.get(&format!("k{i:08}")) == Some(&format!("v{i}")));
    let line = serde_json::json!({
        "first": indexes.first(),
        "last": state.last_log_id.map(|id| id.index()),
        "count": indexes.len(),
        "contiguous": contiguous,
        "applied": applied,
        "vote_term": vote_term,
        "committed": committed,
        "view_ok": view_ok,
        "view_applied_index": view.applied_index,
    });
    report(line.to_string());
    drop(view);
    drop((log, sm));
    Ok(())
}
