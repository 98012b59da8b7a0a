//! `plum-controller`: runs one replica of the Plum controller cluster.

use clap::Parser;
use plum_registry::config::{Args, ControllerConfig};

/// The log filter when `PLUM_LOG` is unset.
const LOG_FILTER: &str = "info,openraft=warn";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let log_format = args.log_format;
    // With span export, logging starts once the configuration is read (the exporter names the
    // replica); without the feature, `from_args` refuses an endpoint.
    if args.otlp_endpoint.as_deref().is_none_or(|e| e.trim().is_empty()) {
        plum_sdk::logging::init(log_format, LOG_FILTER);
    }
    let config = ControllerConfig::from_args(args)?;
    #[cfg(feature = "otlp")]
    let exporting = match &config.otlp_traces_url {
        Some(url) => {
            let exporting =
                plum_registry::otlp::init(log_format, LOG_FILTER, url, config.id).map_err(anyhow::Error::msg)?;
            tracing::info!(url, "exporting spans over OTLP/HTTP");
            Some(exporting)
        }
        None => None,
    };
    let listener = plum_registry::server::bind(&config).await?;
    let served = plum_registry::server::run(config, listener, plum_registry::server::signal()).await;
    #[cfg(feature = "otlp")]
    if let Some(exporting) = exporting {
        exporting.shutdown().await;
    }
    served?;
    Ok(())
}
