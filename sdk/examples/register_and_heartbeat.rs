//! Register a service that no agent runs, keep it alive in the background, deregister on exit.
//!
//!     cargo run -p plum-sdk --example register_and_heartbeat -- my-service 9000
//! then `plumctl discover my-service` from another shell; Ctrl-C deregisters it.

use std::time::Duration;

use plum_sdk::Client;
use plum_sdk::client::ClientOptions;
use plum_types::{EndpointSpec, RegisterRequest};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let service = args.next().unwrap_or_else(|| "example".into());
    let port: u32 = args.next().unwrap_or_else(|| "9000".into()).parse()?;
    let sdk = Client::from_env(ClientOptions::default())?;
    // Declares a 5 s TTL; heartbeats go out every 1.25 s, one batch for all instances.
    let registrar = sdk.registrar(Duration::from_secs(5));
    registrar
        .register(vec![RegisterRequest {
            instance_id: format!("{service}-{}", std::process::id()),
            ip: Some("127.0.0.1".into()),
            endpoints: vec![EndpointSpec {
                service_name: service.clone(),
                port,
                protocol: "http".into(),
                version: "1.0.0".into(),
                ..EndpointSpec::default()
            }],
            ..RegisterRequest::default()
        }])
        .await?;
    println!("registered {service} on port {port}; Ctrl-C to deregister");
    tokio::signal::ctrl_c().await?;
    registrar.shutdown().await?;
    println!("deregistered");
    Ok(())
}
