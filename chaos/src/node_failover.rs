//! Node kill scenario: SIGKILL a node (its agent and every instance it runs), measure the time
//! until discovery again returns the deployment's full replica count with no endpoint of the
//! dead node and every endpoint answering; restart the node; count duplicates once settled.
//! With `with_leader`, the controller leader is SIGKILLed at the same moment. With `cut`, the
//! node is not killed but cut off: every link of its agent to the controllers black-holed
//! (`scripts/cluster.sh up --proxied`), then healed; with `expect_fencing` its instances must
//! stop on their own (`fencing: stop`), and once healed no duplicate may remain.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::stats::{ms, summarize};
use crate::target::{cluster_status, get_first, replica_pid};

pub struct NodeFailoverOptions {
    pub urls: Vec<String>,
    pub trials: usize,
    pub service: String,
    pub replicas: usize,
    /// Shell commands; `{id}` is the node's agent number (node-{id}) or the replica id.
    pub kill_node_cmd: String,
    pub start_node_cmd: String,
    pub with_leader: bool,
    pub pid_dir: PathBuf,
    pub start_replica_cmd: String,
    /// Cut the node off through this fault proxy instead of killing it.
    pub cut: Option<crate::scenarios::Proxy>,
    /// The cut-off node's instances must stop by themselves.
    pub expect_fencing: bool,
}

pub struct NodeTrial {
    pub node: String,
    pub failover: Option<Duration>,
    pub duplicates: usize,
    /// With `expect_fencing`: when the cut-off node's last instance stopped answering.
    pub fenced: Option<Option<Duration>>,
}

const BOUND: Duration = Duration::from_secs(30);
/// How long one request to one replica may take (the client's own timeout too).
const REQUEST: Duration = Duration::from_secs(2);
const SETTLE: Duration = Duration::from_secs(60);

fn sh(cmd: &str, id: &str) -> Result<()> {
    let cmd = cmd.replace("{id}", id);
    let status = std::process::Command::new("sh").arg("-c").arg(&cmd).status().with_context(|| cmd.clone())?;
    if !status.success() {
        bail!("`{cmd}` failed: {status}");
    }
    Ok(())
}

/// Endpoints of the service as the first answering replica reports them: (node, instance, url).
async fn endpoints(http: &reqwest::Client, urls: &[String], service: &str) -> Option<Vec<(String, String, String)>> {
    let eps: Vec<Value> = get_first(http, urls, &format!("/v1/discovery?service={service}"), REQUEST).await?;
    let triple = |e: &Value| {
        let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
        (s("nodeId"), s("instanceId"), format!("http://{}:{}", s("ip"), e["port"]))
    };
    Some(eps.iter().map(triple).collect())
}

/// True when every endpoint answers its health check.
async fn all_answer(http: &reqwest::Client, eps: &[(String, String, String)]) -> bool {
    for (_, _, url) in eps {
        let ok = http.get(format!("{url}/health")).timeout(Duration::from_millis(300)).send().await;
        if !ok.is_ok_and(|r| r.status().is_success()) {
            return false;
        }
    }
    true
}

/// True when every instance of the deployments behind `service` (warm standbys included) runs
/// and passed readiness: the state a node kill should start from.
async fn deployment_ready(http: &reqwest::Client, urls: &[String], service: &str) -> bool {
    let Some(deployments) = get_first::<Vec<Value>>(http, urls, "/v1/deployments", REQUEST).await else {
        return false;
    };
    deployments
        .iter()
        .filter(|d| d["spec"]["service"]["name"] == service)
        .flat_map(|d| d["instances"].as_array().into_iter().flatten())
        .all(|i| i["phase"] == "Running" && i["healthy"] == true)
}

/// Waits until at least the full count serves (more would be duplicates, counted by the caller)
/// and every instance, standbys included, is ready.
async fn settled(http: &reqwest::Client, opts: &NodeFailoverOptions) -> Result<Vec<(String, String, String)>> {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(eps) = endpoints(http, &opts.urls, &opts.service).await
            && eps.len() >= opts.replicas
            && all_answer(http, &eps).await
            && deployment_ready(http, &opts.urls, &opts.service).await
        {
            return Ok(eps);
        }
        if Instant::now() > deadline {
            bail!("{} did not settle at {} serving endpoints within {SETTLE:?}", opts.service, opts.replicas);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls every replica until the first that answers (as a client would ask) lists the full count, none
/// on `dead`, all answering: that moment is the failover time. Also returns, per replica, when
/// its discovery first showed that set (the timeline says where the time goes: detection and
/// commit on the leader, then the followers learning the commit).
async fn watch_takeover(
    http: &reqwest::Client,
    opts: &NodeFailoverOptions,
    dead: &str,
    killed_at: Instant,
) -> (Option<Duration>, Vec<Option<Duration>>) {
    let mut seen = vec![None; opts.urls.len()];
    let complete =
        |eps: &[(String, String, String)]| eps.len() == opts.replicas && eps.iter().all(|(n, _, _)| n != dead);
    while killed_at.elapsed() < BOUND {
        let views = futures::future::join_all(
            opts.urls.iter().map(|u| endpoints(http, std::slice::from_ref(u), &opts.service)),
        )
        .await;
        let now = killed_at.elapsed();
        for (slot, view) in seen.iter_mut().zip(&views) {
            if slot.is_none() && view.as_deref().is_some_and(complete) {
                *slot = Some(now);
            }
        }
        // The client's view: the first replica that answers (a killed leader does not).
        if let Some(first) = views.iter().flatten().next()
            && complete(first)
            && all_answer(http, first).await
        {
            return (Some(killed_at.elapsed()), seen);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (None, seen)
}

pub async fn run(opts: &NodeFailoverOptions) -> Result<Vec<NodeTrial>> {
    let http = crate::target::http_client(Duration::from_secs(2));
    let mut results = Vec::new();
    for trial in 0..opts.trials {
        settled(&http, opts).await.with_context(|| format!("before trial {trial}"))?;
        // A kill at a random moment: right after a settle, the next kill would fall at the same
        // point of the agents' heartbeat cycle every trial (the last expiry happened at that
        // point), which biases the detection time. Settling again catches what moved meanwhile.
        tokio::time::sleep(Duration::from_millis(500 + rand::random::<u64>() % 1000)).await;
        let eps = settled(&http, opts).await.with_context(|| format!("before trial {trial}"))?;
        let node = eps[trial % eps.len()].0.clone();
        let agent = node.strip_prefix("node-").context("nodes are named node-N by scripts/cluster.sh")?.to_string();
        let leader = if opts.with_leader {
            let status = cluster_status(&http, &opts.urls).await.context("cluster status")?;
            Some(status["leaderId"].as_u64().context("no leader")?)
        } else {
            None
        };
        let agent_dir = opts.pid_dir.parent().map(|c| c.join("agents").join(&node));
        let on_node = agent_dir.as_deref().map(running_instances).unwrap_or_default();
        let killed_at = Instant::now();
        if let Some(id) = leader {
            let pid = replica_pid(&opts.pid_dir, id)?;
            // SAFETY: kill(2) on the pid of a controller started by scripts/cluster.sh.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let agent_links = format!("a{agent}-");
        match &opts.cut {
            None => sh(&opts.kill_node_cmd, &agent)?,
            Some(proxy) => {
                let blackhole = crate::proxy::Faults { blackhole: true, ..Default::default() };
                proxy.set(|name| name.starts_with(&agent_links), &blackhole).await?;
            }
        }
        let kill_returned = killed_at.elapsed();
        // Watched side by side: the instances may stop before or after the work moved.
        let fencing = async { if opts.expect_fencing { Some(all_stopped(&on_node, killed_at).await) } else { None } };
        let ((failover, seen), fenced) = tokio::join!(watch_takeover(&http, opts, &node, killed_at), fencing);
        if let Some(id) = leader {
            sh(&opts.start_replica_cmd, &id.to_string())?;
        }
        match &opts.cut {
            None => sh(&opts.start_node_cmd, &agent)?,
            Some(proxy) => proxy.heal_all().await?,
        }
        // A healed node first learns its work moved, then stops its old instances: give it a
        // few of its heartbeats before counting what remains.
        if opts.cut.is_some() {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let after = settled(&http, opts).await.with_context(|| format!("after trial {trial}"))?;
        // Duplicates: serving endpoints beyond the replica count, and an instance id served twice.
        let mut per_instance: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, instance, _) in &after {
            *per_instance.entry(instance).or_default() += 1;
        }
        let repeated: usize = per_instance.values().map(|c| c.saturating_sub(1)).sum();
        let duplicates = repeated + after.len().saturating_sub(opts.replicas);
        let at = |d: Option<Duration>| d.map(|d| format!("{:.0}", ms(d))).unwrap_or_else(|| "timeout".into());
        let seen: Vec<String> = seen.iter().map(|d| at(*d)).collect();
        let fenced_text = fenced.map(at).unwrap_or_else(|| "-".into());
        println!(
            "trial={trial} node={node} leader_killed={} failover_ms={} duplicates={duplicates} fenced_ms={fenced_text} kill_cmd_ms={:.0} seen_by_replica_ms={}",
            leader.map(|l| l.to_string()).unwrap_or_else(|| "no".into()),
            at(failover),
            ms(kill_returned),
            seen.join(",")
        );
        results.push(NodeTrial { node, failover, duplicates, fenced });
    }
    Ok(results)
}

/// The instance processes an agent runs, from the PID files it keeps in its directory.
fn running_instances(agent_dir: &std::path::Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(agent_dir) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse::<i32>().ok())
        .filter(|pid| crate::procfs::alive(&pid.to_string()))
        .collect()
}

/// When (after the fault) every one of `pids` had exited, polling up to the bound.
async fn all_stopped(pids: &[i32], since: Instant) -> Option<Duration> {
    while since.elapsed() < BOUND {
        if !pids.iter().any(|p| crate::procfs::alive(&p.to_string())) {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The line `chaos/kill_node.sh` (`cut_agent.sh`) ends with.
pub fn summary_line(results: &[NodeTrial], cut: bool) -> String {
    // A trial that never recovered counts as its bound.
    let s = summarize(results.iter().map(|r| r.failover.unwrap_or(BOUND)).collect());
    let duplicates: usize = results.iter().map(|r| r.duplicates).sum();
    let name = if cut { "agent_cut_ms" } else { "node_failover_ms" };
    let mut line = format!(
        "{name} p50={:.0} p99={:.0} max={:.0} trials={} duplicates={duplicates}",
        ms(s.p50),
        ms(s.p99),
        ms(s.max),
        results.len()
    );
    let fenced: Vec<Option<Duration>> = results.iter().filter_map(|r| r.fenced).collect();
    if !fenced.is_empty() {
        let unfenced = fenced.iter().filter(|f| f.is_none()).count();
        let f = summarize(fenced.iter().map(|f| f.unwrap_or(BOUND)).collect());
        line += &format!(" fenced_ms p50={:.0} max={:.0} unfenced={unfenced}", ms(f.p50), ms(f.max));
    }
    line
}
