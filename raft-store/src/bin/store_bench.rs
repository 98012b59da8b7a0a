//! Appends per second through the log store, with group commit: one writer versus many.
//!
//! Each writer appends one entry at a time and waits for its durability acknowledgement, like a
//! client waiting for its write. Entry indexes are handed out under a lock so the log stays
//! gap-free. Run it in release mode (see docs/BENCHMARKS.md).

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use clap::Parser;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::testing::common::log_id;
use openraft::type_config::TypeConfigExt;
use plum_raft_store::testkit::{KvApp, KvCommand, TestConfig};
use plum_raft_store::{LogStore, StoreOptions};
use tokio::sync::Mutex;

type Entry = <TestConfig as openraft::RaftTypeConfig>::Entry;

#[derive(Parser)]
struct Args {
    /// Concurrent writers, each waiting for its own acknowledgement.
    #[arg(long, default_value_t = 1)]
    writers: usize,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Bytes of value per entry.
    #[arg(long, default_value_t = 128)]
    value_bytes: usize,
    /// Directory for the database (a temporary one when absent).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

struct Shared {
    log: LogStore<TestConfig>,
    next: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = tempfile::TempDir::new()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let app = Arc::new(RwLock::new(KvApp::default()));
    let (log, _sm) = plum_raft_store::open::<TestConfig, KvApp>(&dir, app, StoreOptions::default())?;
    let stats = log.group_commit_stats();
    let shared = Arc::new(Mutex::new(Shared { log, next: 1 }));
    let value = "x".repeat(args.value_bytes);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);

    let mut tasks = Vec::new();
    for _ in 0..args.writers {
        let shared = shared.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let rx = {
                    let mut s = shared.lock().await;
                    let index = s.next;
                    s.next += 1;
                    let entry = Entry::new_normal(
                        log_id::<TestConfig>(1, 1, index),
                        KvCommand::Set { key: format!("k{index}"), value: value.clone() },
                    );
                    let (tx, rx) = TestConfig::oneshot();
                    s.log.append([entry], IOFlushed::signal(tx)).await.expect("append");
                    rx
                };
                rx.await.expect("callback").expect("durable");
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let syncs_before = stats.syncs.load(Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    latencies.sort();
    let appends = latencies.len();
    let syncs = stats.syncs.load(Ordering::Relaxed) - syncs_before;
    let pct = |p: f64| {
        latencies.get(((appends as f64 * p) as usize).min(appends.saturating_sub(1))).copied().unwrap_or_default()
    };
    println!(
        "writers={} appends={} seconds={} appends_per_sec={:.0} syncs={} appends_per_sync={:.1} p50_ms={:.2} p99_ms={:.2}",
        args.writers,
        appends,
        args.seconds,
        appends as f64 / args.seconds as f64,
        syncs,
        appends as f64 / syncs.max(1) as f64,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    Ok(())
}
