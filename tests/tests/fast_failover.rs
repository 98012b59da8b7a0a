//! Fast failover (`registry/src/cluster/leader_watch.rs`): a killed leader's port refuses
//! connections, the survivors confirm it with each other and one campaigns without waiting out
//! the lease. A leader that is alive but silent (paused: its port still accepts connections)
//! never triggers it: the normal election timers decide.

use std::time::Duration;

use plum_tests::{TestCluster, wait_until};
use serde_json::Value;

const GENEROUS: Duration = Duration::from_secs(30);

/// `failover` of these replicas' `/v1/cluster`, by replica id.
async fn timelines(cluster: &TestCluster, ids: &[u64]) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    for &id in ids {
        if let Ok(status) = cluster.get_json::<Value>(id, "/v1/cluster").await {
            out.push((id, status["failover"].clone()));
        }
    }
    out
}

fn campaigned(timelines: &[(u64, Value)], id: u64) -> bool {
    timelines.iter().any(|(r, t)| *r == id && t["campaignStartedMs"].as_u64().is_some_and(|ms| ms > 0))
}

#[tokio::test]
async fn a_killed_leader_is_replaced_by_a_campaign_the_survivors_agreed_on() {
    let mut cluster = TestCluster::start(3, &[]);
    let old = cluster.wait_leader(GENEROUS).await;
    assert_eq!(cluster.put_kv(old, "app", "before", "1").await, Ok(200));
    cluster.kill(old);
    let new = cluster.wait_leader(GENEROUS).await;
    assert_ne!(new, old);
    let seen = timelines(&cluster, &cluster.running()).await;
    assert_eq!(seen.len(), 2);
    assert!(campaigned(&seen, new), "the new leader was elected by the fast path: {seen:?}");
    for (id, t) in &seen {
        assert!(t["leaderDownConfirmedMs"].as_u64().unwrap_or(0) > 0, "replica {id} confirmed the dead leader: {t}");
    }
    assert_eq!(cluster.put_kv(new, "app", "after", "1").await, Ok(200));
    assert_eq!(cluster.get_kv(new, "app", "before").await.as_deref(), Some("1"), "nothing acknowledged is lost");
}

#[tokio::test]
async fn a_paused_leader_whose_port_still_accepts_never_triggers_the_fast_path() {
    let cluster = TestCluster::start(3, &[]);
    let old = cluster.wait_leader(GENEROUS).await;
    cluster.pause(old);
    // The others elect a leader the normal way, after the lease.
    let others: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != old).collect();
    wait_until(GENEROUS, "the others elect a new leader", || async {
        let mut leaders = Vec::new();
        for id in &others {
            let status: Value = cluster.get_json(*id, "/v1/cluster").await.unwrap_or_default();
            leaders.push(status["leaderId"].as_u64());
        }
        leaders.iter().all(|l| l.is_some_and(|l| l != old)) && leaders.windows(2).all(|w| w[0] == w[1])
    })
    .await;
    let seen = timelines(&cluster, &others).await;
    assert_eq!(seen.len(), 2);
    cluster.resume(old);
    for (id, t) in &seen {
        assert_eq!(t["leaderDownConfirmedMs"].as_u64(), Some(0), "replica {id} took a paused leader for dead: {t}");
        assert_eq!(t["campaignStartedMs"].as_u64(), Some(0), "replica {id} campaigned on the fast path: {t}");
    }
    // The old leader comes back as a follower of the new one.
    let leader = cluster.wait_leader(GENEROUS).await;
    assert_ne!(leader, old);
}
