//! `plum-bench`: load and failure scenarios against a running Plum cluster (release build),
//! and the same against etcd on this machine (`etcd-put`, `etcd-failover`) to compare.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use plum_chaos::{etcd, failover, load, marks, node_failover, scenarios, sdk_bench, target};

#[derive(Parser)]
#[command(name = "plum-bench", about = "Load and chaos scenarios for a local Plum cluster")]
struct Cli {
    /// Controller URLs, comma-separated (default: PLUM_CONTROLLERS, then .plum/cluster.env).
    #[arg(long, global = true)]
    controllers: Option<String>,
    /// Where scripts/cluster.sh keeps its files.
    #[arg(long, global = true, default_value = ".plum")]
    plum_home: PathBuf,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    #[command(flatten)]
    Plum(Scenario),
    #[command(flatten)]
    Etcd(EtcdMode),
}

/// etcd measured as Plum is (Debian's etcd 3.4), loopback only.
#[derive(Subcommand)]
enum EtcdMode {
    /// `kv-put` against etcd: closed-loop puts through its v3 JSON gateway, the same line.
    EtcdPut {
        /// etcd client URLs, comma-separated (http://127.0.0.1:2379,...).
        #[arg(long)]
        endpoints: String,
        #[arg(long, default_value_t = 50)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// `failover` against a 3-member etcd cluster this command starts (and stops) on
    /// loopback; prints the leader_recovery_ms line last.
    EtcdFailover {
        #[arg(long, default_value_t = 20)]
        trials: usize,
        #[arg(long, default_value_t = 6)]
        writers: usize,
        #[arg(long, default_value_t = 50)]
        heartbeat_ms: u64,
        #[arg(long, default_value_t = 250)]
        election_ms: u64,
        /// etcd's --pre-vote (off by default in etcd 3.4).
        #[arg(long)]
        pre_vote: bool,
        /// Member n serves clients on base-port + 2(n-1), its peers on the port after.
        #[arg(long, default_value_t = 23790)]
        base_port: u16,
        #[arg(long, default_value = "etcd")]
        etcd_bin: PathBuf,
        /// Where the cluster's directory (data, logs) is made [default: the temp directory].
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum Scenario {
    /// Kill the leader (or a follower) repeatedly while writing; prints the
    /// leader_recovery_ms (follower_recovery_ms) line last.
    Failover {
        #[arg(long, default_value_t = 20)]
        trials: usize,
        #[arg(long, default_value_t = 6)]
        writers: usize,
        #[arg(long, value_enum, default_value = "leader")]
        victim: failover::Victim,
        /// Command that restarts replica {id}.
        #[arg(long, default_value = "scripts/cluster.sh start-replica {id}")]
        restart_cmd: String,
    },
    /// Kill a node (agent and instances) repeatedly; prints the node_failover_ms line last.
    /// Needs a deployment of `service` (scripts/deploy_echo.sh).
    NodeFailover {
        #[arg(long, default_value_t = 20)]
        trials: usize,
        #[arg(long, default_value = "echo")]
        service: String,
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        /// Also SIGKILL the controller leader at the same moment.
        #[arg(long)]
        with_leader: bool,
        /// Cut the node off (black-hole its agent's links; `cluster.sh up --proxied`) instead
        /// of killing it, then heal.
        #[arg(long)]
        cut: bool,
        /// With --cut: the node's instances must stop by themselves (`fencing: stop`).
        #[arg(long)]
        expect_fencing: bool,
        #[arg(long, default_value = "scripts/cluster.sh kill-node {id}")]
        kill_node_cmd: String,
        #[arg(long, default_value = "scripts/cluster.sh start-agent {id}")]
        start_node_cmd: String,
        #[arg(long, default_value = "scripts/cluster.sh start-replica {id}")]
        start_replica_cmd: String,
    },
    /// Discovery reads from many concurrent clients.
    Discovery {
        #[arg(long, default_value_t = 50)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 20)]
        services: usize,
        #[arg(long, default_value_t = 5)]
        instances_per_service: usize,
    },
    /// Service registrations (writes) from many concurrent clients.
    Register {
        #[arg(long, default_value_t = 50)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// KV puts through every replica (followers forward to the leader).
    KvPut {
        #[arg(long, default_value_t = 50)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Time from a node's last heartbeat until its endpoint leaves discovery.
    Expiry {
        #[arg(long, default_value_t = 20)]
        trials: usize,
        #[arg(long, default_value_t = 250)]
        interval_ms: u64,
    },
    /// The Rust SDK: cached discovery lookups on one thread, then uncached lookups' latency.
    SdkDiscovery {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 5)]
        instances: usize,
        /// Another language's SDK instead: this command, with `discovery` appended
        /// (`sdk/python/bench/run.sh`, `sdk/java/bench/run.sh`); no watch measure then.
        #[arg(long)]
        external: Option<String>,
    },
    /// Kill the leader while an SDK user writes; the longest single call, and exactly-once.
    SdkLeaderKill {
        #[arg(long, default_value_t = 20)]
        trials: usize,
        #[arg(long, default_value = "scripts/cluster.sh start-replica {id}")]
        restart_cmd: String,
        /// Another language's SDK writes instead: this command, with `writer` appended, started
        /// once and driven over stdin (`sdk/python/bench/run.sh`, `sdk/java/bench/run.sh`).
        #[arg(long)]
        external: Option<String>,
    },
    /// A registration storm: every node's first heartbeat at the same moment.
    Storm {
        #[arg(long, default_value_t = 10_000)]
        nodes: usize,
    },
    /// Fake nodes heartbeating at an agent's pace (the original tool's 50-node test).
    Heartbeat {
        #[arg(long, default_value_t = 50)]
        nodes: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value_t = 250)]
        interval_ms: u64,
    },
    /// A simulated fleet: nodes heartbeating with their instances, plus discovery readers and
    /// KV writers; a table per operation, the cluster's marks, the original tool's verdicts.
    Fleet {
        #[arg(long, default_value_t = 50)]
        nodes: usize,
        #[arg(long, default_value_t = 2)]
        instances: usize,
        #[arg(long, default_value_t = 250)]
        interval_ms: u64,
        #[arg(long, default_value_t = 300)]
        seconds: u64,
        #[arg(long, default_value_t = 4)]
        readers: usize,
        #[arg(long, default_value_t = 2)]
        writers: usize,
        /// Pause between one reader's (writer's) requests.
        #[arg(long, default_value_t = 10)]
        pause_ms: u64,
        /// Only against the first controller (default: spread over all).
        #[arg(long)]
        one: bool,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The leader cut off from both followers (`cluster.sh up --proxied`), then healed.
    PartitionLeader {
        #[arg(long, default_value_t = 5)]
        trials: usize,
        #[arg(long, default_value_t = 6)]
        writers: usize,
    },
    /// Every replica SIGKILLed at once and restarted.
    RestartAll {
        #[arg(long, default_value_t = 3)]
        trials: usize,
        #[arg(long, default_value_t = 6)]
        writers: usize,
    },
    /// Each replica restarted in turn (SIGTERM) under SDK load: no request may fail.
    RollingRestart {
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        #[arg(long, default_value_t = 4)]
        writers: usize,
        #[arg(long, default_value_t = 4)]
        readers: usize,
    },
    /// A follower's data wiped and the replica restarted, then the leader killed.
    WipedRejoin {
        #[arg(long, default_value_t = 3)]
        trials: usize,
        #[arg(long, default_value_t = 6)]
        writers: usize,
    },
    /// Latency and loss-like stalls between agents / SDK clients and the controllers
    /// (`cluster.sh up --proxied`): no node may expire, no SDK request may fail.
    WeakNetwork {
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value_t = 200)]
        latency_ms: u64,
        #[arg(long, default_value_t = 100)]
        jitter_ms: u64,
        #[arg(long, default_value_t = 0.05)]
        stall_prob: f64,
        #[arg(long, default_value_t = 8)]
        clients: usize,
    },
    /// Random reads (linearizable) and writes on a few keys from concurrent clients, then a
    /// linearizability check of what they saw; prints one line, exits non-zero on a violation.
    Linearize {
        #[arg(long, default_value_t = 5)]
        clients: usize,
        #[arg(long, default_value_t = 3)]
        keys: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PLUM_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match cli.mode {
        Mode::Plum(scenario) => plum(scenario, cli.controllers.as_deref(), &cli.plum_home).await,
        Mode::Etcd(mode) => until_interrupted(etcd_mode(mode)).await,
    }
}

/// Runs `work` until it ends or this process is asked to stop (Ctrl-C, SIGTERM): dropped
/// then, it cleans up after itself (the etcd members it started).
async fn until_interrupted(work: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        done = work => done,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        _ = term.recv() => anyhow::bail!("terminated"),
    }
}

async fn etcd_mode(mode: EtcdMode) -> Result<()> {
    match mode {
        EtcdMode::EtcdPut { endpoints, clients, seconds } => {
            let urls = etcd::endpoints(&endpoints)?;
            let http = target::http_client(Duration::from_secs(2));
            let Some(term_start) = etcd::term(&http, &urls).await else {
                anyhow::bail!("no etcd endpoint of {endpoints} answered {}", etcd::gateway::STATUS_PATH);
            };
            let opts = load::LoadOptions { urls: urls.clone(), clients, duration: Duration::from_secs(seconds) };
            let report = etcd::puts(&opts).await.line();
            let term_end = etcd::term(&http, &urls).await.map(|t| t.to_string()).unwrap_or_else(|| "unknown".into());
            println!("clients={clients} {report} term_start={term_start} term_end={term_end}");
        }
        EtcdMode::EtcdFailover {
            trials,
            writers,
            heartbeat_ms,
            election_ms,
            pre_vote,
            base_port,
            etcd_bin,
            work_dir,
        } => {
            let settings = etcd::cluster::Settings {
                binary: etcd_bin,
                base_port,
                heartbeat_ms,
                election_ms,
                pre_vote,
                parent_dir: work_dir.unwrap_or_else(std::env::temp_dir),
            };
            let opts = etcd::failover::EtcdFailoverOptions { trials, writers, settings };
            let results = etcd::failover::run(&opts).await?;
            println!("{}", failover::summary_line(&results));
            if results.iter().any(|r| r.lost > 0 || r.recovery.is_none()) {
                anyhow::bail!("a trial lost acknowledged writes or did not recover");
            }
        }
    }
    Ok(())
}

/// The scenarios against a running Plum cluster.
async fn plum(scenario: Scenario, controllers: Option<&str>, plum_home: &std::path::Path) -> Result<()> {
    let urls = target::controllers(controllers, &plum_home.join("cluster.env"))?;
    target::use_access(target::find_access(&plum_home.join("cluster.env"))?);
    match scenario {
        Scenario::Failover { trials, writers, victim, restart_cmd } => {
            let opts = failover::FailoverOptions {
                urls,
                trials,
                writers,
                victim,
                pid_dir: plum_home.join("cluster/pids"),
                restart_cmd,
            };
            let results = failover::run(&opts).await?;
            println!("{}", failover::summary_line(&results));
            if results.iter().any(|r| r.lost > 0 || r.recovery.is_none()) {
                anyhow::bail!("a trial lost acknowledged writes or did not recover");
            }
        }
        Scenario::NodeFailover {
            trials,
            service,
            replicas,
            with_leader,
            cut,
            expect_fencing,
            kill_node_cmd,
            start_node_cmd,
            start_replica_cmd,
        } => {
            let cut_through = if cut { Some(scenario_env(plum_home, &urls).proxy()?) } else { None };
            let opts = node_failover::NodeFailoverOptions {
                urls,
                trials,
                service,
                replicas,
                kill_node_cmd,
                start_node_cmd,
                with_leader,
                pid_dir: plum_home.join("cluster/pids"),
                start_replica_cmd,
                cut: cut_through,
                expect_fencing,
            };
            let results = node_failover::run(&opts).await?;
            println!("{}", node_failover::summary_line(&results, cut));
            if results.iter().any(|r| r.duplicates > 0 || r.failover.is_none() || r.fenced == Some(None)) {
                anyhow::bail!("a trial left duplicates, did not recover, or its instances were not fenced");
            }
        }
        Scenario::Discovery { clients, seconds, services, instances_per_service } => {
            let before = marks::marks(&urls).await;
            let opts = load::LoadOptions { urls: urls.clone(), clients, duration: Duration::from_secs(seconds) };
            let report = load::discovery(&opts, services, instances_per_service).await?.line();
            println!("clients={clients} {report} {}", before.line(&marks::marks(&urls).await));
        }
        Scenario::Register { clients, seconds } => {
            let before = marks::marks(&urls).await;
            let opts = load::LoadOptions { urls: urls.clone(), clients, duration: Duration::from_secs(seconds) };
            let report = load::registrations(&opts).await?.line();
            println!("clients={clients} {report} {}", before.line(&marks::marks(&urls).await));
        }
        Scenario::Expiry { trials, interval_ms } => {
            let s =
                plum_chaos::stats::summarize(load::expiry(&urls, trials, Duration::from_millis(interval_ms)).await?);
            let ms = plum_chaos::stats::ms;
            println!(
                "node_expiry_ms p50={:.0} p99={:.0} max={:.0} trials={}",
                ms(s.p50),
                ms(s.p99),
                ms(s.max),
                s.count
            );
        }
        Scenario::SdkDiscovery { seconds, instances, external } => {
            let line = match external {
                Some(cmd) => sdk_bench::discovery_external(&urls, seconds, instances, &cmd).await?,
                None => sdk_bench::discovery(&urls, seconds, instances).await?,
            };
            println!("{line}");
        }
        Scenario::SdkLeaderKill { trials, restart_cmd, external } => {
            let pid_dir = plum_home.join("cluster/pids");
            let results = sdk_bench::leader_kill(&urls, trials, &pid_dir, &restart_cmd, external.as_deref()).await?;
            println!("{}", sdk_bench::stall_line(&results));
        }
        Scenario::KvPut { clients, seconds } => {
            let before = marks::marks(&urls).await;
            let opts = load::LoadOptions { urls: urls.clone(), clients, duration: Duration::from_secs(seconds) };
            let report = load::kv_puts(&opts).await?.line();
            println!("clients={clients} {report} {}", before.line(&marks::marks(&urls).await));
        }
        Scenario::Storm { nodes } => {
            let before = marks::marks(&urls).await;
            let report = load::storm(&urls, nodes).await?;
            println!("{report} {}", before.line(&marks::marks(&urls).await));
        }
        Scenario::Heartbeat { nodes, seconds, interval_ms } => {
            let before = marks::marks(&urls).await;
            let opts = load::LoadOptions { urls: urls.clone(), clients: nodes, duration: Duration::from_secs(seconds) };
            let midway = marks::midway(&urls, opts.duration);
            let report = load::heartbeats(&opts, Duration::from_millis(interval_ms)).await?.line();
            let after = marks::marks(&urls).await;
            let fds = midway.await.map(|m| m.fds_line()).unwrap_or_default();
            println!("nodes={nodes} interval_ms={interval_ms} {report} {} {fds}", before.line(&after));
        }
        Scenario::Fleet { nodes, instances, interval_ms, seconds, readers, writers, pause_ms, one, json } => {
            let urls = if one { urls[..1].to_vec() } else { urls };
            let opts = plum_chaos::fleet::FleetOptions {
                urls: urls.clone(),
                nodes,
                instances_per_node: instances,
                interval: Duration::from_millis(interval_ms),
                duration: Duration::from_secs(seconds),
                readers,
                writers,
                client_pause: Duration::from_millis(pause_ms),
            };
            let before = marks::marks(&urls).await;
            let midway = marks::midway(&urls, opts.duration);
            let report = plum_chaos::fleet::run(&opts).await;
            let after = marks::marks(&urls).await;
            let midway = midway.await.ok();
            if json {
                let fds = midway.map(|m| m.processes.iter().map(|(id, p)| (*id, p.fds)).collect::<Vec<_>>());
                let value = serde_json::json!({ "report": report, "marks": before.delta(&after), "fds_midway": fds });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                let fds = midway.map(|m| m.fds_line()).unwrap_or_default();
                println!("{}\n{} {fds}", report.table(), before.line(&after));
            }
        }
        Scenario::PartitionLeader { trials, writers } => {
            finish(scenarios::partition::run(&scenario_env(plum_home, &urls), trials, writers).await?)?;
        }
        Scenario::RestartAll { trials, writers } => {
            finish(scenarios::restart_all::run(&scenario_env(plum_home, &urls), trials, writers).await?)?;
        }
        Scenario::RollingRestart { rounds, writers, readers } => {
            finish(scenarios::rolling::run(&scenario_env(plum_home, &urls), rounds, writers, readers).await?)?;
        }
        Scenario::WipedRejoin { trials, writers } => {
            finish(scenarios::wiped::run(&scenario_env(plum_home, &urls), trials, writers).await?)?;
        }
        Scenario::WeakNetwork { seconds, latency_ms, jitter_ms, stall_prob, clients } => {
            let opts = scenarios::weak::WeakOptions { seconds, latency_ms, jitter_ms, stall_prob, clients };
            finish(scenarios::weak::run(&scenario_env(plum_home, &urls), &opts).await?)?;
        }
        Scenario::Linearize { clients, keys, seconds } => {
            use plum_chaos::linearize;
            let duration = Duration::from_secs(seconds);
            let opts = linearize::RunOptions { urls, clients, keys, duration, budget: linearize::Budget::default() };
            let report = linearize::run(&opts).await?;
            println!("{}", report.line());
            report.ensure_no_violation()?;
        }
    }
    Ok(())
}

/// What the chaos scenarios need of the cluster `scripts/cluster.sh` runs under `plum_home`.
fn scenario_env(plum_home: &std::path::Path, urls: &[String]) -> scenarios::Env {
    scenarios::Env {
        urls: urls.to_vec(),
        http: target::http_client(Duration::from_secs(2)),
        pid_dir: plum_home.join("cluster/pids"),
        cluster_sh: std::path::PathBuf::from("scripts/cluster.sh"),
        data_dir: plum_home.join("cluster/data"),
    }
}

/// Prints a scenario's result line; fails (exit code 1) when it did not pass.
fn finish(outcome: scenarios::Outcome) -> Result<()> {
    println!("{}", outcome.line());
    for v in &outcome.violations {
        eprintln!("violation: {v}");
    }
    if !outcome.passed() {
        anyhow::bail!("scenario {} failed", outcome.name);
    }
    Ok(())
}
