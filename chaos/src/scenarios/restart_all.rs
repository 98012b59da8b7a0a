//! Every replica SIGKILLed at once, then all restarted: the cluster must come back with every
//! acknowledged write (each was fsynced on a majority before it was acknowledged).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{Env, Outcome, ms_text};
use crate::settle::wait_settled;
use crate::writes::{self, Writes};

const BOUND: Duration = Duration::from_secs(60);

pub async fn run(env: &Env, trials: usize, writers: usize) -> Result<Outcome> {
    let mut out = Outcome { name: "restart_all", bound: BOUND, ..Outcome::default() };
    let ns = format!("restart-all-{}", std::process::id());
    let replicas = env.urls.len() as u64;
    for trial in 0..trials {
        wait_settled(&env.http, &env.urls).await.with_context(|| format!("before trial {trial}"))?;
        let prefix = format!("t{trial}-");
        let writes = Writes::start(&env.http, &env.urls, &ns, &prefix, writers, writes::WRITE_TIMEOUT);
        tokio::time::sleep(Duration::from_millis(500)).await;
        for id in 1..=replicas {
            env.kill_replica(id).await?;
        }
        writes.fault().await;
        let restarting = Instant::now();
        for id in 1..=replicas {
            env.cluster(&["start-replica", &id.to_string()])?;
        }
        let started_ms = ms_text(Some(restarting.elapsed()));
        let recovery = writes.recovery(BOUND).await;
        let tally = writes.stop().await?;
        let lost = out.count_trial(env, (&ns, &prefix), &tally, recovery).await?;
        println!(
            "trial={trial} recovery_ms={} restart_cmds_ms={started_ms} acked={} lost={lost} write_errors={}",
            ms_text(recovery),
            tally.acked.len(),
            tally.errors
        );
    }
    Ok(out)
}
