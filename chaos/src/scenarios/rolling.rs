//! A rolling restart: each replica in turn stopped (SIGTERM: a leader hands leadership over
//! first), started again and caught up, while SDK clients write and read. An operator's
//! routine: no client request may fail and no acknowledged write may be lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use plum_sdk::kv::Kv;

use super::{Env, Outcome};
use crate::settle::{wait_caught_up, wait_settled};
use crate::writes::{self, Writes};

const BOUND: Duration = Duration::from_secs(60);

pub async fn run(env: &Env, rounds: usize, writers: usize, readers: usize) -> Result<Outcome> {
    let mut out = Outcome { name: "rolling_restart", bound: BOUND, ..Outcome::default() };
    let kv = crate::target::sdk_kv(&env.urls)?;
    let ns = format!("rolling-{}", std::process::id());
    kv.put(&ns, "read-me", "x").await.context("seeding the key readers read")?;
    let replicas = env.urls.len() as u64;
    for round in 0..rounds {
        wait_settled(&env.http, &env.urls).await.with_context(|| format!("before round {round}"))?;
        let prefix = format!("r{round}-");
        let writes = Writes::start_sdk(&kv, &ns, &prefix, writers);
        let reads = Reads::start(&kv, &ns, readers);
        for id in 1..=replicas {
            let stopping = Instant::now();
            env.cluster(&["stop-replica", &id.to_string()])?;
            env.cluster(&["start-replica", &id.to_string()])?;
            let back = wait_caught_up(&env.http, &env.urls, id).await.map(|()| stopping.elapsed()).ok();
            // The next replica goes only once this one is back, as an operator would do it.
            wait_settled(&env.http, &env.urls).await.with_context(|| format!("after restarting replica {id}"))?;
            out.recoveries.push(back);
        }
        let tally = writes.stop().await?;
        let (read_ok, read_errors) = reads.stop().await;
        let lost = writes::lost(&env.http, &env.urls, &ns, &prefix, &tally.acked).await?;
        println!(
            "round={round} writes_acked={} write_errors={} reads_ok={read_ok} read_errors={read_errors} lost={lost}",
            tally.acked.len(),
            tally.errors
        );
        out.client_errors += tally.errors + read_errors;
        out.lost_writes += lost;
    }
    if out.client_errors > 0 {
        out.violations.push(format!("{} client requests failed during a rolling restart", out.client_errors));
    }
    Ok(out)
}

/// SDK readers of one key until stopped.
struct Reads {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    errors: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Reads {
    fn start(kv: &Kv, ns: &str, readers: usize) -> Reads {
        let (stop, ok, errors) = (Arc::new(AtomicBool::new(false)), Arc::default(), Arc::default());
        let tasks = (0..readers)
            .map(|_| {
                let (kv, ns) = (kv.clone(), ns.to_string());
                let (stop, ok, errors): (Arc<AtomicBool>, Arc<AtomicUsize>, Arc<AtomicUsize>) =
                    (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&errors));
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match kv.get(&ns, "read-me").await {
                            Ok(Some(_)) => ok.fetch_add(1, Ordering::Relaxed),
                            other => {
                                tracing::warn!(result = ?other.map(|v| v.is_some()), "an SDK read failed");
                                errors.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Reads { stop, ok, errors, tasks }
    }

    async fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        (self.ok.load(Ordering::Relaxed), self.errors.load(Ordering::Relaxed))
    }
}
