//! The write-outcome contract (README, "What a client may rely on"): a `503` that says
//! `retryable` was certainly not applied; one whose fate is unknown says `outcomeUnknown` and
//! is never `retryable`; a `200` was applied. Checked through leader kills, with writes sent to
//! a replica that survives.

use std::time::{Duration, Instant};

use plum_tests::{TestCluster, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const GENEROUS: Duration = Duration::from_secs(30);
const KILLS: usize = 3;

#[derive(Debug)]
enum Outcome {
    Applied,
    NotApplied,
    Unknown,
}

#[tokio::test]
async fn retryable_means_not_applied_and_unknown_is_never_retryable() {
    // A short wait for a leader, so writes during each election end as "no leader" (retryable)
    // and the contract is exercised both ways; elections the slow way (no fast failover), so
    // there is a leaderless window to write into.
    let mut cluster = TestCluster::start(3, &["--no-leader-wait-ms", "150", "--no-fast-failover"]);
    let mut outcomes: Vec<(String, Outcome)> = Vec::new();
    for kill in 0..KILLS {
        let leader = cluster.wait_leader(GENEROUS).await;
        let via = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
        // Writes through the follower while the leader dies under them.
        let writer = {
            let http = cluster.http.clone();
            let url = cluster.url(via);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let until = Instant::now() + Duration::from_secs(4);
                let mut i = 0;
                while Instant::now() < until {
                    let key = format!("k{kill}-{i}");
                    i += 1;
                    let sent = http
                        .put(format!("{url}/v1/kv/outcomes/{key}"))
                        .json(&json!({"value": key}))
                        .timeout(Duration::from_secs(15))
                        .send()
                        .await;
                    let Ok(resp) = sent else {
                        seen.push((key, Outcome::Unknown));
                        continue;
                    };
                    let status = resp.status().as_u16();
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    let outcome = match status {
                        200 => Outcome::Applied,
                        503 => {
                            let retryable = body["retryable"] == json!(true);
                            let unknown = body["outcomeUnknown"] == json!(true);
                            assert!(retryable != unknown, "a 503 must say exactly one of the two: {body}");
                            if retryable { Outcome::NotApplied } else { Outcome::Unknown }
                        }
                        other => panic!("unexpected answer {other}: {body}"),
                    };
                    seen.push((key, outcome));
                }
                seen
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.kill(leader);
        outcomes.extend(writer.await.expect("writer"));
        cluster.restart(leader);
    }
    let leader = cluster.wait_leader(GENEROUS).await;
    // Everything settles: the restarted replicas catch up before we look.
    let target = cluster.applied(leader).await.expect("applied index");
    for id in cluster.ids() {
        wait_until(GENEROUS, "replicas to catch up", || async {
            cluster.applied(id).await.is_some_and(|a| a >= target)
        })
        .await;
    }
    // Plain reads: every replica has applied past the last write (waited for above), and a
    // linearizable read would give up after the short leader wait this cluster runs with.
    let (mut applied, mut not_applied, mut unknown) = (0, 0, 0);
    for (key, outcome) in &outcomes {
        let (status, body) =
            cluster.call(leader, Method::GET, &format!("/v1/kv/outcomes/{key}"), None).await.expect("read answered");
        assert!(status == 200 || status == 404, "reading {key}: {status} {body}");
        match outcome {
            Outcome::Applied => {
                applied += 1;
                assert_eq!(status, 200, "{key} was acknowledged but is missing");
            }
            Outcome::NotApplied => {
                not_applied += 1;
                assert_eq!(status, 404, "{key} was answered `retryable` but was applied");
            }
            Outcome::Unknown => unknown += 1,
        }
    }
    eprintln!("outcomes: {applied} applied, {not_applied} retryable (not applied), {unknown} unknown");
    assert!(applied > 0, "no write succeeded at all");
    assert!(not_applied > 0, "no write was answered `retryable`: the test did not exercise that side");
}
