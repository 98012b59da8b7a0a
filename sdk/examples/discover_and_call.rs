//! Discover a service through the watched cache and call it with load balancing, a deadline
//! and one retry on another endpoint.
//!
//! On the local cluster (`scripts/cluster.sh up && scripts/deploy_echo.sh`):
//!     cargo run -p plum-sdk --example discover_and_call -- echo

use std::time::{Duration, Instant};

use plum_sdk::Client;
use plum_sdk::balance::{Balancer, Strategy, base_url, call};
use plum_sdk::client::ClientOptions;
use plum_sdk::discovery::Query;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let service = std::env::args().nth(1).unwrap_or_else(|| "echo".into());
    // Controllers from PLUM_CONTROLLERS or the nearest .plum/cluster.env.
    let sdk = Client::from_env(ClientOptions::default())?;
    let balancer = Balancer::new(Strategy::PowerOfTwo);
    let http = reqwest::Client::new();
    for i in 0..10 {
        // From memory after the first lookup; a background watch keeps it fresh.
        let found = sdk.discover(&service, &Query::default()).await?;
        if found.stale {
            eprintln!("cluster unreachable: using endpoints last confirmed {:?} ago", found.age);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        let resp =
            call(&http, &balancer, &found.endpoints, |ep| http.get(format!("{}/hello-{i}", base_url(ep))), deadline)
                .await?;
        let url = resp.url().to_string();
        println!("{url} -> {}", resp.text().await?.trim());
    }
    Ok(())
}
