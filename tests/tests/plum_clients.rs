//! Requests shaped exactly like Plum's original clients send them (`../shared/API.md`): its Go
//! SDK registers one service per call under one instance, and its clients heartbeat every
//! 1-5 s without declaring a TTL. Both must keep working unchanged.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use plum_tests::{TestCluster, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const GENEROUS: Duration = Duration::from_secs(30);

async fn services_of(cluster: &TestCluster, via: u64, service: &str) -> BTreeSet<(String, u64, String)> {
    let eps: Vec<Value> = cluster.get_json(via, &format!("/v1/discovery?service={service}")).await.unwrap_or_default();
    eps.iter()
        .map(|e| {
            (
                e["instanceId"].as_str().unwrap_or_default().to_string(),
                e["port"].as_u64().unwrap_or_default(),
                e["version"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn post(cluster: &TestCluster, via: u64, path: &str, body: Value) -> (u16, Value) {
    cluster.call(via, Method::POST, path, Some(body)).await.expect("answered")
}

#[tokio::test]
async fn registering_one_service_per_call_keeps_the_others_and_replace_is_explicit() {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_leader(GENEROUS).await;
    // The Go SDK's shape: one endpoint per call, same instance.
    let reg = |service: &str, port: u16, version: &str| {
        json!({"instanceId": "go-1", "nodeId": "n1", "ip": "10.0.0.1",
               "endpoints": [{"serviceName": service, "port": port, "protocol": "http", "version": version}]})
    };
    assert_eq!(post(&cluster, 1, "/v1/services/register", reg("orders", 8080, "v1")).await.0, 204);
    assert_eq!(post(&cluster, 2, "/v1/services/register", reg("billing", 8081, "v1")).await.0, 204);
    wait_until(GENEROUS, "both services discoverable", || async {
        services_of(&cluster, 3, "orders").await.len() == 1 && services_of(&cluster, 3, "billing").await.len() == 1
    })
    .await;
    let names: Vec<String> = cluster.get_json(3, "/v1/services/list?consistent=true").await.expect("list");
    assert_eq!(names, vec!["billing".to_string(), "orders".to_string()]);

    // Same (service, ip, port, protocol): updated in place, not duplicated.
    assert_eq!(post(&cluster, 3, "/v1/services/register", reg("orders", 8080, "v2")).await.0, 204);
    wait_until(GENEROUS, "the endpoint updated in place", || async {
        services_of(&cluster, 1, "orders").await == BTreeSet::from([("go-1".into(), 8080, "v2".into())])
    })
    .await;
    assert_eq!(services_of(&cluster, 1, "billing").await.len(), 1, "billing stays");

    // Replacement is explicit.
    let mut replace = reg("search", 9000, "v1");
    replace["replace"] = json!(true);
    assert_eq!(post(&cluster, 1, "/v1/services/register", replace).await.0, 204);
    wait_until(GENEROUS, "only the replacing set left", || async {
        services_of(&cluster, 2, "search").await.len() == 1
            && services_of(&cluster, 2, "orders").await.is_empty()
            && services_of(&cluster, 2, "billing").await.is_empty()
    })
    .await;
}

#[tokio::test]
async fn clients_that_declare_no_ttl_get_one_that_fits_their_intervals() {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_leader(GENEROUS).await;
    let (status, ack) = post(&cluster, 1, "/v1/nodes/heartbeat", json!({"nodeId": "old-1", "ip": "10.0.0.7"})).await;
    assert_eq!(status, 200);
    assert_eq!(ack["ttlSec"], json!(15), "clients that declare no TTL get one that fits 1-5 s intervals: {ack}");
    assert_eq!(ack["ttlMs"], json!(15_000), "{ack}");
}

/// Renewals in every body shape the original clients send keep a node and an instance alive
/// past several TTLs, while a node that stops is declared dead within the same window (so this
/// test fails if renewals renewed nothing). The TTL for clients that declare none is 6 s here,
/// the beat 4 s: the slow end of the original clients against a TTL of the same proportion.
#[tokio::test]
async fn renewals_in_the_original_shapes_keep_clients_alive_without_flapping() {
    let cluster = TestCluster::start(3, &["--node-ttl-ms", "6000", "--instance-ttl-ms", "6000"]);
    cluster.wait_leader(GENEROUS).await;
    let first_beat = Instant::now();
    for node in ["old-1", "gone-1"] {
        assert_eq!(post(&cluster, 1, "/v1/nodes/heartbeat", json!({"nodeId": node, "ip": "10.0.0.7"})).await.0, 200);
    }
    let reg = json!({"instanceId": "old-i", "nodeId": "old-1", "ip": "10.0.0.7",
                     "endpoints": [{"serviceName": "legacy", "port": 7000}]});
    assert_eq!(post(&cluster, 2, "/v1/services/register", reg).await.0, 204);
    wait_until(GENEROUS, "registered", || async { services_of(&cluster, 3, "legacy").await.len() == 1 }).await;

    let started = Instant::now();
    let mut next_beat = started + Duration::from_secs(4);
    let shapes = [
        json!({"instanceId": "old-i"}),
        json!({"instanceId": "old-i", "endpoints": []}),
        json!({"instanceId": "old-i", "health": [{"serviceName": "legacy", "port": 7000, "healthy": true}]}),
    ];
    let mut beats = 0;
    let mut gone_dead_after = None;
    while started.elapsed() < Duration::from_secs(16) {
        if Instant::now() >= next_beat {
            let via = 1 + (beats % 3) as u64;
            let node = json!({"nodeId": "old-1", "addr": "10.0.0.7"});
            assert_eq!(post(&cluster, via, "/v1/nodes/heartbeat", node).await.0, 200);
            assert_eq!(post(&cluster, via, "/v1/services/heartbeat", shapes[beats % 3].clone()).await.0, 204);
            beats += 1;
            next_beat += Duration::from_secs(4);
        }
        let nodes: Vec<Value> = cluster.get_json(3, "/v1/nodes").await.expect("nodes");
        let health = |id: &str| nodes.iter().find(|n| n["nodeId"] == id).map(|n| n["health"].clone());
        assert_eq!(health("old-1"), Some(json!("Healthy")), "flapped after {:?}", started.elapsed());
        if gone_dead_after.is_none() && health("gone-1") == Some(json!("Unhealthy")) {
            gone_dead_after = Some(first_beat.elapsed());
        }
        assert_eq!(services_of(&cluster, 3, "legacy").await.len(), 1, "left discovery after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone = gone_dead_after.expect("the node that stopped was never declared dead: expiry is not working");
    assert!(gone >= Duration::from_secs(5), "declared dead before its TTL: {gone:?}");
}

#[tokio::test]
async fn a_declared_ttl_is_bounded_and_used_for_that_node_alone() {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_leader(GENEROUS).await;
    let (_, ack) = post(&cluster, 1, "/v1/nodes/heartbeat", json!({"nodeId": "tiny", "ttlMs": 1})).await;
    assert_eq!(ack["ttlMs"], json!(500), "raised to the minimum: {ack}");
    let (_, ack) = post(&cluster, 1, "/v1/nodes/heartbeat", json!({"nodeId": "fast", "ttlMs": 1000})).await;
    assert_eq!((ack["ttlMs"].clone(), ack["ttlSec"].clone()), (json!(1000), json!(1)), "{ack}");
    let (_, ack) = post(&cluster, 1, "/v1/nodes/heartbeat", json!({"nodeId": "slow"})).await;
    assert_eq!(ack["ttlMs"], json!(15_000), "{ack}");
    // Silence all three: the 1 s node dies, the default-TTL one does not.
    let silenced = Instant::now();
    wait_until(GENEROUS, "the 1 s node to be declared dead", || async {
        let nodes: Vec<Value> = cluster.get_json(2, "/v1/nodes").await.unwrap_or_default();
        nodes.iter().any(|n| n["nodeId"] == "fast" && n["health"] == "Unhealthy")
    })
    .await;
    let nodes: Vec<Value> = cluster.get_json(2, "/v1/nodes").await.expect("nodes");
    let slow = nodes.iter().find(|n| n["nodeId"] == "slow").expect("slow node listed");
    assert_eq!(slow["health"], "Healthy", "after {:?}", silenced.elapsed());
}
