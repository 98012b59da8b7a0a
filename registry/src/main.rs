//! `plum-controller`: runs one replica of the Plum controller cluster.

use clap::Parser;
use plum_registry::config::{Args, ControllerConfig};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("PLUM_LOG").unwrap_or_else(|_| EnvFilter::new("info,openraft=warn")))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = ControllerConfig::from_args(Args::parse())?;
    let listener = plum_registry::server::bind(&config).await?;
    plum_registry::server::run(config, listener, plum_registry::server::signal()).await?;
    Ok(())
}
