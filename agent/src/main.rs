//! `plum-agent`: one per machine. Heartbeats to the controllers (any replica), learns by push
//! what this node should run, runs and supervises it, registers the endpoints.

mod artifact;
mod assignments;
mod auth;
mod config;
mod config_refs;
mod heartbeat;
mod metrics;
mod process;
mod supervisor;

use std::sync::Arc;

use clap::Parser;
use plum_sdk::Controllers;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = config::Args::parse();
    plum_sdk::logging::init(args.log_format, "info");
    let env_token = std::env::var(plum_sdk::config::TOKEN_ENV).ok();
    let config = Arc::new(config::AgentConfig::from_args(args, env_token)?);
    std::fs::create_dir_all(&config.data_dir)?;
    let client = Arc::new(Controllers::with_options(config.controllers.clone(), config.transport_options()?));
    let token = match (&config.token, &config.token_file) {
        (None, _) => "none".to_string(),
        (Some(_), Some(file)) => format!("from {}", file.display()),
        (Some(_), None) => "from PLUM_TOKEN".to_string(),
    };
    let ca = config.ca_file.as_ref().map_or("system".to_string(), |f| f.display().to_string());
    tracing::info!(node = %config.node_id, controllers = ?config.controllers, %token, %ca, "agent starting");
    if config.token_file_ignored {
        tracing::warn!("both PLUM_TOKEN and a token file are set: using PLUM_TOKEN, ignoring the file");
    }
    let metrics = Arc::new(metrics::AgentMetrics::new());
    if let Some(addr) = config.metrics_addr {
        let listener = metrics::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "serving metrics at /metrics");
        tokio::spawn(metrics::serve(listener, metrics.clone()));
    }
    tokio::spawn(auth::check(client.clone(), config.node_id.clone()));
    let (desired_tx, desired_rx) = tokio::sync::watch::channel(None);
    let contact = Arc::new(heartbeat::Contact::new());
    tokio::spawn(heartbeat::run(config.clone(), client.clone(), contact.clone(), metrics.clone()));
    tokio::spawn(assignments::run(config.clone(), client.clone(), desired_tx));
    let supervising = tokio::spawn(supervisor::run(config.clone(), client.clone(), contact, desired_rx, metrics));
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = sigterm() => tracing::info!("SIGTERM: stopping"),
        _ = supervising => {}
    }
    Ok(())
}

async fn sigterm() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
