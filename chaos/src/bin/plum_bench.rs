//! `plum-bench`: load and failure scenarios against a running Plum cluster (release build).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use plum_chaos::{failover, load, node_failover, sdk_bench, target};

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
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Kill the leader repeatedly while writing; prints the leader_recovery_ms line last.
    Failover {
        #[arg(long, default_value_t = 20)]
        trials: usize,
        #[arg(long, default_value_t = 6)]
        writers: usize,
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
    },
    /// Kill the leader while an SDK user writes; the longest single call, and exactly-once.
    SdkLeaderKill {
        #[arg(long, default_value_t = 20)]
        trials: usize,
        #[arg(long, default_value = "scripts/cluster.sh start-replica {id}")]
        restart_cmd: String,
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
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PLUM_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let urls = target::controllers(cli.controllers.as_deref(), &cli.plum_home.join("cluster.env"))?;
    target::use_access(target::find_access(&cli.plum_home.join("cluster.env"))?);
    match cli.scenario {
        Scenario::Failover { trials, writers, restart_cmd } => {
            let opts = failover::FailoverOptions {
                urls,
                trials,
                writers,
                pid_dir: cli.plum_home.join("cluster/pids"),
                restart_cmd,
            };
            let results = failover::run(&opts).await?;
            println!("{}", failover::summary_line(&results));
        }
        Scenario::NodeFailover {
            trials,
            service,
            replicas,
            with_leader,
            kill_node_cmd,
            start_node_cmd,
            start_replica_cmd,
        } => {
            let opts = node_failover::NodeFailoverOptions {
                urls,
                trials,
                service,
                replicas,
                kill_node_cmd,
                start_node_cmd,
                with_leader,
                pid_dir: cli.plum_home.join("cluster/pids"),
                start_replica_cmd,
            };
            let results = node_failover::run(&opts).await?;
            println!("{}", node_failover::summary_line(&results));
        }
        Scenario::Discovery { clients, seconds, services, instances_per_service } => {
            let before = target::marks(&urls).await;
            let opts = load::LoadOptions { urls: urls.clone(), clients, duration: Duration::from_secs(seconds) };
            let report = load::discovery(&opts, services, instances_per_service).await?.line();
            println!("clients={clients} {report} {}", before.line(&target::marks(&urls).await));
        }
        Scenario::Register { clients, seconds } => {
            let before = target::marks(&urls).await;
            let opts = load::LoadOptions { urls: urls.clone(), clients, duration: Duration::from_secs(seconds) };
            let report = load::registrations(&opts).await?.line();
            println!("clients={clients} {report} {}", before.line(&target::marks(&urls).await));
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
        Scenario::SdkDiscovery { seconds, instances } => {
            println!("{}", sdk_bench::discovery(&urls, seconds, instances).await?);
        }
        Scenario::SdkLeaderKill { trials, restart_cmd } => {
            let pid_dir = cli.plum_home.join("cluster/pids");
            let results = sdk_bench::leader_kill(&urls, trials, &pid_dir, &restart_cmd).await?;
            println!("{}", sdk_bench::stall_line(&results));
        }
        Scenario::KvPut { clients, seconds } => {
            let before = target::marks(&urls).await;
            let opts = load::LoadOptions { urls: urls.clone(), clients, duration: Duration::from_secs(seconds) };
            let report = load::kv_puts(&opts).await?.line();
            println!("clients={clients} {report} {}", before.line(&target::marks(&urls).await));
        }
        Scenario::Storm { nodes } => {
            let before = target::marks(&urls).await;
            let report = load::storm(&urls, nodes).await?;
            println!("{report} {}", before.line(&target::marks(&urls).await));
        }
        Scenario::Heartbeat { nodes, seconds, interval_ms } => {
            let before = target::marks(&urls).await;
            let opts = load::LoadOptions { urls: urls.clone(), clients: nodes, duration: Duration::from_secs(seconds) };
            let report = load::heartbeats(&opts, Duration::from_millis(interval_ms)).await?.line();
            let after = target::marks(&urls).await;
            println!("nodes={nodes} interval_ms={interval_ms} {report} {}", before.line(&after));
        }
    }
    Ok(())
}
