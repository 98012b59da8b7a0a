//! A cluster that speaks only TLS (certificates from `plum-certs`): replicas reach each other
//! over HTTPS and elect a leader, writes replicate, a killed leader is replaced, clients that
//! trust the cluster's CA are served and those that do not (or speak plain HTTP) are not, and
//! agents run a deployment over it.

use std::time::Duration;

use plum_sdk::client::ClientOptions;
use plum_tests::{TestCluster, echo_spec, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const GENEROUS: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_tls_cluster_forms_replicates_fails_over_and_serves_only_who_trusts_its_ca() {
    let mut cluster = TestCluster::start_tls(3, &[]);
    let leader = cluster.wait_leader(GENEROUS).await;
    let status: Value = cluster.get_json(leader, "/v1/cluster").await.unwrap();
    let addrs: Vec<&str> = status["members"].as_array().unwrap().iter().filter_map(|m| m["apiAddr"].as_str()).collect();
    assert!(addrs.iter().all(|a| a.starts_with("https://")), "{addrs:?}");

    // A write through a follower (forwarded to the leader over TLS) reaches every replica.
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    assert_eq!(cluster.put_kv(follower, "app", "color", "red").await, Ok(200));
    for id in cluster.ids() {
        wait_until(GENEROUS, "every replica applied the write", || async {
            cluster.get_kv(id, "app", "color").await.as_deref() == Some("red")
        })
        .await;
    }

    // Plain HTTP gets no answer, and a client that does not trust the CA cannot connect.
    let plain = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(3)).build().unwrap();
    let addr = cluster.addr(leader);
    assert!(plain.get(format!("http://{addr}/healthz")).send().await.is_err(), "plain HTTP on a TLS port");
    let untrusting = plain.get(format!("https://{addr}/healthz")).send().await;
    let err = untrusting.expect_err("a certificate from an unknown CA");
    assert!(format!("{err:?}").to_lowercase().contains("certificate"), "{err:?}");

    // The SDK with the CA file: reads and writes.
    let options = plum_sdk::Options::default()
        .with_token(cluster.admin_token())
        .with_ca_file(&cluster.ca_file())
        .expect("the cluster's CA");
    let urls: Vec<String> = cluster.ids().into_iter().map(|id| cluster.url(id)).collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let sdk = plum_sdk::Client::new(&urls, ClientOptions { transport: options, ..ClientOptions::default() })
        .expect("controller URLs");
    sdk.kv().put("app", "size", "3").await.expect("SDK write over TLS");
    assert_eq!(sdk.kv().get("app", "color").await.expect("SDK read over TLS").map(|i| i.value), Some("red".into()));

    // The leader dies: the others elect a new one over their TLS links and keep taking writes.
    cluster.kill(leader);
    let new_leader = cluster.wait_leader(GENEROUS).await;
    assert_ne!(new_leader, leader);
    assert_eq!(cluster.put_kv(new_leader, "app", "after", "1").await, Ok(200));
}

#[tokio::test]
async fn agents_run_a_deployment_over_tls() {
    let mut cluster = TestCluster::start_tls(3, &[]);
    cluster.wait_leader(GENEROUS).await;
    cluster.start_agents_with_tokens(&["t1", "t2"], GENEROUS).await;
    let (status, created) = cluster.call(1, Method::POST, "/v1/deployments", Some(echo_spec(2, 0))).await.unwrap();
    assert_eq!(status, 201, "{created}");
    wait_until(GENEROUS, "both instances discoverable, registered by their agents over TLS", || async {
        let eps: Vec<Value> = cluster.get_json(3, "/v1/discovery?service=echo").await.unwrap_or_default();
        eps.len() == 2 && eps.iter().all(|e| e["healthy"] == json!(true))
    })
    .await;
}
