//! A registration storm (a whole fleet's first heartbeats at the same moment) is coalesced
//! into few Raft entries: 2,000 nodes register, each is known afterwards, and the log grew by
//! far fewer entries than there were nodes.

use std::time::{Duration, Instant};

use plum_registry::config::Args;
use serde_json::{Value, json};

mod common;

const NODES: usize = 2000;
/// Clients, each from its own loopback address (a fleet is many hosts; one address would meet
/// the per-client connection cap).
const HOSTS: usize = 8;

async fn applied_index(http: &reqwest::Client, base: &str) -> u64 {
    let status: Value = http.get(format!("{base}/v1/cluster")).send().await.unwrap().json().await.unwrap();
    status["members"][0]["appliedIndex"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_registering_at_once_costs_few_raft_entries() {
    let replica = common::start(Args::default()).await;
    let base = replica.base();
    let probe = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hb = probe.post(format!("{base}/v1/nodes/heartbeat")).json(&json!({"nodeId": "first", "ip": "10.0.0.1"}));
        if hb.send().await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the replica never took a heartbeat");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = applied_index(&probe, &base).await;

    let clients: Vec<reqwest::Client> = (0..HOSTS)
        .map(|h| {
            let local: std::net::IpAddr = format!("127.0.3.{}", h + 1).parse().unwrap();
            reqwest::Client::builder().no_proxy().local_address(local).timeout(Duration::from_secs(30)).build().unwrap()
        })
        .collect();
    let started = Instant::now();
    let beats = (0..NODES).map(|n| {
        let http = clients[n % HOSTS].clone();
        let url = format!("{base}/v1/nodes/heartbeat");
        tokio::spawn(async move {
            let body = json!({"nodeId": format!("storm-{n}"), "ip": "10.9.0.1", "ttlMs": 60_000});
            http.post(url).json(&body).send().await.map(|r| r.status().as_u16())
        })
    });
    let statuses: Vec<u16> =
        futures::future::join_all(beats).await.into_iter().map(|r| r.unwrap().unwrap_or(0)).collect();
    let took = started.elapsed();
    assert!(statuses.iter().all(|s| *s == 200), "every first heartbeat succeeds: {:?}", {
        let mut bad: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
        bad.dedup();
        bad
    });
    let nodes: Vec<Value> = probe.get(format!("{base}/v1/nodes")).send().await.unwrap().json().await.unwrap();
    let storm = nodes.iter().filter(|n| n["nodeId"].as_str().is_some_and(|id| id.starts_with("storm-"))).count();
    assert_eq!(storm, NODES, "every node is registered");
    let entries = applied_index(&probe, &base).await - before;
    eprintln!("{NODES} registrations in {took:?} took {entries} Raft entries");
    assert!(entries < (NODES / 4) as u64, "{entries} entries for {NODES} registrations: not coalesced");
    replica.close().await;
}
