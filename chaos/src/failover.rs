//! Replica kill scenario: SIGKILL the leader (or a follower) while clients write through every
//! replica, measure the time from the kill to the first acknowledged write sent after it,
//! verify that every acknowledged write is still readable, restart the replica and wait until
//! it caught up.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::settle::{wait_caught_up, wait_settled};
use crate::stats::{ms, summarize};
use crate::target::{cluster_status, replica_pid};
use crate::writes::{self, Writes};

/// Which replica a trial kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Victim {
    Leader,
    Follower,
}

pub struct FailoverOptions {
    pub urls: Vec<String>,
    pub trials: usize,
    pub writers: usize,
    pub victim: Victim,
    pub pid_dir: PathBuf,
    /// Shell command restarting a replica; `{id}` is replaced by its id.
    pub restart_cmd: String,
}

pub struct TrialResult {
    pub killed: u64,
    pub victim: Victim,
    pub new_leader: Option<u64>,
    /// `None` when no write was acknowledged within the trial's bound.
    pub recovery: Option<Duration>,
    pub acked: usize,
    pub lost: usize,
    /// Writes not acknowledged during the trial.
    pub write_errors: usize,
    /// Where the time went, from the survivors' records.
    pub steps: crate::timeline::Steps,
}

/// How long a trial waits for its first acknowledged write; a trial that saw none counts as this.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(30);

pub async fn run(opts: &FailoverOptions) -> Result<Vec<TrialResult>> {
    let http = crate::target::http_client(Duration::from_secs(2));
    let run_id = std::process::id();
    let mut results = Vec::new();
    for trial in 0..opts.trials {
        let r = one_trial(opts, &http, run_id, trial).await.with_context(|| format!("trial {trial}"))?;
        println!("{}", trial_line(trial, &r));
        results.push(r);
    }
    Ok(results)
}

/// The line printed after each trial.
pub fn trial_line(trial: usize, r: &TrialResult) -> String {
    format!(
        "trial={trial} killed={} ({:?}) new_leader={} recovery_ms={} acked={} lost={} write_errors={} timeline_ms: {}",
        r.killed,
        r.victim,
        r.new_leader.map(|l| l.to_string()).unwrap_or_else(|| "none".into()),
        r.recovery.map(|d| format!("{:.0}", ms(d))).unwrap_or_else(|| "timeout".into()),
        r.acked,
        r.lost,
        r.write_errors,
        r.steps
    )
}

/// Prints the summary line `chaos/kill_leader.sh` ends with.
pub fn summary_line(results: &[TrialResult]) -> String {
    // A trial that never recovered counts as its bound: it must not improve the numbers.
    let samples: Vec<Duration> = results.iter().map(|r| r.recovery.unwrap_or(RECOVERY_BOUND)).collect();
    let s = summarize(samples);
    let lost: usize = results.iter().map(|r| r.lost).sum();
    let name = match results.first().map(|r| r.victim) {
        Some(Victim::Follower) => "follower",
        _ => "leader",
    };
    format!(
        "{name}_recovery_ms p50={:.0} p99={:.0} max={:.0} trials={} lost_writes={}",
        ms(s.p50),
        ms(s.p99),
        ms(s.max),
        results.len(),
        lost
    )
}

async fn one_trial(opts: &FailoverOptions, http: &reqwest::Client, run_id: u32, trial: usize) -> Result<TrialResult> {
    let leader = wait_settled(http, &opts.urls).await?;
    let victim = match opts.victim {
        Victim::Leader => leader,
        Victim::Follower => (1..=opts.urls.len() as u64).find(|id| *id != leader).context("no follower to kill")?,
    };
    let pid = replica_pid(&opts.pid_dir, victim)?;
    let ns = format!("chaos-{run_id}");
    let prefix = format!("t{trial}-");
    let writes = Writes::start(http, &opts.urls, &ns, &prefix, opts.writers, writes::WRITE_TIMEOUT);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // SAFETY: kill(2) on a pid read from our own pid file and checked to be plum-controller.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    let kill_ms = unix_now_ms();
    writes.fault().await;
    if rc != 0 {
        let _ = writes.stop().await;
        bail!("kill -9 {pid} failed: {}", std::io::Error::last_os_error());
    }
    let recovery = writes.recovery(RECOVERY_BOUND).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = writes.stop().await?;
    let new_leader = cluster_status(http, &opts.urls).await.and_then(|s| s["leaderId"].as_u64());
    let mut steps = match (opts.victim, new_leader) {
        (Victim::Leader, Some(l)) => {
            crate::timeline::Steps::from_statuses(&crate::target::cluster_statuses(http, &opts.urls).await, kill_ms, l)
        }
        _ => crate::timeline::Steps::default(),
    };
    steps.client_ack = recovery.map(|d| d.as_millis() as i64);

    let cmd = opts.restart_cmd.replace("{id}", &victim.to_string());
    let status = tokio::process::Command::new("sh").arg("-c").arg(&cmd).status().await.context("restart command")?;
    if !status.success() {
        bail!("restart command `{cmd}` failed: {status}");
    }
    wait_caught_up(http, &opts.urls, victim).await?;
    let lost = writes::lost(http, &opts.urls, &ns, &prefix, &tally.acked).await?;
    Ok(TrialResult {
        killed: victim,
        victim: opts.victim,
        new_leader,
        recovery,
        acked: tally.acked.len(),
        lost,
        write_errors: tally.errors,
        steps,
    })
}

/// Now, in unix ms (the clock the replicas' and etcd members' records use).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
