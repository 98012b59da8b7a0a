//! A leader cut off from both followers must stop vouching for heartbeats (its followers'
//! majority will elect another leader and expire the nodes that only reach the old one), and
//! its writes must end as "outcome unknown", never hang and never claim success.

use std::time::{Duration, Instant};

use plum_tests::TestCluster;
use reqwest::Method;
use serde_json::json;

const GENEROUS: Duration = Duration::from_secs(30);

/// A node heartbeat declaring a 1 s TTL, as our agent sends it; the status, 0 if unanswered.
async fn beat(cluster: &TestCluster, via: u64) -> u16 {
    let body = json!({"nodeId": "n1", "ip": "10.1.1.1", "ttlMs": 1000});
    cluster.call(via, Method::POST, "/v1/nodes/heartbeat", Some(body)).await.map(|(status, _)| status).unwrap_or(0)
}

#[tokio::test]
async fn an_isolated_leader_turns_heartbeats_away_and_reports_writes_as_unknown() {
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_leader(GENEROUS).await;
    assert_eq!(beat(&cluster, leader).await, 200, "registration");
    assert_eq!(beat(&cluster, leader).await, 200, "renewal while the leader holds a quorum");

    let followers: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();
    for id in &followers {
        cluster.pause(*id);
    }
    let cut = Instant::now();
    // The lease is the shortest election timeout (150 ms); a refused heartbeat is answered after
    // the batcher's short wait for a leader. Generous bound for a noisy machine.
    let mut refused_after = None;
    while cut.elapsed() < Duration::from_secs(5) {
        if beat(&cluster, leader).await != 200 {
            refused_after = Some(cut.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused_after = refused_after.expect("the isolated leader kept acknowledging heartbeats for 5 s");
    assert!(refused_after < Duration::from_secs(3), "took {refused_after:?} to turn heartbeats away");
    for _ in 0..5 {
        assert_ne!(beat(&cluster, leader).await, 200, "an isolated leader acknowledged a heartbeat again");
    }

    // A write cannot commit there. Bounded, never a success, and honest about what happened:
    // `outcomeUnknown` if the cut-off leader appended it (its fate is decided by whoever leads
    // next), `retryable` if it had already stepped down and appended nothing.
    let started = Instant::now();
    let (status, body) =
        cluster.call(leader, Method::PUT, "/v1/kv/app/k", Some(json!({"value": "v"}))).await.expect("answered");
    assert_eq!(status, 503, "{body}");
    let (retryable, unknown) = (body["retryable"] == json!(true), body["outcomeUnknown"] == json!(true));
    assert!(retryable != unknown, "exactly one of retryable / outcomeUnknown: {body}");
    assert!(started.elapsed() < Duration::from_secs(10), "the write hung for {:?}", started.elapsed());

    for id in &followers {
        cluster.resume(*id);
    }
    let healed = Instant::now();
    loop {
        let leader = cluster.wait_leader(GENEROUS).await;
        if beat(&cluster, leader).await == 200 {
            break;
        }
        assert!(healed.elapsed() < GENEROUS, "heartbeats not accepted after the partition healed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
