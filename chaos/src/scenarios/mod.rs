//! Chaos scenarios against the local cluster (`scripts/cluster.sh up`, most with `--proxied`),
//! each ending in one result line:
//! `scenario=<name> trials=<n> recovery_ms p50=.. p99=.. max=.. client_errors=.. lost_writes=.. duplicates=.. [more]`.
//!
//! - [`partition`]: the leader cut off from both followers, then healed.
//! - [`restart_all`]: every replica killed at once and restarted.
//! - [`rolling`]: each replica restarted in turn under SDK load.
//! - [`wiped`]: a follower's data wiped and the replica restarted, then the leader killed.
//! - [`weak`]: a slow, lossy network between agents and SDK clients and the controllers.
//!
//! Leader and follower kills are [`crate::failover`], node kills and cut-off agents
//! [`crate::node_failover`]. Every loop is bounded in count and time.

pub mod partition;
pub mod restart_all;
pub mod rolling;
pub mod weak;
pub mod wiped;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::proxy::{ControlClient, Faults};
use crate::stats::{ms, summarize};

/// What a scenario needs of the local cluster.
pub struct Env {
    pub urls: Vec<String>,
    pub http: reqwest::Client,
    pub pid_dir: PathBuf,
    /// `scripts/cluster.sh`, for starting and stopping replicas and agents.
    pub cluster_sh: PathBuf,
    /// Where the cluster keeps replica data (`.plum/cluster/data`).
    pub data_dir: PathBuf,
}

impl Env {
    /// `scripts/cluster.sh <args>`; fails if it does.
    pub fn cluster(&self, args: &[&str]) -> Result<()> {
        let status = std::process::Command::new(&self.cluster_sh)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .with_context(|| format!("{} {args:?}", self.cluster_sh.display()))?;
        if !status.success() {
            bail!("{} {args:?} failed: {status}", self.cluster_sh.display());
        }
        Ok(())
    }

    /// SIGKILLs replica `id` (its PID checked to be a controller) and waits until the process
    /// is gone: until then it still holds its port, and a restart could not bind it.
    pub async fn kill_replica(&self, id: u64) -> Result<()> {
        let pid = crate::target::replica_pid(&self.pid_dir, id)?;
        // SAFETY: kill(2) on a pid read from our own pid file and checked to be plum-controller.
        if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
            bail!("kill -9 {pid}: {}", std::io::Error::last_os_error());
        }
        let addr = self.urls.get(id as usize - 1).and_then(|u| u.split_once("://")).map(|(_, a)| a.to_string());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let listening = match &addr {
                Some(a) => tokio::net::TcpStream::connect(a).await.is_ok(),
                None => false,
            };
            if !crate::procfs::alive(&pid.to_string()) && !listening {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("replica {id} (pid {pid}) still holds on 10 s after SIGKILL");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The fault proxy of a cluster started with `--proxied` (`PLUM_FAULTPROXY_CONTROL`).
    pub fn proxy(&self) -> Result<Proxy> {
        let control = crate::target::setting("PLUM_FAULTPROXY_CONTROL")
            .context("no fault proxy: start the cluster with `scripts/cluster.sh up --proxied`")?;
        Ok(Proxy { client: ControlClient::new(&control).context("fault proxy control address")? })
    }
}

/// The links of `scripts/cluster.sh up --proxied`: `rI-rJ` (replica I dialling J), `aN-rJ`
/// (agent N to replica J), `c-rJ` (SDK clients to replica J).
pub struct Proxy {
    client: ControlClient,
}

impl Proxy {
    /// Sets `faults` on every link whose name `pick` accepts; returns how many.
    pub async fn set(&self, pick: impl Fn(&str) -> bool, faults: &Faults) -> Result<usize> {
        let mut n = 0;
        for link in self.client.list().await.context("listing proxy links")? {
            if pick(&link.name) {
                self.client.set_faults(&link.name, faults).await.with_context(|| format!("faults on {}", link.name))?;
                n += 1;
            }
        }
        if n == 0 {
            bail!("no proxy link matched");
        }
        Ok(n)
    }

    pub async fn heal_all(&self) -> Result<()> {
        self.client.heal_all().await.context("healing the proxy links")?;
        Ok(())
    }
}

/// Both directions of every Raft link between replica `id` and the others.
pub fn raft_links_of(id: u64) -> impl Fn(&str) -> bool {
    move |name: &str| {
        let Some((from, to)) = name.split_once('-') else { return false };
        let replica = |s: &str| s.strip_prefix('r').and_then(|n| n.parse::<u64>().ok());
        match (replica(from), replica(to)) {
            (Some(a), Some(b)) => a == id || b == id,
            _ => false,
        }
    }
}

/// One scenario's outcome over its trials.
#[derive(Debug, Default)]
pub struct Outcome {
    pub name: &'static str,
    /// Per trial; `None`: it did not recover within its bound (counted as the bound).
    pub recoveries: Vec<Option<Duration>>,
    pub bound: Duration,
    pub client_errors: usize,
    pub lost_writes: usize,
    pub duplicates: usize,
    /// Scenario-specific `key=value` pairs.
    pub more: Vec<(String, String)>,
    /// Scenario-specific failures (beyond lost writes and duplicates), e.g. an isolated leader
    /// that still acknowledged a write.
    pub violations: Vec<String>,
}

impl Outcome {
    /// Counts one trial whose writers are done: waits for the cluster to be whole again, then
    /// checks that every acknowledged write is there. Returns the writes lost.
    pub async fn count_trial(
        &mut self,
        env: &Env,
        (ns, prefix): (&str, &str),
        tally: &crate::writes::Tally,
        recovery: Option<Duration>,
    ) -> Result<usize> {
        crate::settle::wait_settled(&env.http, &env.urls).await.context("after the trial")?;
        let lost = crate::writes::lost(&env.http, &env.urls, ns, prefix, &tally.acked).await?;
        self.lost_writes += lost;
        self.client_errors += tally.errors;
        self.recoveries.push(recovery);
        Ok(lost)
    }

    pub fn line(&self) -> String {
        let s = summarize(self.recoveries.iter().map(|r| r.unwrap_or(self.bound)).collect());
        let unrecovered = self.recoveries.iter().filter(|r| r.is_none()).count();
        let mut line = format!(
            "scenario={} trials={} recovery_ms p50={:.0} p99={:.0} max={:.0} unrecovered={unrecovered} client_errors={} lost_writes={} duplicates={}",
            self.name,
            self.recoveries.len(),
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            self.client_errors,
            self.lost_writes,
            self.duplicates
        );
        for (k, v) in &self.more {
            line += &format!(" {k}={v}");
        }
        line += &format!(" violations={}", self.violations.len());
        line
    }

    /// Lost writes, duplicates, violations and unrecovered trials fail a scenario.
    pub fn passed(&self) -> bool {
        self.lost_writes == 0
            && self.duplicates == 0
            && self.violations.is_empty()
            && self.recoveries.iter().all(Option::is_some)
    }
}

/// Milliseconds, for `more` fields.
pub fn ms_text(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.0}", ms(d))).unwrap_or_else(|| "timeout".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_links_of_a_replica_are_both_directions_and_nothing_else() {
        let of2 = raft_links_of(2);
        for yes in ["r1-r2", "r2-r1", "r2-r3", "r3-r2"] {
            assert!(of2(yes), "{yes}");
        }
        for no in ["r1-r3", "r3-r1", "a2-r1", "c-r2", "a1-r2", "r12-r3", "junk"] {
            assert!(!of2(no), "{no}");
        }
    }

    #[test]
    fn an_unrecovered_trial_counts_as_its_bound_and_fails() {
        let mut o = Outcome {
            name: "x",
            recoveries: vec![Some(Duration::from_millis(100)), None],
            bound: Duration::from_secs(30),
            ..Outcome::default()
        };
        assert!(o.line().contains("max=30000 unrecovered=1"), "{}", o.line());
        assert!(!o.passed());
        o.recoveries.pop();
        assert!(o.passed());
        o.violations.push("old leader acknowledged a write".into());
        assert!(!o.passed());
        assert!(o.line().ends_with("violations=1"));
    }
}
