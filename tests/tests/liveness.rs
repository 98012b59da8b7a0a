//! Liveness with real processes: expiry of silent nodes, discovery never handing out their
//! endpoints, and leader changes that neither expire live nodes nor hide dead ones.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use plum_tests::{TestCluster, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const GENEROUS: Duration = Duration::from_secs(30);
const BEAT: Duration = Duration::from_millis(200);

/// Heartbeats `node_id` (and optionally an instance) every `BEAT`, moving to the next replica
/// at once when one fails, the way an agent does. Runs until `stop` is set.
fn heartbeat(
    http: reqwest::Client,
    urls: Vec<String>,
    node_id: &str,
    instance: Option<&str>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let node_id = node_id.to_string();
    let instance = instance.map(str::to_string);
    tokio::spawn(async move {
        let mut at = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let mut sent = false;
            for _ in 0..urls.len() {
                let url = &urls[at % urls.len()];
                let node_ok = http
                    .post(format!("{url}/v1/nodes/heartbeat"))
                    .json(&json!({"nodeId": node_id, "ip": "10.9.9.9", "ttlMs": 1000}))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                let inst_ok = match &instance {
                    Some(i) => http
                        .post(format!("{url}/v1/services/heartbeat"))
                        .json(&json!({"instanceId": i}))
                        .timeout(Duration::from_secs(1))
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 204),
                    None => true,
                };
                if node_ok && inst_ok {
                    sent = true;
                    break;
                }
                at += 1;
            }
            if !sent {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            tokio::time::sleep(BEAT).await;
        }
    })
}

async fn node_health(cluster: &TestCluster, via: u64) -> Vec<(String, String)> {
    let nodes: Vec<Value> = cluster.get_json(via, "/v1/nodes").await.unwrap_or_default();
    nodes
        .iter()
        .map(|n| {
            (n["nodeId"].as_str().unwrap_or_default().to_string(), n["health"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

async fn discovered(cluster: &TestCluster, via: u64, service: &str) -> BTreeSet<String> {
    let eps: Vec<Value> = cluster.get_json(via, &format!("/v1/discovery?service={service}")).await.unwrap_or_default();
    eps.iter().filter_map(|e| e["instanceId"].as_str().map(str::to_string)).collect()
}

async fn register(cluster: &TestCluster, via: u64, instance: &str, node: &str, service: &str) {
    let body = json!({"instanceId": instance, "nodeId": node, "ip": "10.9.9.9",
        "endpoints": [{"serviceName": service, "port": 8080, "protocol": "http", "version": "v1"}]});
    let (status, body) = cluster.call(via, Method::POST, "/v1/services/register", Some(body)).await.expect("register");
    assert_eq!(status, 204, "{body}");
}

#[tokio::test]
async fn a_silent_node_is_declared_dead_and_its_endpoints_leave_discovery_at_once() {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_leader(GENEROUS).await;
    let urls: Vec<String> = cluster.ids().iter().map(|id| cluster.url(*id)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let live = heartbeat(cluster.http.clone(), urls.clone(), "n-live", Some("i-live"), stop.clone());
    // The dead node's instance keeps heartbeating: only the node's death may remove it.
    let stop_dying = Arc::new(AtomicBool::new(false));
    let dying = heartbeat(cluster.http.clone(), urls.clone(), "n-dying", Some("i-dying"), stop_dying.clone());
    register(&cluster, 1, "i-live", "n-live", "web").await;
    register(&cluster, 2, "i-dying", "n-dying", "web").await;
    wait_until(GENEROUS, "both endpoints discoverable", || async { discovered(&cluster, 3, "web").await.len() == 2 })
        .await;

    // Silence n-dying's node heartbeats; keep its instance renewing by hand.
    stop_dying.store(true, Ordering::Relaxed);
    dying.await.expect("heartbeat task");
    let silenced = Instant::now();
    let keep_instance = {
        let http = cluster.http.clone();
        let url = urls[0].clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = http
                    .post(format!("{url}/v1/services/heartbeat"))
                    .json(&json!({"instanceId": "i-dying"}))
                    .send()
                    .await;
                tokio::time::sleep(BEAT).await;
            }
        })
    };
    wait_until(GENEROUS, "the silent node's endpoint to leave discovery", || async {
        discovered(&cluster, 3, "web").await == BTreeSet::from(["i-live".to_string()])
    })
    .await;
    let took = silenced.elapsed();
    // Not before its TTL (1 s, as declared), less a heartbeat interval of slack.
    assert!(took >= Duration::from_millis(700), "expired too early: {took:?}");
    let health = node_health(&cluster, 2).await;
    assert!(health.contains(&("n-dying".into(), "Unhealthy".into())), "{health:?}");
    assert!(health.contains(&("n-live".into(), "Healthy".into())), "{health:?}");
    // `random` and `one` never hand out the dead node's endpoint either.
    for _ in 0..20 {
        let ep: Value = cluster.get_json(1, "/v1/discovery/random?service=web").await.expect("random");
        assert_eq!(ep["instanceId"], json!("i-live"));
    }

    // A heartbeat brings the node back, and its endpoint with it.
    let back = heartbeat(cluster.http.clone(), urls, "n-dying", None, stop.clone());
    wait_until(GENEROUS, "the revived node's endpoint back in discovery", || async {
        discovered(&cluster, 1, "web").await.len() == 2
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in [live, back, keep_instance] {
        t.await.expect("task");
    }
}

#[tokio::test]
async fn an_instance_that_stops_heartbeating_leaves_discovery() {
    let cluster = TestCluster::start(3, &["--instance-ttl-ms", "1500"]);
    cluster.wait_leader(GENEROUS).await;
    register(&cluster, 1, "i-once", "", "api").await;
    wait_until(GENEROUS, "the instance to be discoverable", || async {
        discovered(&cluster, 2, "api").await.len() == 1
    })
    .await;
    wait_until(GENEROUS, "the silent instance to leave discovery", || async {
        discovered(&cluster, 2, "api").await.is_empty()
    })
    .await;
    // The registration itself stays: a heartbeat revives it.
    let (status, _) = cluster
        .call(3, Method::POST, "/v1/services/heartbeat", Some(json!({"instanceId": "i-once"})))
        .await
        .expect("hb");
    assert_eq!(status, 204);
    wait_until(GENEROUS, "the revived instance back", || async { discovered(&cluster, 2, "api").await.len() == 1 })
        .await;
}

#[tokio::test]
async fn a_leader_change_during_steady_heartbeats_expires_nobody_and_still_detects_the_dead() {
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_leader(GENEROUS).await;
    let observer = cluster.ids().into_iter().find(|id| *id != leader).expect("follower");
    let urls: Vec<String> = cluster.ids().iter().map(|id| cluster.url(*id)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let live: Vec<String> = (0..5).map(|i| format!("n{i}")).collect();
    let tasks: Vec<_> =
        live.iter().map(|n| heartbeat(cluster.http.clone(), urls.clone(), n, None, stop.clone())).collect();
    // One node that goes silent right before the leader dies.
    let (status, _) = cluster
        .call(observer, Method::POST, "/v1/nodes/heartbeat", Some(json!({"nodeId": "n-quiet", "ttlMs": 1000})))
        .await
        .expect("hb");
    assert_eq!(status, 200);
    wait_until(GENEROUS, "all nodes healthy", || async {
        let h = node_health(&cluster, observer).await;
        h.len() == 6 && h.iter().all(|(_, s)| s == "Healthy")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let quiet_before = node_health(&cluster, observer).await;
    cluster.kill(leader);
    let killed = Instant::now();

    // Watch from a survivor for a while: no live node may ever turn Unhealthy.
    let mut quiet_dead_at = None;
    while killed.elapsed() < Duration::from_secs(6) {
        for (node, health) in node_health(&cluster, observer).await {
            if live.contains(&node) {
                assert_eq!(health, "Healthy", "live node {node} declared dead after the leader change");
            } else if node == "n-quiet" && health == "Unhealthy" && quiet_dead_at.is_none() {
                quiet_dead_at = Some(killed.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The quiet node was either already expired by the old leader or is expired by the new one
    // within (election + one TTL) — generous here; the benchmark measures it tightly.
    let quiet_was_dead = quiet_before.contains(&("n-quiet".into(), "Unhealthy".into()));
    assert!(quiet_was_dead || quiet_dead_at.is_some(), "the silent node was never declared dead");
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("heartbeat task");
    }
}
