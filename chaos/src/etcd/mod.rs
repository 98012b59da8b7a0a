//! etcd measured beside Plum on the same machine, by the same code, so that the figures in
//! docs/BENCHMARKS.md compare like with like (Debian's etcd 3.4: `/usr/bin/etcd`).
//!
//! - [`puts`] (`plum-bench etcd-put`): closed-loop puts through etcd's v3 JSON gateway, run by
//!   [`crate::load::puts`] exactly as Plum's `kv-put` is.
//! - [`failover`] (`plum-bench etcd-failover`): a 3-member cluster of its own on loopback
//!   ([`cluster`]), its leader SIGKILLed under the writers of [`crate::writes`], recovery
//!   measured and reported as Plum's `failover` does.
//! - [`gateway`]: the few JSON gateway calls used (put, status, range) and their bodies.
//! - [`timeline`]: a failover's steps, from the surviving members' logs.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::load::{self, LoadOptions, LoadReport};

pub mod cluster;
pub mod failover;
pub mod gateway;
pub mod timeline;

/// Why an etcd mode failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("no etcd endpoint given")]
    NoEndpoints,
    #[error("endpoint {0:?} is not an http:// URL on this machine's loopback")]
    NotLoopback(String),
    #[error("{url} did not answer")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {body}")]
    Refused { url: String, status: u16, body: String },
    #[error("{url} answered something unreadable: {reason}")]
    Reply { url: String, reason: String },
    #[error("invalid base64 {0:?}")]
    Base64(String),
    #[error("ports {first}-{last} do not fit below 65536: choose another --base-port")]
    Ports { first: u32, last: u32 },
    #[error("127.0.0.1:{port} is in use: choose another --base-port")]
    PortInUse {
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error("cannot {what} {}", path.display())]
    Files {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start {} (Debian package etcd-server)", binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("member m{member} (pid {pid}) exited by itself ({status}); the end of {}:\n{tail}", log.display())]
    Exited { member: usize, pid: u32, status: ExitStatus, log: PathBuf, tail: String },
    #[error("kill -9 {pid} (member m{member}) failed")]
    Kill {
        member: usize,
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("member m{member} (pid {pid}) was still there {bound:?} after SIGKILL")]
    NotDead { member: usize, pid: u32, bound: Duration },
    #[error("no healthy leader within {bound:?}; last seen: {seen}")]
    NoLeader { bound: Duration, seen: String },
    #[error("the writers failed: {0}")]
    Writers(String),
    #[error("no member answered a linearizable read")]
    NoRead,
    #[error("took longer than {bound:?}")]
    TrialTimeout { bound: Duration },
    #[error("trial {trial}")]
    Trial {
        trial: usize,
        #[source]
        source: Box<EtcdError>,
    },
}

/// `etcd-put`: the load of Plum's `kv-put` (same clients, keys, values, HTTP client and
/// connection reuse, same report line), each put a `POST /v3/kv/put` of key
/// `bench-{pid}/k{client}-{n}`.
pub async fn puts(opts: &LoadOptions) -> LoadReport {
    let run = std::process::id();
    load::puts("etcd_kv_puts", opts, move |http, put| {
        gateway::put(http, put.url, &format!("bench-{run}/{}", put.key), &put.value)
    })
    .await
}

/// The highest Raft term the `endpoints` that answer report; `None` if none answered.
pub async fn term(http: &reqwest::Client, endpoints: &[String]) -> Option<u64> {
    let statuses = futures::future::join_all(endpoints.iter().map(|url| gateway::status(http, url))).await;
    statuses.into_iter().filter_map(Result::ok).map(|s| s.raft_term).max()
}

/// The etcd client URLs in a comma-separated list, each on loopback.
pub fn endpoints(list: &str) -> Result<Vec<String>, EtcdError> {
    let urls = crate::target::url_list(list);
    if urls.is_empty() {
        return Err(EtcdError::NoEndpoints);
    }
    match urls.iter().find(|u| !is_loopback(u)) {
        Some(bad) => Err(EtcdError::NotLoopback(bad.clone())),
        None => Ok(urls),
    }
}

fn is_loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else { return false };
    let host = url.host_str().unwrap_or_default();
    let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>();
    url.scheme() == "http" && (host == "localhost" || ip.is_ok_and(|ip| ip.is_loopback()))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A stand-in for etcd's gateway that acknowledges every put and keeps its body.
    async fn fake_gateway() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        use axum::{Json, Router, extract::State, routing::post};
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let put = |State(bodies): State<Arc<Mutex<Vec<serde_json::Value>>>>, Json(body)| async move {
            bodies.lock().unwrap().push(body);
            Json(serde_json::json!({"header": {"revision": "2"}}))
        };
        let app = Router::new().route(gateway::PUT_PATH, post(put)).with_state(bodies.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, bodies)
    }

    /// `etcd-put` is Plum's `kv-put` load (same keys, values, line) with etcd's requests.
    #[tokio::test]
    async fn puts_run_the_kv_put_load_through_the_gateway() {
        let (url, bodies) = fake_gateway().await;
        let opts = LoadOptions { urls: vec![url], clients: 2, duration: Duration::from_millis(300) };
        let report = puts(&opts).await;
        assert_eq!(report.errors, 0);
        assert!(report.ok > 0 && report.ok == report.latencies.len());
        let line = report.line();
        let fields: Vec<&str> = line.split(' ').map(|f| f.split('=').next().unwrap_or_default()).collect();
        assert_eq!(
            fields,
            ["etcd_kv_puts", "ok", "errors", "seconds", "per_sec", "p50_ms", "p99_ms", "max_ms", "bench_cpu_pct"]
        );
        let bodies = bodies.lock().unwrap();
        let text = |b: &serde_json::Value, f| {
            String::from_utf8(gateway::from_base64(b[f].as_str().unwrap()).unwrap()).unwrap()
        };
        let run = std::process::id();
        for c in 0..2 {
            // Each client's first put: its key for seq 1, value "1".
            let first = bodies.iter().find(|b| text(b, "key") == format!("bench-{run}/k{c}-1")).unwrap();
            assert_eq!(text(first, "value"), "1");
        }
    }

    #[test]
    fn endpoints_must_be_loopback() {
        assert_eq!(
            endpoints(" http://127.0.0.1:2379/, http://localhost:2381,,http://[::1]:2383").unwrap(),
            vec!["http://127.0.0.1:2379", "http://localhost:2381", "http://[::1]:2383"]
        );
        assert!(matches!(endpoints("http://10.0.0.1:2379"), Err(EtcdError::NotLoopback(_))));
        assert!(matches!(endpoints("https://127.0.0.1:2379"), Err(EtcdError::NotLoopback(_))));
        assert!(matches!(endpoints("127.0.0.1:2379"), Err(EtcdError::NotLoopback(_))));
        assert!(matches!(endpoints(" , "), Err(EtcdError::NoEndpoints)));
    }
}
