//! Two replicas (each a single-replica cluster of its own) run in one process keep metrics of
//! their own: the registry is part of each replica's state, not of the process.

mod common;

use std::time::{Duration, Instant};

use plum_registry::config::Args;
use serde_json::json;

/// The value of the sample line that starts with `series ` in `/metrics`.
async fn sample(http: &reqwest::Client, base: &str, series: &str) -> Option<f64> {
    let text = http.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_in_one_process_count_their_own_requests() {
    let (a, b) = (common::start(Args::default()).await, common::start(Args::default()).await);
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut written = 0;
    while written < 3 {
        assert!(Instant::now() < deadline, "replica a never took three writes");
        let put = http.put(format!("{}/v1/kv/app/k{written}", a.base())).json(&json!({"value": "v"})).send().await;
        if put.is_ok_and(|r| r.status() == 200) {
            written += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let puts = r#"plum_http_requests_total{route="/v1/kv/{ns}/{key}",method="PUT",status="200"}"#;
    assert_eq!(sample(&http, &a.base(), puts).await, Some(3.0));
    assert_eq!(sample(&http, &b.base(), puts).await, None, "b counted a's writes");
    // Each leads its own cluster and saw its own leadership begin, once (shared counters
    // would show both leaderships on both).
    for r in [&a, &b] {
        while sample(&http, &r.base(), "plum_raft_leader_changes_total").await.is_none_or(|c| c < 1.0) {
            assert!(Instant::now() < deadline, "{} never saw a leader", r.base());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for r in [&a, &b] {
        assert_eq!(sample(&http, &r.base(), "plum_raft_leader_changes_total").await, Some(1.0), "{}", r.base());
        assert_eq!(sample(&http, &r.base(), "plum_raft_role{role=\"leader\"}").await, Some(1.0), "{}", r.base());
    }

    for r in [a, b] {
        r.stop().await.expect("clean stop");
    }
}
