//! Config management end to end with real agents running `plum-echo`: instances get config
//! keys as environment variables and files; a change of a key rolls the deployments that opted
//! in, one instance at a time, with zero failed requests; a KV rollback restores the earlier
//! value and rolls again; a deployment that did not opt in keeps running and sees the change
//! in its file; namespaces copy (promote) into each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use plum_tests::{TestCluster, start_with_agents, wait_until, workspace_bin};
use reqwest::Method;
use serde_json::{Value, json};

const GENEROUS: Duration = Duration::from_secs(60);

fn echo_with_config(name: &str, replicas: u32, roll: bool) -> Value {
    json!({"name": name, "version": "1.0.0", "replicas": replicas, "requestId": "r1",
           "command": workspace_bin("plum-echo").display().to_string(),
           "service": {"name": name, "protocol": "http", "readiness": {"httpPath": "/health"}},
           "configRefs": [{"namespace": "prod", "key": "api/greeting", "env": "ECHO_CONFIG", "file": "greeting.txt"}],
           "rollOnConfigChange": roll})
}

/// The `config` every endpoint of `service` answers with, sorted (None: an endpoint did not
/// answer).
async fn served(cluster: &TestCluster, service: &str) -> Option<Vec<String>> {
    let eps: Vec<Value> = cluster.get_json(1, &format!("/v1/discovery?service={service}")).await.ok()?;
    let mut out = Vec::new();
    for ep in &eps {
        let url = format!("http://{}:{}/", ep["ip"].as_str()?, ep["port"]);
        let body: Value = cluster.http.get(&url).send().await.ok()?.json().await.ok()?;
        out.push(body["config"].as_str().unwrap_or("<none>").to_string());
    }
    out.sort();
    Some(out)
}

async fn put(cluster: &TestCluster, value: &str) {
    let body = json!({"value": value});
    let (status, written) = cluster.call(2, Method::PUT, "/v1/kv/prod/key/api%2Fgreeting", Some(body)).await.unwrap();
    assert_eq!(status, 200, "{written}");
}

async fn rolled_to(cluster: &TestCluster, id: &str, generation: u64, value: &str) -> bool {
    let d: Value = cluster.get_json(1, &format!("/v1/deployments/{id}")).await.unwrap_or_default();
    d["generation"] == generation
        && d["rollout"] == "Done"
        && served(cluster, "api").await == Some(vec![value.into(); 2])
}

#[tokio::test]
async fn a_config_change_rolls_what_opted_in_and_a_rollback_rolls_again() {
    let cluster = start_with_agents(&["c1", "c2", "c3"], GENEROUS).await;
    // Referenced before the key exists: the instances wait for it.
    let (status, created) =
        cluster.call(1, Method::POST, "/v1/deployments", Some(echo_with_config("api", 2, true))).await.unwrap();
    assert_eq!(status, 201, "{created}");
    let d: Value = cluster.get_json(1, "/v1/deployments/api-r1").await.unwrap();
    assert_eq!(d["instances"][0]["phase"], "Waiting", "{d}");
    assert_eq!(d["instances"][0]["waitingOn"], json!(["config prod/api/greeting: missing"]), "{d}");
    put(&cluster, "hello v1").await;
    wait_until(GENEROUS, "api serving v1", || async {
        served(&cluster, "api").await == Some(vec!["hello v1".into(); 2])
    })
    .await;
    let (status, _) =
        cluster.call(1, Method::POST, "/v1/deployments", Some(echo_with_config("batch", 1, false))).await.unwrap();
    assert_eq!(status, 201);
    wait_until(GENEROUS, "batch serving v1", || async {
        served(&cluster, "batch").await == Some(vec!["hello v1".into()])
    })
    .await;
    let api: Value = cluster.get_json(1, "/v1/deployments/api-r1").await.unwrap();
    let generation = api["generation"].as_u64().unwrap();

    // A client of api: look up, call, over and over; and the most instances api ever had.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, most) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (http, urls) = (cluster.http.clone(), cluster.ids().iter().map(|i| cluster.url(*i)).collect::<Vec<_>>());
        let (stop, ok, failed, most) = (stop.clone(), ok.clone(), failed.clone(), most.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if n.is_multiple_of(10)
                    && let Ok(r) = http.get(format!("{}/v1/deployments/api-r1", urls[0])).send().await
                {
                    let d: Value = r.json().await.unwrap_or_default();
                    most.fetch_max(d["instances"].as_array().map_or(0, Vec::len), Ordering::Relaxed);
                }
                let eps: Vec<Value> =
                    match http.get(format!("{}/v1/discovery?service=api", urls[n % urls.len()])).send().await {
                        Ok(r) => r.json().await.unwrap_or_default(),
                        Err(_) => continue,
                    };
                let Some(ep) = eps.get(n % eps.len().max(1)) else { continue };
                let url = format!("http://{}:{}/", ep["ip"].as_str().unwrap_or_default(), ep["port"]);
                match http.get(&url).timeout(Duration::from_secs(2)).send().await {
                    Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // The change rolls api (one generation more), not batch.
    put(&cluster, "hello v2").await;
    wait_until(GENEROUS, "api rolled to v2", || rolled_to(&cluster, "api-r1", generation + 1, "hello v2")).await;
    // The rollback writes v1 again as a new version: api rolls once more.
    let (status, history) = cluster.call(3, Method::GET, "/v1/kv/prod/key/api%2Fgreeting/history", None).await.unwrap();
    assert_eq!(status, 200, "{history}");
    let values: Vec<&str> =
        history["versions"].as_array().unwrap().iter().filter_map(|v| v["value"].as_str()).collect();
    assert_eq!(values, ["hello v2", "hello v1"], "{history}");
    let body = json!({"version": 1});
    let (status, rolled) =
        cluster.call(3, Method::POST, "/v1/kv/prod/key/api%2Fgreeting/rollback", Some(body)).await.unwrap();
    assert_eq!((status, &rolled["version"], &rolled["value"]), (200, &json!(3), &json!("hello v1")), "{rolled}");
    wait_until(GENEROUS, "api rolled back to v1", || rolled_to(&cluster, "api-r1", generation + 2, "hello v1")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    client.await.unwrap();
    let (ok, failed, most) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed), most.load(Ordering::Relaxed));
    eprintln!("during two config rolls: {ok} requests served, {failed} failed, at most {most} instances");
    assert!(ok > 100, "the client barely ran: {ok}");
    assert_eq!(failed, 0, "requests to api failed during the config rolls");
    assert!(most <= 3, "one instance at a time: at most replicas + 1 = 3, saw {most}");

    // batch did not opt in: same generation, its environment as started, its file rewritten.
    let batch: Value = cluster.get_json(1, "/v1/deployments/batch-r1").await.unwrap();
    assert_eq!(batch["generation"], 1, "{batch}");
    assert_eq!(served(&cluster, "batch").await, Some(vec!["hello v1".into()]));
    let instance = batch["instances"][0]["instanceId"].as_str().unwrap().to_string();
    let node = batch["instances"][0]["nodeId"].as_str().unwrap().to_string();
    let file = cluster.agent_dir(&node).join("config").join(&instance).join("greeting.txt");
    put(&cluster, "hello v4").await;
    wait_until(GENEROUS, "batch's config file rewritten", || async {
        std::fs::read_to_string(&file).is_ok_and(|text| text == "hello v4")
    })
    .await;

    // Bad references are refused.
    for bad in [
        json!([{"namespace": "prod", "key": "k"}]),
        json!([{"namespace": "prod", "key": "k", "env": "1BAD"}]),
        json!([{"namespace": "prod", "key": "k", "file": "../escape"}]),
    ] {
        let mut spec = echo_with_config("bad", 1, false);
        spec["configRefs"] = bad;
        let (status, body) = cluster.call(1, Method::POST, "/v1/deployments", Some(spec)).await.unwrap();
        assert_eq!(status, 400, "{body}");
    }
}

#[tokio::test]
async fn a_namespace_is_promoted_into_another() {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_leader(GENEROUS).await;
    for (ns, key, value) in
        [("dev", "api/url", "http://dev-db"), ("dev", "api/pool", "8"), ("prod", "api/url", "http://prod-db")]
    {
        let path = format!("/v1/kv/{ns}/key/{}", key.replace('/', "%2F"));
        let (status, body) = cluster.call(1, Method::PUT, &path, Some(json!({"value": value}))).await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let copy = json!({"to": "prod", "prefix": "api/"});
    let (status, copied) = cluster.call(2, Method::POST, "/v1/kv/dev/copy", Some(copy)).await.unwrap();
    assert_eq!(status, 200, "{copied}");
    assert_eq!((&copied["copied"], &copied["kept"]), (&json!(["api/pool"]), &json!(["api/url"])), "{copied}");
    let kept: Value = cluster.get_json(3, "/v1/kv/prod/key/api%2Furl?consistent=true").await.unwrap();
    assert_eq!(kept["value"], "http://prod-db", "kept");
    let overwrite = json!({"to": "prod", "prefix": "api/", "overwrite": true});
    let (status, copied) = cluster.call(2, Method::POST, "/v1/kv/dev/copy", Some(overwrite)).await.unwrap();
    assert_eq!((status, &copied["copied"]), (200, &json!(["api/pool", "api/url"])), "{copied}");
    let prod: Vec<Value> = cluster.get_json(3, "/v1/kv/prod?consistent=true").await.unwrap();
    let pairs: Vec<(&str, &str)> =
        prod.iter().map(|i| (i["key"].as_str().unwrap(), i["value"].as_str().unwrap())).collect();
    assert_eq!(pairs, [("api/pool", "8"), ("api/url", "http://dev-db")]);
    let (status, body) = cluster.call(2, Method::POST, "/v1/kv/dev/copy", Some(json!({"to": "dev"}))).await.unwrap();
    assert_eq!(status, 400, "copy onto itself: {body}");
}
