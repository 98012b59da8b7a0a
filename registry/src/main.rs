//! `plum-controller`: runs one replica of the Plum controller cluster.

use clap::Parser;
use plum_registry::config::{Args, ControllerConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    plum_sdk::logging::init(args.log_format, "info,openraft=warn");
    let config = ControllerConfig::from_args(args)?;
    let listener = plum_registry::server::bind(&config).await?;
    plum_registry::server::run(config, listener, plum_registry::server::signal()).await?;
    Ok(())
}
