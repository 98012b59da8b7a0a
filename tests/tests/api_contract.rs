//! The HTTP contract existing Plum clients rely on (shared/API.md): exact status codes and
//! shapes, lenient parsing, and bad input answered with a JSON 4xx that changes nothing.

use std::time::Duration;

use plum_tests::TestCluster;
use reqwest::Method;
use serde_json::{Value, json};

const GENEROUS: Duration = Duration::from_secs(30);

async fn raw(
    cluster: &TestCluster,
    id: u64,
    method: Method,
    path: &str,
    body: &str,
) -> (u16, String, reqwest::header::HeaderMap) {
    let resp = cluster
        .http
        .request(method, format!("{}{path}", cluster.url(id)))
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.text().await.expect("body"), headers)
}

#[tokio::test]
async fn documented_status_codes_and_shapes() {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_leader(GENEROUS).await;
    let follower = 2;

    let (s, body, _) = raw(&cluster, follower, Method::GET, "/healthz", "").await;
    assert_eq!((s, body.as_str()), (200, "ok"));

    // Node heartbeat: JSON object; `addr` accepted instead of `ip`; empty id is 400.
    let (s, body, headers) = raw(
        &cluster,
        follower,
        Method::POST,
        "/v1/nodes/heartbeat",
        r#"{"nodeId":"n1","addr":"10.0.0.7","labels":null}"#,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(serde_json::from_str::<Value>(&body).expect("JSON")["ttlSec"].as_u64().is_some());
    assert!(headers.contains_key("x-plum-leader"), "every response names the leader");
    let (s, _, _) = raw(&cluster, follower, Method::POST, "/v1/nodes/heartbeat", r#"{"nodeId":""}"#).await;
    assert_eq!(s, 400);
    let node: Value = cluster.get_json(3, "/v1/nodes/n1?consistent=true").await.expect("node");
    assert_eq!(node["ip"], json!("10.0.0.7"));
    assert!(node["lastSeen"].as_u64().is_some());
    let (s, body, _) = raw(&cluster, 3, Method::GET, "/v1/nodes/nope", "").await;
    assert_eq!(s, 404);
    assert!(serde_json::from_str::<Value>(&body).expect("JSON error")["error"].is_string());

    // Registration is exactly 204; ip/nodeId may come per endpoint; it is an upsert.
    let reg = r#"{"instanceId":"i1","endpoints":[{"serviceName":"pay","port":9000,"protocol":"grpc","version":"2","labels":{"a":"b"},"ip":"10.0.0.8","nodeId":"n1"}]}"#;
    for _ in 0..2 {
        let (s, body, _) = raw(&cluster, follower, Method::POST, "/v1/services/register", reg).await;
        assert_eq!((s, body.as_str()), (204, ""));
    }
    let (s, _, _) = raw(&cluster, follower, Method::POST, "/v1/services/register", r#"{"endpoints":[]}"#).await;
    assert_eq!(s, 400);
    let eps: Vec<Value> = cluster
        .get_json(1, "/v1/discovery?service=pay&version=2&protocol=grpc&consistent=true")
        .await
        .expect("discovery");
    assert_eq!(eps.len(), 1);
    let ep = &eps[0];
    for field in
        ["serviceName", "instanceId", "nodeId", "ip", "port", "protocol", "version", "labels", "healthy", "lastSeen"]
    {
        assert!(ep.get(field).is_some(), "endpoint lacks {field}: {ep}");
    }
    assert_eq!((ep["ip"].clone(), ep["nodeId"].clone()), (json!("10.0.0.8"), json!("n1")));
    let none: Vec<Value> = cluster.get_json(1, "/v1/discovery?service=pay&version=3").await.expect("filtered");
    assert!(none.is_empty());
    let unknown: Value = cluster.get_json(1, "/v1/discovery?service=ghost").await.expect("unknown service");
    assert_eq!(unknown, json!([]), "unknown service is 200 []");
    let (s, _, _) = raw(&cluster, 1, Method::GET, "/v1/discovery", "").await;
    assert_eq!(s, 400);
    let (s, _, _) = raw(&cluster, 1, Method::GET, "/v1/discovery/random?service=ghost", "").await;
    assert_eq!(s, 404);
    let (s, _, _) = raw(&cluster, 1, Method::GET, "/v1/discovery/one?service=pay&strategy=weird", "").await;
    assert_eq!(s, 400);
    // Unescaped query values are accepted.
    let (s, _, _) = raw(&cluster, 1, Method::GET, "/v1/discovery?service=pay&version=2 beta", "").await;
    assert_eq!(s, 200);

    // Service heartbeats: all three body shapes are 204; `health` marks an endpoint unhealthy.
    for body in [r#"{"instanceId":"i1"}"#, r#"{"instanceId":"i1","endpoints":[{"serviceName":"pay","port":9000}]}"#] {
        let (s, b, _) = raw(&cluster, follower, Method::POST, "/v1/services/heartbeat", body).await;
        assert_eq!((s, b.as_str()), (204, ""));
    }
    let (s, _, _) = raw(
        &cluster,
        follower,
        Method::POST,
        "/v1/services/heartbeat",
        r#"{"instanceId":"i1","health":[{"serviceName":"pay","port":9000,"healthy":false}]}"#,
    )
    .await;
    assert_eq!(s, 204);
    let eps: Vec<Value> = cluster.get_json(1, "/v1/discovery?service=pay&consistent=true").await.expect("discovery");
    assert!(eps.is_empty(), "unhealthy endpoint still discoverable: {eps:?}");
    let (s, _, _) = raw(&cluster, follower, Method::POST, "/v1/services/heartbeat", r#"{}"#).await;
    assert_eq!(s, 400);

    let names: Vec<String> = cluster.get_json(3, "/v1/services/list?consistent=true").await.expect("list");
    assert_eq!(names, vec!["pay".to_string()]);
    let (s, body, _) = raw(&cluster, 3, Method::DELETE, "/v1/nodes/n1", "").await;
    assert_eq!(s, 409, "node with instances: {body}");
    let (s, _, _) = raw(&cluster, 3, Method::DELETE, "/v1/services", "").await;
    assert_eq!(s, 400);
    let (s, _, _) = raw(&cluster, 3, Method::DELETE, "/v1/services?instanceId=i1", "").await;
    assert_eq!(s, 204);
    let (s, _, _) = raw(&cluster, 3, Method::DELETE, "/v1/nodes/n1", "").await;
    assert_eq!(s, 204);
    let empty: Value = cluster.get_json(3, "/v1/services/list?consistent=true").await.expect("list");
    assert_eq!(empty, json!([]));

    // CORS preflight on any route.
    let (s, _, headers) = raw(&cluster, 1, Method::OPTIONS, "/v1/kv/anything/at/all", "").await;
    assert_eq!(s, 204);
    assert_eq!(headers.get("access-control-allow-origin").map(|v| v.to_str().unwrap_or("")), Some("*"));
}

#[tokio::test]
async fn kv_contract_versions_cas_and_watch() {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_leader(GENEROUS).await;
    let (s, body) = cluster
        .call(2, Method::PUT, "/v1/kv/cfg/port", Some(json!({"value": "8080", "type": "int"})))
        .await
        .expect("put");
    assert_eq!(s, 200);
    assert_eq!(body, json!({"namespace": "cfg", "key": "port", "value": "8080", "type": "int", "version": 1}));
    let (s, _) = cluster
        .call(2, Method::PUT, "/v1/kv/cfg/bad", Some(json!({"value": "x", "type": "float"})))
        .await
        .expect("put");
    assert_eq!(s, 400);
    let (s, _) = cluster
        .call(2, Method::PUT, "/v1/kv/cfg/blob", Some(json!({"value": "aGk=", "type": "bytes"})))
        .await
        .expect("put");
    assert_eq!(s, 200);
    let item: Value = cluster.get_json(3, "/v1/kv/cfg/port?consistent=true").await.expect("get");
    assert_eq!((item["type"].clone(), item["version"].clone()), (json!("int"), json!(1)));
    assert!(item["updatedAt"].as_u64().is_some());

    // Compare-and-set.
    let (s, body) = cluster
        .call(1, Method::PUT, "/v1/kv/cfg/port", Some(json!({"value": "9090", "type": "int", "expectVersion": 7})))
        .await
        .expect("cas");
    assert_eq!(s, 409, "{body}");
    let (s, body) = cluster
        .call(1, Method::PUT, "/v1/kv/cfg/port", Some(json!({"value": "9090", "type": "int", "expectVersion": 1})))
        .await
        .expect("cas");
    assert_eq!((s, body["version"].clone()), (200, json!(2)));

    // Keys named `keys` and `batch` are addressable.
    for key in ["keys", "batch"] {
        let (s, _) =
            cluster.call(1, Method::PUT, &format!("/v1/kv/cfg/{key}"), Some(json!({"value": key}))).await.expect("put");
        assert_eq!(s, 200, "put key {key}");
        let item: Value = cluster.get_json(1, &format!("/v1/kv/cfg/key/{key}?consistent=true")).await.expect("get");
        assert_eq!(item["value"], json!(key));
    }
    let keys: Value = cluster.get_json(1, "/v1/kv/cfg/keys").await.expect("key list");
    assert_eq!(keys, json!({"namespace": "cfg", "keys": ["batch", "blob", "keys", "port"]}));

    // Batch is all-or-nothing.
    let (s, _) = cluster
        .call(
            1,
            Method::POST,
            "/v1/kv/app/batch",
            Some(json!({"items": [{"key": "a", "value": "1"}, {"key": "b", "value": "zz", "type": "bool"}]})),
        )
        .await
        .expect("batch");
    assert_eq!(s, 400);
    let nothing: Value = cluster.get_json(1, "/v1/kv/app?consistent=true").await.expect("list");
    assert_eq!(nothing, json!([]));
    let (s, body) = cluster
        .call(
            1,
            Method::POST,
            "/v1/kv/app/batch",
            Some(json!({"items": [{"key": "b", "value": "true", "type": "bool"}, {"key": "a", "value": "1"}]})),
        )
        .await
        .expect("batch");
    assert_eq!((s, body), (200, json!({"namespace": "app", "count": 2})));
    let listed: Vec<Value> = cluster.get_json(2, "/v1/kv/app?prefix=a&consistent=true").await.expect("prefix");
    assert_eq!(listed.len(), 1);
    let spaces: Value = cluster.get_json(2, "/v1/kv").await.expect("namespaces");
    assert_eq!(spaces, json!({"namespaces": ["app", "cfg"]}));

    // A watch answers when its prefix changes after the index it was given.
    let resp =
        cluster.http.get(format!("{}/v1/kv/app?prefix=a&consistent=true", cluster.url(3))).send().await.expect("list");
    let index: u64 = resp.headers()["x-plum-index"].to_str().expect("ascii").parse().expect("index");
    let url = format!("{}/v1/kv/app?prefix=a&watch=true&index={index}&timeoutMs=20000", cluster.url(3));
    let watcher = tokio::spawn({
        let http = cluster.http.clone();
        async move {
            http.get(url)
                .timeout(Duration::from_secs(25))
                .send()
                .await
                .expect("watch")
                .json::<Vec<Value>>()
                .await
                .expect("json")
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!watcher.is_finished(), "watch answered before any change");
    let (s, _) = cluster.call(1, Method::PUT, "/v1/kv/app/a", Some(json!({"value": "2"}))).await.expect("put");
    assert_eq!(s, 200);
    let seen = tokio::time::timeout(Duration::from_secs(10), watcher).await.expect("watch answered").expect("task");
    assert_eq!(seen[0]["value"], json!("2"));

    let (s, _) = cluster.call(1, Method::DELETE, "/v1/kv/app/a", None).await.expect("delete");
    assert_eq!(s, 204);
    let (s, _) = cluster.call(1, Method::DELETE, "/v1/kv/app/a", None).await.expect("delete again");
    assert_eq!(s, 204);
    let (s, _) = cluster.call(1, Method::GET, "/v1/kv/app/a", None).await.expect("get deleted");
    assert_eq!(s, 404);
}

#[tokio::test]
async fn bad_input_gets_a_json_4xx_and_changes_nothing() {
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_leader(GENEROUS).await;
    let before = cluster.applied(leader).await.expect("applied");
    let long = "x".repeat(300);
    let cases: Vec<(Method, String, String)> = vec![
        (Method::POST, "/v1/nodes/heartbeat".into(), "not json".into()),
        (Method::POST, "/v1/nodes/heartbeat".into(), "".into()),
        (Method::POST, "/v1/nodes/heartbeat".into(), "[1,2]".into()),
        (Method::POST, "/v1/nodes/heartbeat".into(), format!(r#"{{"nodeId":"{long}"}}"#)),
        (Method::POST, "/v1/nodes/heartbeat".into(), r#"{"nodeId":"a\u0000b"}"#.into()),
        (
            Method::POST,
            "/v1/services/register".into(),
            r#"{"instanceId":"i","ip":"1.1.1.1","endpoints":[{"serviceName":"s","port":70000}]}"#.into(),
        ),
        (
            Method::POST,
            "/v1/services/register".into(),
            r#"{"instanceId":"i","ip":"1.1.1.1","endpoints":[{"port":80}]}"#.into(),
        ),
        (
            Method::POST,
            "/v1/services/register".into(),
            r#"{"instanceId":"i","endpoints":[{"serviceName":"s","port":80}]}"#.into(),
        ),
        (
            Method::POST,
            "/v1/services/register".into(),
            r#"{"instanceId":"i","ip":"1.1.1.1","endpoints":"nope"}"#.into(),
        ),
        (Method::PUT, "/v1/kv/ns/k".into(), r#"{"type":"string"}"#.into()),
        (Method::PUT, "/v1/kv/ns/k".into(), r#"{"value":"maybe","type":"bool"}"#.into()),
        (Method::PUT, "/v1/kv/ns/k".into(), format!(r#"{{"value":"{}"}}"#, "v".repeat(300 * 1024))),
        (Method::POST, "/v1/kv/ns/batch".into(), r#"{"items":[{"key":"","value":"1"}]}"#.into()),
        (Method::DELETE, "/v1/services".into(), "".into()),
        (Method::GET, "/v1/discovery?service=".into(), "".into()),
        (Method::GET, "/v1/discovery?service=a&limit=-3".into(), "".into()),
        (Method::POST, "/v1/cluster/voters".into(), "{}".into()),
        (Method::DELETE, "/v1/cluster/members/abc".into(), "".into()),
        (Method::PUT, "/v1/nodes/heartbeat".into(), "{}".into()),
        (Method::GET, "/v1/no/such/route".into(), "".into()),
    ];
    for (method, path, body) in cases {
        let (status, text, _) = raw(&cluster, 2, method.clone(), &path, &body).await;
        assert!((400..500).contains(&status), "{method} {path} -> {status}");
        let parsed: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
        assert!(parsed["error"].as_str().is_some_and(|e| !e.is_empty()), "{method} {path}: {text}");
    }
    // A body over the 1 MiB limit is refused before it is read: a 413 with a JSON error, or,
    // when the server closes the connection before the client finished sending, a reset.
    let huge = format!(r#"{{"value":"{}"}}"#, "v".repeat(2 * 1024 * 1024));
    let sent = cluster.http.put(format!("{}/v1/kv/ns/k", cluster.url(2))).body(huge).send().await;
    if let Ok(resp) = sent {
        assert_eq!(resp.status(), 413);
        let body: Value = resp.json().await.expect("JSON error");
        assert!(body["error"].is_string());
    }
    let after = cluster.applied(leader).await.expect("applied");
    assert_eq!(before, after, "rejected requests wrote to the log");
    let services: Value = cluster.get_json(1, "/v1/services/list").await.expect("services");
    assert_eq!(services, json!([]));
    let nodes: Value = cluster.get_json(1, "/v1/nodes").await.expect("nodes");
    assert_eq!(nodes, json!([]));
}
