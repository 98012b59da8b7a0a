//! Runs the instances assigned to this node: starts what is assigned and not running, stops
//! what runs and is no longer assigned (moved away, deleted, or this node was declared dead
//! meanwhile), restarts what crashed (with backoff), and reports every phase.
//!
//! Each instance has one task: start the process on a free port, wait until it is ready,
//! register its endpoint, renew it while the process runs; on exit deregister, report, back
//! off, start again; on stop, SIGTERM then SIGKILL the group and deregister.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plum_sdk::{ClientError, Controllers};
use plum_types::{AssignmentItem, DeploymentRequest};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::assignments::Desired;
use crate::config::AgentConfig;
use crate::heartbeat::Contact;
use crate::metrics::AgentMetrics;
use crate::process::{self, Proc};
use crate::{artifact, auth, config_refs};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Endpoints are renewed this often and declare this TTL; a dead node hides them at once
/// anyway (discovery never returns endpoints of a dead node).
const RENEW_EVERY: Duration = Duration::from_secs(5);
const ENDPOINT_TTL_MS: u64 = 15_000;
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Between deregistering an instance and signalling it: clients that looked it up just before
/// finish their requests (a rolling update loses none).
const DRAIN: Duration = Duration::from_millis(500);

struct Running {
    stop: oneshot::Sender<()>,
    /// Whether it is a warm standby (its endpoint registered unhealthy, out of discovery).
    standby: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// An instance a previous run of this agent started and that still runs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Leftover {
    pid: u32,
    port: u16,
    /// Process start time (see `process::start_time`): tells it from a pid reused since.
    started: u64,
}

fn record_path(config: &AgentConfig, id: &str, ext: &str) -> std::path::PathBuf {
    config.data_dir.join(format!("{id}.{ext}"))
}

/// Notes a started instance in the data dir: a restarted agent adopts it from there.
fn record(config: &AgentConfig, id: &str, leftover: Leftover) {
    let _ = std::fs::write(record_path(config, id, "pid"), leftover.pid.to_string());
    if let Ok(text) = serde_json::to_string(&leftover) {
        let _ = std::fs::write(record_path(config, id, "json"), text);
    }
}

/// The instance is stopped for good: its records and its config files go.
fn forget(config: &AgentConfig, id: &str) {
    let _ = std::fs::remove_file(record_path(config, id, "pid"));
    let _ = std::fs::remove_file(record_path(config, id, "json"));
    let _ = std::fs::remove_dir_all(config_refs::dir(&config.data_dir, id));
}

/// The instances a previous run left that still run (same pid, same start time). Records of
/// processes that are gone are removed.
fn leftovers(config: &AgentConfig) -> HashMap<String, Leftover> {
    let mut found = HashMap::new();
    let Ok(entries) = std::fs::read_dir(&config.data_dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Some(id) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else { continue };
        let left: Option<Leftover> = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok());
        match left {
            Some(l) if process::start_time(l.pid) == Some(l.started) => {
                found.insert(id, l);
            }
            _ => forget(config, &id),
        }
    }
    found
}

pub async fn run(
    config: Arc<AgentConfig>,
    client: Arc<Controllers>,
    contact: Arc<Contact>,
    mut desired: watch::Receiver<Option<Desired>>,
    metrics: Arc<AgentMetrics>,
) {
    // Instances a previous run started: adopted if still assigned, stopped if not, once the
    // first assignments arrive.
    let mut left = leftovers(&config);
    let mut running: HashMap<String, Running> = HashMap::new();
    loop {
        if desired.changed().await.is_err() {
            break;
        }
        let Some(want) = desired.borrow_and_update().clone() else { continue };
        let unwanted: Vec<String> = left.keys().filter(|id| !want.contains_key(*id)).cloned().collect();
        for id in unwanted {
            let Some(l) = left.remove(&id) else { continue };
            tracing::info!(node = %config.node_id, instance = %id, pid = l.pid, "left by a previous run, no longer assigned: stopping");
            process::stop_group(l.pid, STOP_GRACE).await;
            forget(&config, &id);
        }
        let gone: Vec<String> = running.keys().filter(|id| !want.contains_key(*id)).cloned().collect();
        for id in gone {
            if let Some(r) = running.remove(&id) {
                tracing::info!(node = %config.node_id, instance = %id, "no longer assigned here: stopping");
                let _ = r.stop.send(());
                // Stopping takes up to the grace period; the others need not wait for it.
                tokio::spawn(async move {
                    let _ = r.task.await;
                });
            }
        }
        for (id, item) in want {
            if let Some(r) = running.get(&id) {
                // A standby that took over (or an instance that became one).
                r.standby.send_if_modified(|s| std::mem::replace(s, item.standby) != item.standby);
                continue;
            }
            if item.desired != "Running" {
                // Completed (a one-shot job that exited 0 and is not restarted): not started
                // again, also not by a restarted agent or on another node.
                continue;
            }
            let (stop, stopped) = oneshot::channel();
            let (standby, standby_rx) = watch::channel(item.standby);
            let adopt = left.remove(&id);
            let task = tokio::spawn(supervise(
                config.clone(),
                client.clone(),
                (contact.clone(), metrics.clone()),
                (item, adopt),
                stopped,
                standby_rx,
            ));
            running.insert(id, Running { stop, standby, task });
        }
        metrics.instances.set(running.len() as i64);
    }
    for (_, r) in running {
        let _ = r.stop.send(());
        let _ = r.task.await;
    }
}

/// The HTTP client artifacts are fetched with.
fn artifact_http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap_or_default()
}

/// Replaces `${PORT}` in a value.
fn with_port(value: &str, port: u16) -> String {
    value.replace("${PORT}", &port.to_string())
}

/// A `403` about one instance: the controllers moved it to another node meanwhile (a fenced or
/// cut-off node learns so late), which an agent token may no longer touch. Not a token problem.
fn moved_away(id: &str, e: &ClientError) -> bool {
    let moved = matches!(e, ClientError::Forbidden(_));
    if moved {
        tracing::debug!(instance = %id, "the instance is no longer this node's: nothing to report");
    }
    moved
}

async fn report(
    client: &Controllers,
    config: &AgentConfig,
    id: &str,
    phase: &str,
    port: u16,
    healthy: bool,
    exit: Option<i32>,
) {
    let body = json!({"instanceId": id, "nodeId": config.node_id, "phase": phase, "port": port, "healthy": healthy,
                      "exitCode": exit});
    let result = client.call::<_, Value>(Method::POST, "/v1/instances/status", Some(&body), CALL_TIMEOUT).await;
    if let Err(e) = result
        && !moved_away(id, &e)
        && !auth::refused(client, &config.node_id, "status report", &e)
    {
        tracing::debug!(instance = %id, phase, error = %e, "status report not taken");
    }
}

async fn deregister(client: &Controllers, config: &AgentConfig, id: &str) {
    let path = format!("/v1/services?instanceId={id}");
    if let Err(e) = client.call::<(), Value>(Method::DELETE, &path, None, CALL_TIMEOUT).await
        && !moved_away(id, &e)
        && !auth::refused(client, &config.node_id, "deregistration", &e)
    {
        tracing::warn!(instance = %id, error = %e, "deregistration failed");
    }
}

/// Polls readiness until it holds, or gives up after `READY_TIMEOUT`.
async fn wait_ready(spec: &DeploymentRequest, port: u16) -> bool {
    let http_path = spec.service.as_ref().and_then(|s| s.readiness.as_ref()).and_then(|r| r.http_path.clone());
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(1)).build();
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        let ready = match (&http_path, &http) {
            (Some(path), Ok(http)) => {
                http.get(format!("http://127.0.0.1:{port}{path}")).send().await.is_ok_and(|r| r.status().is_success())
            }
            _ => tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok(),
        };
        if ready {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// The pause before another start after `failures` failed ones in a row: 200 ms doubling,
/// at most `MAX_BACKOFF`.
fn backoff(failures: u32) -> Duration {
    (Duration::from_millis(100) * 2u32.saturating_pow(failures.min(10))).min(MAX_BACKOFF)
}

/// How one run of the process ended.
enum Ended {
    Exited(Option<i32>),
    Stopped,
    /// Stopped because contact with the controllers was lost (`fencing: stop`).
    Fenced,
    /// Could not be started (its artifact is not usable); reported as `Failed`, retried later.
    Failed,
}

/// How often a fenced instance checks its agent's contact with the controllers.
const FENCE_CHECK: Duration = Duration::from_millis(100);

/// Longer than the declared TTL without an acknowledged heartbeat: the controllers have (or
/// soon will have) declared this node dead and started the work elsewhere.
fn cut_off(config: &AgentConfig, contact: &Contact) -> bool {
    contact.silence() > Duration::from_millis(config.ttl_ms)
}

/// Resolves once the node is cut off (never without fencing): raced against every call to the
/// controllers, which on a cut-off node waits out its whole deadline.
async fn cut_off_now(config: &AgentConfig, fence: Option<&Contact>) {
    let Some(contact) = fence else { return std::future::pending().await };
    loop {
        if cut_off(config, contact) {
            return;
        }
        tokio::time::sleep(FENCE_CHECK).await;
    }
}

/// Runs `work` unless the node is cut off first; `false` if it was (the caller fences).
async fn unless_cut_off(config: &AgentConfig, fence: Option<&Contact>, work: impl Future<Output = ()>) -> bool {
    tokio::select! {
        () = work => true,
        () = cut_off_now(config, fence) => false,
    }
}

/// Stops the instance of a node cut off from the controllers (`fencing: stop`).
async fn stop_fenced(child: &mut Proc, config: &AgentConfig, id: &str) -> Ended {
    child.stop(STOP_GRACE).await;
    forget(config, id);
    Ended::Fenced
}

/// What one run starts: the assignment, its spec, and the contact to watch when fenced.
struct Instance<'a> {
    item: &'a AssignmentItem,
    spec: &'a DeploymentRequest,
    fence: Option<&'a Contact>,
    /// Still running from a previous run of the agent: watch it instead of starting one.
    adopt: Option<Leftover>,
}

async fn supervise(
    config: Arc<AgentConfig>,
    client: Arc<Controllers>,
    (contact, metrics): (Arc<Contact>, Arc<AgentMetrics>),
    (item, mut adopt): (AssignmentItem, Option<Leftover>),
    mut stop: oneshot::Receiver<()>,
    mut standby: watch::Receiver<bool>,
) {
    let id = item.instance_id.clone();
    let spec = item.spec.clone().unwrap_or_default();
    let mut failures: u32 = 0;
    loop {
        let started = Instant::now();
        let fenced = spec.fencing.as_deref() == Some("stop");
        if fenced && cut_off(&config, &contact) {
            // Not before contact is back: then the assignments say whether it is still ours.
            tokio::select! {
                _ = tokio::time::sleep(FENCE_CHECK) => continue,
                _ = &mut stop => return,
            }
        }
        let instance =
            Instance { item: &item, spec: &spec, fence: fenced.then_some(contact.as_ref()), adopt: adopt.take() };
        match run_once(&config, &client, instance, &mut stop, &mut standby, &metrics).await {
            Ended::Stopped => return,
            Ended::Fenced => {
                metrics.fenced.inc();
                tracing::warn!(instance = %id, "contact with the controllers lost for longer than the TTL: stopped (fencing)");
                report(&client, &config, &id, "Fenced", 0, false, None).await;
                continue;
            }
            Ended::Failed => {
                failures += 1;
                tokio::select! {
                    _ = tokio::time::sleep(backoff(failures)) => {}
                    _ = &mut stop => return,
                }
            }
            Ended::Exited(code) => {
                deregister(&client, &config, &id).await;
                if let Some(phase) = no_restart(spec.restart.as_deref(), code) {
                    // Done for good (a one-shot job, or `restart: never`): reported, then idle
                    // until the assignment goes away; dependents may wait on `Completed`.
                    report(&client, &config, &id, phase, 0, false, code).await;
                    tracing::info!(instance = %id, ?code, phase, "instance exited; not restarted (restart policy)");
                    let _ = (&mut stop).await;
                    return;
                }
                report(&client, &config, &id, "Exited", 0, false, code).await;
                // A run that lasted a while resets the backoff: only crash loops slow down.
                failures = if started.elapsed() > Duration::from_secs(10) { 0 } else { failures + 1 };
                let backoff = backoff(failures);
                tracing::warn!(instance = %id, ?code, ?backoff, "instance exited; restarting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {
                        metrics.restarts.inc();
                    }
                    _ = &mut stop => return,
                }
            }
        }
    }
}

/// The phase an exited instance stays in when its restart policy says not to start it again
/// (`None`: restart it). `on-failure` keeps an instance that exited with status 0
/// (`Completed`); `never` keeps any (`Completed` or `Exited`).
fn no_restart(policy: Option<&str>, code: Option<i32>) -> Option<&'static str> {
    match (policy, code) {
        (Some("on-failure" | "never"), Some(0)) => Some("Completed"),
        (Some("never"), _) => Some("Exited"),
        _ => None,
    }
}

async fn run_once(
    config: &AgentConfig,
    client: &Arc<Controllers>,
    instance: Instance<'_>,
    stop: &mut oneshot::Receiver<()>,
    standby: &mut watch::Receiver<bool>,
    metrics: &AgentMetrics,
) -> Ended {
    let Instance { item, spec, fence, adopt } = instance;
    let id = &item.instance_id;
    let port = match (adopt, process::free_port()) {
        (Some(l), _) => l.port,
        (None, Ok(p)) => p,
        (None, Err(_)) => return Ended::Exited(None),
    };
    let service = spec.service.as_ref().map(|s| s.name.clone()).unwrap_or_default();
    let mut env: BTreeMap<String, String> = spec.env.iter().map(|(k, v)| (k.clone(), with_port(v, port))).collect();
    env.insert("PORT".into(), port.to_string());
    env.insert("PLUM_INSTANCE_ID".into(), id.clone());
    env.insert("PLUM_NODE_ID".into(), config.node_id.clone());
    env.insert("PLUM_SERVICE".into(), service.clone());
    env.insert("PLUM_VERSION".into(), spec.version.clone());
    let args: Vec<String> = spec.args.iter().map(|a| with_port(a, port)).collect();
    let config_dir = config_refs::dir(&config.data_dir, id);
    let mut child = match adopt {
        Some(l) => {
            tracing::info!(node = %config.node_id, instance = %id, pid = l.pid, port, "adopted from a previous run");
            Proc::Adopted { pid: l.pid, started: l.started }
        }
        None => {
            let dir = match spec.artifact.as_ref().filter(|a| !a.url.is_empty()) {
                Some(a) => match artifact::prepare(&artifact_http(), &config.data_dir.join("artifacts"), a).await {
                    Ok(dir) => Some(dir),
                    Err(e) => {
                        tracing::error!(instance = %id, error = %e, "artifact not usable");
                        report(client, config, id, "Failed", 0, false, None).await;
                        return Ended::Failed;
                    }
                },
                None => None,
            };
            if let Err(e) = config_refs::materialize(client, &spec.config_refs, &config_dir, &mut env).await {
                tracing::error!(instance = %id, error = %e, "config not available");
                report(client, config, id, "Failed", 0, false, None).await;
                return Ended::Failed;
            }
            report(client, config, id, "Starting", port, false, None).await;
            let program = artifact::program(dir.as_deref(), &spec.command);
            match process::spawn(&program, &args, &env, dir.as_deref(), &config.data_dir.join("logs"), id) {
                Ok(c) => {
                    metrics.starts.inc();
                    Proc::Child(c)
                }
                Err(e) => {
                    tracing::error!(instance = %id, command = %spec.command, error = %e, "cannot start");
                    return Ended::Exited(None);
                }
            }
        }
    };
    if let Some(pid) = child.id() {
        record(config, id, Leftover { pid, port, started: process::start_time(pid).unwrap_or(0) });
    }
    // Stopped when this run ends (dropped on every return below).
    let _following = config_refs::follow(client, &spec.config_refs, &config_dir, id);
    let started = Instant::now();
    let ready = tokio::select! {
        ready = wait_ready(spec, port) => ready,
        code = child.wait() => return Ended::Exited(code),
        _ = &mut *stop => {
            child.stop(STOP_GRACE).await;
            return Ended::Stopped;
        }
        () = cut_off_now(config, fence) => {
            return stop_fenced(&mut child, config, id).await;
        }
    };
    if !ready {
        metrics.readiness_failures.inc();
        tracing::warn!(instance = %id, port, "not ready in time: restarting it");
        child.stop(STOP_GRACE).await;
        return Ended::Exited(None);
    }
    // A warm standby registers its endpoint unhealthy: out of discovery until it takes over
    // (the controllers mark it healthy in the entry that hands it the work).
    let protocol = spec.service.as_ref().map(|s| s.protocol.clone()).unwrap_or_default();
    let register = async |standby: bool| {
        if service.is_empty() {
            return;
        }
        let body = json!({"instanceId": id, "nodeId": config.node_id, "ip": config.ip, "replace": true,
                          "ttlMs": ENDPOINT_TTL_MS,
                          "endpoints": [{"serviceName": service, "protocol": protocol, "port": port,
                                         "version": spec.version, "healthy": !standby}]});
        if let Err(e) = client.call::<_, Value>(Method::POST, "/v1/services/register", Some(&body), CALL_TIMEOUT).await
            && !auth::refused(client, &config.node_id, "registration", &e)
        {
            tracing::warn!(instance = %id, error = %e, "registration failed; retried at the next renewal");
        }
    };
    // Counted ready from here until this run of the process ends, whichever way.
    let _ready = metrics.ready_until_dropped(started.elapsed());
    let role = *standby.borrow_and_update();
    let announced = async {
        register(role).await;
        report(client, config, id, "Running", port, true, None).await;
    };
    if !unless_cut_off(config, fence, announced).await {
        return stop_fenced(&mut child, config, id).await;
    }
    tracing::info!(node = %config.node_id, instance = %id, port, "instance ready");
    let mut renew = tokio::time::interval(RENEW_EVERY);
    renew.tick().await;
    loop {
        tokio::select! {
            () = cut_off_now(config, fence) => {
                return stop_fenced(&mut child, config, id).await;
            }
            code = child.wait() => return Ended::Exited(code),
            _ = &mut *stop => {
                deregister(client, config, id).await;
                tokio::time::sleep(DRAIN).await;
                child.stop(STOP_GRACE).await;
                forget(config, id);
                return Ended::Stopped;
            }
            _ = renew.tick() => {
                // Registering again is idempotent and also renews: it survives a controller
                // that lost the registration (the leader changed mid-write).
                let role = *standby.borrow();
                process::rotate_logs(&config.data_dir.join("logs"), id);
                if !unless_cut_off(config, fence, register(role)).await {
                    return stop_fenced(&mut child, config, id).await;
                }
            }
            changed = standby.changed() => {
                if changed.is_ok() {
                    let role = *standby.borrow_and_update();
                    tracing::info!(instance = %id, standby = role, "role changed");
                    if !unless_cut_off(config, fence, register(role)).await {
                        return stop_fenced(&mut child, config, id).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::no_restart;

    #[test]
    fn the_restart_policy_decides_what_an_exit_ends() {
        assert_eq!(no_restart(None, Some(0)), None, "default: always restart");
        assert_eq!(no_restart(Some("always"), Some(0)), None);
        assert_eq!(no_restart(Some("on-failure"), Some(0)), Some("Completed"));
        assert_eq!(no_restart(Some("on-failure"), Some(1)), None, "a failure is restarted");
        assert_eq!(no_restart(Some("on-failure"), None), None, "killed by a signal: a failure");
        assert_eq!(no_restart(Some("never"), Some(3)), Some("Exited"));
        assert_eq!(no_restart(Some("never"), Some(0)), Some("Completed"));
    }
}
