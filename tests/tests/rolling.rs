//! A rolling version change of a deployment served by real agents: one instance at a time, the
//! next after the new one is ready; a client that looks the service up before every request
//! sees no failed request during it, and ends up served by the new version only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use plum_tests::{echo_spec, start_with_agents, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const GENEROUS: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_version_change_rolls_without_a_failed_request() {
    let cluster = start_with_agents(&["r1", "r2", "r3"], GENEROUS).await;
    let (status, created) =
        cluster.call(1, Method::POST, "/v1/deployments", Some(echo_spec(3, 0))).await.expect("create");
    assert_eq!(status, 201, "{created}");
    let id = created["deploymentId"].as_str().expect("id").to_string();
    let versions =
        |eps: &Vec<Value>| eps.iter().map(|e| e["version"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>();
    wait_until(GENEROUS, "three v1 endpoints", || async {
        let eps: Vec<Value> = cluster.get_json(2, "/v1/discovery?service=echo").await.unwrap_or_default();
        eps.len() == 3
    })
    .await;

    // A client: look up, pick one, call it; over and over.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen_v2 = Arc::new(AtomicBool::new(false));
    let client = {
        let (http, urls) = (cluster.http.clone(), cluster.ids().iter().map(|i| cluster.url(*i)).collect::<Vec<_>>());
        let (stop, ok, failed, seen_v2) = (stop.clone(), ok.clone(), failed.clone(), seen_v2.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let eps: Vec<Value> =
                    match http.get(format!("{}/v1/discovery?service=echo", urls[n % urls.len()])).send().await {
                        Ok(r) => r.json().await.unwrap_or_default(),
                        Err(_) => continue,
                    };
                let Some(ep) = eps.get(n % eps.len().max(1)) else { continue };
                let url = format!("http://{}:{}/", ep["ip"].as_str().unwrap_or_default(), ep["port"]);
                match http.get(&url).timeout(Duration::from_secs(2)).send().await {
                    Ok(r) if r.status().is_success() => {
                        let body: Value = r.json().await.unwrap_or_default();
                        if body["version"] == "2.0.0" {
                            seen_v2.store(true, Ordering::Relaxed);
                        }
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, patched) = cluster
        .call(2, Method::PATCH, &format!("/v1/deployments/{id}"), Some(json!({"version": "2.0.0"})))
        .await
        .expect("patch");
    assert_eq!(status, 200, "{patched}");
    let (status, _) = cluster
        .call(3, Method::PATCH, &format!("/v1/deployments/{id}"), Some(json!({"version": "3.0.0"})))
        .await
        .expect("patch");
    assert_eq!(status, 409, "a second update waits for the first");
    wait_until(GENEROUS, "the rolling update to finish with three v2 endpoints", || async {
        let d: Value = cluster.get_json(1, &format!("/v1/deployments/{id}")).await.unwrap_or_default();
        let eps: Vec<Value> = cluster.get_json(1, "/v1/discovery?service=echo").await.unwrap_or_default();
        d["rollout"] == "Done" && versions(&eps) == vec!["2.0.0"; 3]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    client.await.expect("client");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("during the rolling update: {ok} requests served, {failed} failed");
    assert!(ok > 100, "the client barely ran: {ok}");
    assert!(seen_v2.load(Ordering::Relaxed), "never served by the new version");
    assert_eq!(failed, 0, "requests failed during the rolling update");

    // Scaling: down to 2, then up to 3 again.
    let (status, d) = cluster
        .call(1, Method::PATCH, &format!("/v1/deployments/{id}"), Some(json!({"replicas": 2})))
        .await
        .expect("scale");
    assert_eq!((status, d["instances"].as_array().map(Vec::len)), (200, Some(2)), "{d}");
    wait_until(GENEROUS, "two endpoints", || async {
        cluster.get_json::<Vec<Value>>(1, "/v1/discovery?service=echo").await.is_ok_and(|e| e.len() == 2)
    })
    .await;
}

/// A rollback is a rolling update back to the spec the last one replaced: refused (409, a JSON
/// error) while there is none or while an update runs; then the old version serves again, and
/// the one rolled back from becomes what a next rollback would return to.
#[tokio::test]
async fn a_rollback_returns_to_the_spec_the_last_update_replaced() {
    let cluster = start_with_agents(&["b1", "b2"], GENEROUS).await;
    let (status, created) =
        cluster.call(1, Method::POST, "/v1/deployments", Some(echo_spec(2, 0))).await.expect("create");
    assert_eq!(status, 201, "{created}");
    let id = created["deploymentId"].as_str().expect("id").to_string();
    let rollback = format!("/v1/deployments/{id}/rollback");
    let served = |version: &'static str| {
        let cluster = &cluster;
        let id = id.clone();
        async move {
            let d: Value = cluster.get_json(1, &format!("/v1/deployments/{id}")).await.unwrap_or_default();
            let eps: Vec<Value> = cluster.get_json(1, "/v1/discovery?service=echo").await.unwrap_or_default();
            let versions: Vec<&str> = eps.iter().filter_map(|e| e["version"].as_str()).collect();
            (d["rollout"] == "Done" || d["rollout"] == "") && versions == vec![version; 2]
        }
    };
    wait_until(GENEROUS, "two v1 endpoints", || served("1.0.0")).await;

    // Never updated: nothing to roll back to.
    let (status, refused) = cluster.call(2, Method::POST, &rollback, None).await.expect("rollback");
    assert_eq!(status, 409, "{refused}");
    assert!(refused["error"].as_str().is_some_and(|e| e.contains("roll back")), "{refused}");

    let (status, patched) = cluster
        .call(2, Method::PATCH, &format!("/v1/deployments/{id}"), Some(json!({"version": "2.0.0"})))
        .await
        .expect("patch");
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["rollbackTo"]["version"], "1.0.0", "{patched}");
    // Not while the update runs.
    let (status, busy) = cluster.call(3, Method::POST, &rollback, None).await.expect("rollback");
    assert_eq!(status, 409, "{busy}");
    wait_until(GENEROUS, "the update done, two v2 endpoints", || served("2.0.0")).await;

    // Sent to a follower: passed on to the leader.
    let (status, rolled) = cluster.call(3, Method::POST, &rollback, None).await.expect("rollback");
    assert_eq!(status, 200, "{rolled}");
    assert_eq!((&rolled["spec"]["version"], &rolled["spec"]["replicas"]), (&json!("1.0.0"), &json!(2)), "{rolled}");
    assert_eq!(rolled["rollbackTo"]["version"], "2.0.0", "{rolled}");
    wait_until(GENEROUS, "rolled back: two v1 endpoints", || served("1.0.0")).await;
    let d: Value = cluster.get_json(2, &format!("/v1/deployments/{id}")).await.expect("deployment");
    assert_eq!((&d["generation"], &d["rollout"]), (&json!(3), &json!("Done")), "{d}");
}
