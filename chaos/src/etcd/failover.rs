//! `etcd-failover`: Plum's leader-kill scenario ([`crate::failover`], `chaos/kill_leader.sh`)
//! against a 3-member etcd cluster this process runs. Per trial: wait for a healthy leader,
//! start writers putting unique keys through every member in turn (1 s per-request timeout),
//! SIGKILL the leader after 500 ms, measure from the kill to the first acknowledged write
//! *sent after the kill*, restart the member on its own data, wait until the cluster is whole
//! again, and read every acknowledged key back linearizably. Trial and summary lines are
//! Plum's; the trial's timeline comes from the surviving members' logs.

use std::time::Duration;

use super::EtcdError;
use super::cluster::{Cluster, MEMBERS, Settings};
use super::gateway;
use crate::failover::{RECOVERY_BOUND, TrialResult, Victim, trial_line, unix_now_ms};
use crate::writes::{self, Writes};

pub struct EtcdFailoverOptions {
    pub trials: usize,
    pub writers: usize,
    pub settings: Settings,
}

/// How long the cluster may take to form.
const STARTUP_BOUND: Duration = Duration::from_secs(30);
/// How long the cluster may take to be whole again, before and after a kill.
const SETTLE_BOUND: Duration = Duration::from_secs(20);
/// How long a whole trial may take.
const TRIAL_BOUND: Duration = Duration::from_secs(60);
/// How long the writers run before the kill.
const BEFORE_KILL: Duration = Duration::from_millis(500);
/// How long they run on after the first acknowledged write.
const AFTER_RECOVERY: Duration = Duration::from_millis(300);

/// Starts the cluster, runs the trials (printing each one's line), stops the cluster. A failed
/// run keeps the cluster's directory (its path is printed) for the members' logs.
pub async fn run(opts: &EtcdFailoverOptions) -> Result<Vec<TrialResult>, EtcdError> {
    let mut cluster = Cluster::start(&opts.settings)?;
    let s = &opts.settings;
    println!(
        "etcd members={} heartbeat_ms={} election_ms={} pre_vote={} writers={} dir={}",
        MEMBERS,
        s.heartbeat_ms,
        s.election_ms,
        s.pre_vote,
        opts.writers,
        cluster.dir().display()
    );
    let http = crate::target::http_client(Duration::from_secs(2));
    let outcome = trials(&mut cluster, &http, opts).await;
    if outcome.is_err() {
        cluster.keep_files();
    }
    outcome
}

async fn trials(
    cluster: &mut Cluster,
    http: &reqwest::Client,
    opts: &EtcdFailoverOptions,
) -> Result<Vec<TrialResult>, EtcdError> {
    cluster.wait_healthy(http, STARTUP_BOUND).await?;
    let mut results = Vec::new();
    for trial in 0..opts.trials {
        let r = tokio::time::timeout(TRIAL_BOUND, one_trial(cluster, http, trial, opts.writers))
            .await
            .unwrap_or(Err(EtcdError::TrialTimeout { bound: TRIAL_BOUND }))
            .map_err(|e| EtcdError::Trial { trial, source: Box::new(e) })?;
        println!("{}", trial_line(trial, &r));
        results.push(r);
    }
    Ok(results)
}

async fn one_trial(
    cluster: &mut Cluster,
    http: &reqwest::Client,
    trial: usize,
    writers: usize,
) -> Result<TrialResult, EtcdError> {
    let leader = cluster.wait_healthy(http, SETTLE_BOUND).await?;
    let urls = cluster.client_urls();
    let (ns, prefix) = (format!("chaos-{}", std::process::id()), format!("t{trial}-"));
    let writes = Writes::start_etcd(http, &urls, &ns, &prefix, writers);
    tokio::time::sleep(BEFORE_KILL).await;

    let killed = cluster.kill(leader);
    let kill_ms = unix_now_ms();
    writes.fault().await;
    // A failed kill stops the writers (dropped).
    killed?;
    let recovery = writes.recovery(RECOVERY_BOUND).await;
    tokio::time::sleep(AFTER_RECOVERY).await;
    let tally = writes.stop().await.map_err(|e| EtcdError::Writers(format!("{e:#}")))?;
    let new_leader = cluster.leader(http).await;
    let survivor_logs: Vec<String> = (1..=MEMBERS).filter(|n| *n != leader).map(|n| cluster.log(n)).collect();
    let mut steps = super::timeline::steps(&survivor_logs, kill_ms);
    steps.client_ack = recovery.map(|d| d.as_millis() as i64);

    cluster.restart(leader).await?;
    cluster.wait_healthy(http, SETTLE_BOUND).await?;
    let lost = writes::missing(&tally.acked, &gateway::written_keys(http, &urls, &ns, &prefix).await?);
    Ok(TrialResult {
        killed: leader as u64,
        victim: Victim::Leader,
        new_leader: new_leader.map(|n| n as u64),
        recovery,
        acked: tally.acked.len(),
        lost,
        write_errors: tally.errors,
        steps,
    })
}
