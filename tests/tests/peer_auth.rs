//! Replica-only routes (`/raft/*`, `/internal/*`) answer only requests signed with the cluster
//! secret; the secret can be rotated while the cluster keeps working.

use std::time::Duration;

use plum_tests::{TestCluster, wait_until};
use reqwest::Method;
use serde_json::Value;

const GENEROUS: Duration = Duration::from_secs(30);

const REPLICA_ROUTES: &[&str] = &[
    "/raft/append",
    "/raft/vote",
    "/raft/pre-vote",
    "/raft/snapshot",
    "/raft/transfer-leader",
    "/internal/v1/propose",
    "/internal/v1/renew",
    "/internal/v1/read-index",
    "/internal/v1/status",
];

/// Term and applied index of every replica.
async fn state_of(cluster: &TestCluster) -> Vec<(u64, Option<u64>)> {
    let mut out = Vec::new();
    for id in cluster.ids() {
        let status: Value = cluster.get_json(id, "/v1/cluster").await.expect("status");
        out.push((status["term"].as_u64().unwrap_or(0), cluster.applied(id).await));
    }
    out
}

#[tokio::test]
async fn replica_only_routes_refuse_unsigned_and_wrongly_signed_requests_and_change_nothing() {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_leader(GENEROUS).await;
    assert_eq!(cluster.put_kv(1, "a", "k", "v").await, Ok(200));
    for id in cluster.ids() {
        wait_until(GENEROUS, "every replica applied the write", || async {
            cluster.get_kv(id, "a", "k").await.is_some()
        })
        .await;
    }
    let before = state_of(&cluster).await;
    let forged = [
        None,
        Some("v1 1 00000000000000000000000000000000 AAAA".to_string()),
        // Well-formed, current, but not made with this cluster's secret.
        Some(format!(
            "v1 {} {:032x} {}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis(),
            7u128,
            "x".repeat(43)
        )),
    ];
    for id in cluster.ids() {
        for route in REPLICA_ROUTES {
            for header in &forged {
                let mut req =
                    cluster.http.request(Method::POST, format!("{}{route}", cluster.url(id))).body(vec![0x80]);
                if let Some(h) = header {
                    req = req.header("x-plum-peer-auth", h);
                }
                let resp = req.send().await.expect("an answer");
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                assert_eq!(status, 401, "{route} on {id} with {header:?}: {body}");
                assert!(body["error"].as_str().is_some_and(|e| e.contains("replica-only")), "{body}");
            }
        }
    }
    assert_eq!(state_of(&cluster).await, before, "no term and no applied index moved");
    let log = cluster.log_of(1);
    let refused = log.lines().find(|l| l.contains("refused a request on a replica-only route")).expect("logged");
    assert!(refused.contains("127.0.0.1:"), "the source address is logged: {refused}");
    // The cluster itself still works: a write through a follower is passed to the leader.
    let leader = cluster.wait_leader(GENEROUS).await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    assert_eq!(cluster.put_kv(follower, "a", "after", "v").await, Ok(200));
}

/// A write through each follower (the internal forward path) and a leader that stays.
async fn cluster_works(cluster: &TestCluster, step: &str) {
    let leader = cluster.wait_leader(GENEROUS).await;
    for id in cluster.ids().into_iter().filter(|id| *id != leader) {
        assert_eq!(cluster.put_kv(id, "rot", step, "v").await, Ok(200), "{step}: write through {id}");
    }
}

#[tokio::test]
async fn the_cluster_secret_rotates_without_downtime() {
    let mut cluster = TestCluster::start(3, &[]);
    cluster.wait_leader(GENEROUS).await;
    let file = cluster.secret_file();
    let old = std::fs::read_to_string(&file).unwrap();
    let old = old.trim();
    let new = "rotated-secret-abcdefghijklmnop";
    // 1. Accept the new one as well (still signing with the old).
    std::fs::write(&file, format!("{old}\n{new}\n")).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster_works(&cluster, "both-old-first").await;
    // 2. Sign with the new one, still accepting the old (replicas switch within seconds of
    //    each other; meanwhile each accepts what the others sign).
    std::fs::write(&file, format!("{new}\n{old}\n")).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster_works(&cluster, "both-new-first").await;
    // 3. Only the new one.
    std::fs::write(&file, format!("{new}\n")).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster_works(&cluster, "new-only").await;
    for id in cluster.ids() {
        assert!(cluster.log_of(id).contains("cluster secret file reloaded"), "replica {id} reloaded");
    }
    // A replica restarted now reads only the new secret and rejoins.
    let leader = cluster.wait_leader(GENEROUS).await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.kill(follower);
    cluster.restart(follower);
    wait_until(GENEROUS, "the restarted replica serves the writes made meanwhile", || async {
        cluster.get_kv(follower, "rot", "new-only").await.is_some()
    })
    .await;
    cluster_works(&cluster, "after-restart").await;
}
