//! A follower's disk lost (its data wiped, the replica restarted empty) and, while it is still
//! catching up, the leader SIGKILLed and restarted. An empty replica must not help elect a
//! leader that lacks acknowledged writes (it withholds its vote until caught up: `rejoin.rs`),
//! so writes resume once a replica holding the data leads again, and none is lost.

use std::time::Duration;

use anyhow::{Context, Result};

use super::{Env, Outcome, ms_text};
use crate::settle::{wait_caught_up, wait_settled};
use crate::writes::{self, Writes};

const BOUND: Duration = Duration::from_secs(60);

pub async fn run(env: &Env, trials: usize, writers: usize) -> Result<Outcome> {
    let mut out = Outcome { name: "wiped_rejoin", bound: BOUND, ..Outcome::default() };
    let ns = format!("wiped-{}", std::process::id());
    let replicas = env.urls.len() as u64;
    for trial in 0..trials {
        let leader = wait_settled(&env.http, &env.urls).await.with_context(|| format!("before trial {trial}"))?;
        let wiped = (1..=replicas).find(|id| *id != leader).context("no follower")?;
        let prefix = format!("t{trial}-");
        let writes = Writes::start(&env.http, &env.urls, &ns, &prefix, writers, writes::WRITE_TIMEOUT);
        // Enough acknowledged writes before the loss that the wiped replica has much to fetch.
        tokio::time::sleep(Duration::from_millis(1000)).await;

        env.cluster(&["stop-replica", &wiped.to_string()])?;
        let dir = env.data_dir.join(wiped.to_string());
        std::fs::remove_dir_all(&dir).with_context(|| format!("wiping {}", dir.display()))?;
        env.cluster(&["start-replica", &wiped.to_string()])?;
        env.kill_replica(leader).await?;
        writes.fault().await;
        env.cluster(&["start-replica", &leader.to_string()])?;
        let recovery = writes.recovery(BOUND).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let tally = writes.stop().await?;
        let caught_up = wait_caught_up(&env.http, &env.urls, wiped).await.is_ok();
        if !caught_up {
            out.violations.push(format!("trial {trial}: wiped replica {wiped} did not catch up"));
        }
        let lost = out.count_trial(env, (&ns, &prefix), &tally, recovery).await?;
        println!(
            "trial={trial} wiped={wiped} killed_leader={leader} recovery_ms={} acked={} lost={lost} write_errors={} wiped_caught_up={caught_up}",
            ms_text(recovery),
            tally.acked.len(),
            tally.errors
        );
    }
    Ok(out)
}
