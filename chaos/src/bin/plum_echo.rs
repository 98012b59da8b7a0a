//! `plum-echo`: a small HTTP service to deploy on Plum in the demo, the tests and the
//! benchmarks. `GET /health` answers `ok`; any other GET answers who served it (instance, node,
//! version), the path, and `$ECHO_CONFIG` (a config key given to it as that variable, or null). Listens on 127.0.0.1:`$PORT` (the agent passes a free port), or
//! `--port N`.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Request, State};
use axum::routing::get;
use serde_json::{Value, json};

#[derive(Clone)]
struct Identity {
    instance: String,
    node: String,
    version: String,
    config: Option<String>,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

async fn echo(State(who): State<Identity>, req: Request) -> axum::Json<Value> {
    axum::Json(json!({
        "instance": who.instance,
        "node": who.node,
        "version": who.version,
        "path": req.uri().path(),
        "config": who.config,
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let from_flag = args.iter().position(|a| a == "--port").and_then(|i| args.get(i + 1)).cloned();
    let port: u16 = from_flag.unwrap_or_else(|| env("PORT")).parse()?;
    let who = Identity {
        instance: env("PLUM_INSTANCE_ID"),
        node: env("PLUM_NODE_ID"),
        version: std::env::var("PLUM_VERSION").unwrap_or_else(|_| "dev".into()),
        config: std::env::var("ECHO_CONFIG").ok(),
    };
    let app = Router::new().route("/health", get(|| async { "ok" })).fallback(get(echo)).with_state(who);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
