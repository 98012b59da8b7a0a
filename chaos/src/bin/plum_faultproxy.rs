//! `plum-faultproxy`: the lab's fault-injecting TCP proxy (`plum_chaos::proxy`).
//!
//! `serve` runs the proxy and its control API; `list`, `add`, `remove`, `set` and `heal` drive a
//! running one through that API. Logs go to stderr (`PLUM_LOG`, default `info`); stdout carries
//! only command output.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use plum_chaos::proxy::{
    ControlClient, Direction, Faults, LinkInfo, LinkSpec, Proxy, Shaping, control, parse_link_flag,
};

#[derive(Parser)]
#[command(
    name = "plum-faultproxy",
    about = "Fault-injecting TCP proxy: latency, bandwidth, stalls, resets, partitions"
)]
struct Cli {
    /// Control API address: where `serve` listens and where the other commands send.
    #[arg(long, global = true, env = "PLUM_FAULTPROXY_CONTROL", default_value = "127.0.0.1:7474")]
    control: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy and its control API until SIGINT/SIGTERM.
    Serve {
        /// A link to start with: NAME=LISTEN,UPSTREAM (repeatable).
        #[arg(long = "link", value_name = "NAME=LISTEN,UPSTREAM", value_parser = parse_link_flag)]
        links: Vec<(String, LinkSpec)>,
    },
    #[command(flatten)]
    Client(ClientCommand),
}

/// The commands that talk to a running proxy.
#[derive(Subcommand)]
enum ClientCommand {
    /// List the links with their faults and connection counts.
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create a link.
    Add {
        /// Link name (letters, digits, '-', '_', '.').
        name: String,
        /// Where the proxy listens (port 0: any free port, shown in the answer).
        listen: SocketAddr,
        /// Where it forwards to.
        upstream: SocketAddr,
    },
    /// Remove a link, closing its connections.
    Remove {
        /// Link name.
        name: String,
    },
    /// Replace a link's faults (flags not given are no fault).
    Set {
        /// Link name.
        name: String,
        #[command(flatten)]
        faults: FaultFlags,
    },
    /// Back to no fault: one link, or every link without NAME.
    Heal {
        /// Link name; all links if missing.
        name: Option<String>,
    },
}

#[derive(Args)]
struct FaultFlags {
    #[command(flatten)]
    shaping: Shaping,
    /// Apply the flags above to this direction only (upstream = client→server).
    #[arg(long, value_name = "upstream|downstream")]
    direction: Option<Direction>,
    /// Forward nothing either way; accept and keep connections, never answer.
    #[arg(long)]
    blackhole: bool,
    /// Forward nothing in this direction.
    #[arg(long, value_name = "upstream|downstream")]
    cut: Option<Direction>,
    /// Reset new connections at once.
    #[arg(long)]
    refuse: bool,
}

impl FaultFlags {
    fn into_faults(self) -> Faults {
        let shaping = self.shaping;
        let mut faults = Faults { blackhole: self.blackhole, cut: self.cut, refuse: self.refuse, ..Faults::none() };
        match self.direction {
            None => faults.set_both(shaping),
            Some(Direction::Upstream) => faults.upstream = Some(shaping),
            Some(Direction::Downstream) => faults.downstream = Some(shaping),
        }
        faults
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PLUM_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve { links } => serve(&cli.control, links).await,
        Command::Client(command) => run_client(&cli.control, command).await,
    };
    // One line with its causes, for people and scripts alike (no backtrace dump).
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plum-faultproxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(control: &str, links: Vec<(String, LinkSpec)>) -> anyhow::Result<()> {
    let addr: SocketAddr = control.parse().with_context(|| format!("--control {control:?}: expected IP:PORT"))?;
    let proxy = Proxy::new();
    for (name, spec) in links {
        proxy.add_link(&name, spec).await.with_context(|| format!("link {name}"))?;
    }
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("control API on {addr}"))?;
    tracing::info!(control = %listener.local_addr()?, "fault proxy ready");
    control::serve(listener, proxy, shutdown_signal()).await.context("control API")?;
    tracing::info!("fault proxy stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; stop with SIGINT");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

async fn run_client(control: &str, command: ClientCommand) -> anyhow::Result<()> {
    let client = ControlClient::new(control)?;
    match command {
        ClientCommand::List { json } => {
            let links = client.list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&links)?);
            } else {
                print_table(&links);
            }
        }
        ClientCommand::Add { name, listen, upstream } => {
            let link = client.add(&name, &LinkSpec { listen, upstream, faults: None }).await?;
            print_table(&[link]);
        }
        ClientCommand::Remove { name } => {
            client.remove(&name).await?;
            println!("removed {name}");
        }
        ClientCommand::Set { name, faults } => print_table(&[client.set_faults(&name, &faults.into_faults()).await?]),
        ClientCommand::Heal { name: Some(name) } => print_table(&[client.heal(&name).await?]),
        ClientCommand::Heal { name: None } => print_table(&client.heal_all().await?),
    }
    Ok(())
}

fn print_table(links: &[LinkInfo]) {
    println!("{:<16} {:<22} {:<22} {:>6} {:>7} {:>6}  FAULTS", "NAME", "LISTEN", "UPSTREAM", "OPEN", "TOTAL", "RESETS");
    for link in links {
        let faults = if link.faults.is_none() { "-".to_string() } else { link.faults.to_string() };
        println!(
            "{:<16} {:<22} {:<22} {:>6} {:>7} {:>6}  {}",
            link.name,
            link.listen.to_string(),
            link.upstream.to_string(),
            link.connections.active,
            link.connections.total,
            link.connections.resets,
            faults
        );
    }
}
