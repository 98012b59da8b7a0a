//! A replica run in-process through `server::run(config, listener, shutdown)`: a single-replica
//! cluster forms by itself, serves the API on a port chosen by the OS, renews heartbeats (it is
//! its own quorum), forgets instances dead beyond the retention period, and stops when the
//! shutdown future resolves.

use std::time::{Duration, Instant};

use plum_registry::config::{Args, ControllerConfig};
use serde_json::{Value, json};

async fn wait_for(timeout: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_runs_in_process_and_forgets_long_dead_instances() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let secret = dir.path().join("cluster.secret");
    std::fs::write(&secret, "in-process-secret-0123456789\n").unwrap();
    let args = Args {
        cluster_secret_file: Some(secret),
        id: Some(1),
        listen: Some(addr),
        data_dir: Some(dir.path().to_path_buf()),
        peers: Some(format!("1={addr}")),
        instance_ttl_ms: Some(500),
        dead_retention_ms: Some(3000),
        ..Args::default()
    };
    let config = ControllerConfig::from_args(args).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(plum_registry::server::run(config, listener, async {
        let _ = stopped.await;
    }));

    // The bootstrap admin token, written next to the cluster secret on first start.
    let token_file = dir.path().join("admin.token");
    wait_for(Duration::from_secs(30), "the admin token file", async || token_file.exists()).await;
    let token = std::fs::read_to_string(&token_file).expect("admin token written at start");
    let auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim())).unwrap();
    let headers = reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, auth)]);
    let http =
        reqwest::Client::builder().no_proxy().default_headers(headers).timeout(Duration::from_secs(5)).build().unwrap();
    let base = format!("http://{addr}");
    let register = json!({"instanceId": "i1", "ip": "10.0.0.1", "endpoints": [{"serviceName": "gone", "port": 80}]});
    wait_for(Duration::from_secs(30), "the single replica to accept a registration", async || {
        let sent = http.post(format!("{base}/v1/services/register")).json(&register).send().await;
        sent.is_ok_and(|r| r.status() == 204)
    })
    .await;
    // A single voter is its own quorum: renewals keep being recorded long after its election.
    for _ in 0..4 {
        let hb = json!({"nodeId": "n1", "ip": "10.0.0.1", "ttlMs": 1000});
        let resp = http.post(format!("{base}/v1/nodes/heartbeat")).json(&hb).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let listed = async || -> Vec<String> {
        let resp = http.get(format!("{base}/v1/services/list")).send().await.unwrap();
        resp.json().await.unwrap()
    };
    assert_eq!(listed().await, vec!["gone".to_string()]);
    // Silent for its TTL: out of discovery, still listed; after the retention period: forgotten.
    wait_for(Duration::from_secs(30), "the silent instance to leave discovery", async || {
        let eps: Value =
            http.get(format!("{base}/v1/discovery?service=gone")).send().await.unwrap().json().await.unwrap();
        eps == json!([])
    })
    .await;
    assert_eq!(listed().await, vec!["gone".to_string()], "dead, but kept for the retention period");
    wait_for(Duration::from_secs(30), "the dead instance to be forgotten", async || listed().await.is_empty()).await;

    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(15), server).await.expect("stops when asked");
    result.expect("task").expect("clean stop");
}
