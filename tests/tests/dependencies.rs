//! Dependencies between deployments, end to end with real agents running `plum-echo`: a
//! three-tier stack (db <- migrate <- api <- web) created in one go, in reverse order, comes up
//! in dependency order; a cycle is refused naming it; stopping or deleting what others depend
//! on is refused unless forced; the topology and dependents reads show the graph.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use plum_tests::{TestCluster, start_with_agents, wait_until, workspace_bin};
use reqwest::Method;
use serde_json::{Value, json};

const GENEROUS: Duration = Duration::from_secs(60);

/// A `plum-echo` deployment serving `name`, depending on `deps` (healthy).
fn tier(name: &str, deps: &[(&str, &str)]) -> Value {
    let depends: Vec<Value> = deps.iter().map(|(s, c)| json!({"service": s, "condition": c})).collect();
    json!({"name": name, "version": "1.0.0", "replicas": 1, "requestId": "r1",
           "command": workspace_bin("plum-echo").display().to_string(),
           "service": {"name": name, "protocol": "http", "readiness": {"httpPath": "/health"}},
           "dependsOn": depends})
}

/// When each deployment (by name) got a node, and when its service first had a healthy
/// endpoint, as seen by polling one replica.
#[derive(Default)]
struct Seen {
    placed: BTreeMap<String, Instant>,
    healthy: BTreeMap<String, Instant>,
    /// Orderings broken at some poll: a deployment placed while a dependency was not healthy.
    broken: Vec<String>,
    waiting_on: BTreeMap<String, Vec<String>>,
}

async fn healthy_count(cluster: &TestCluster, id: u64, service: &str) -> usize {
    let path = format!("/v1/discovery?service={service}");
    cluster.get_json::<Vec<Value>>(id, &path).await.map(|v| v.len()).unwrap_or(0)
}

#[tokio::test]
async fn a_three_tier_stack_starts_in_dependency_order_and_guards_its_dependencies() {
    let cluster = start_with_agents(&["n1", "n2"], GENEROUS).await;
    let leader = cluster.wait_leader(GENEROUS).await;
    let stack = [
        ("web", tier("web", &[("api", "healthy")])),
        ("api", tier("api", &[("db", "healthy"), ("migrate", "completed")])),
        (
            "migrate",
            json!({"name": "migrate", "version": "1.0.0", "replicas": 1, "requestId": "r1", "command": "/bin/true",
                   "restart": "on-failure", "dependsOn": [{"service": "db"}]}),
        ),
        ("db", tier("db", &[])),
    ];
    // Created dependents first: only the gate can put them in order.
    for (name, spec) in &stack {
        let (status, body) = cluster.call(leader, Method::POST, "/v1/deployments", Some(spec.clone())).await.unwrap();
        assert_eq!(status, 201, "create {name}: {body}");
    }
    let deps: [(&str, &[&str]); 3] = [("web", &["api"]), ("api", &["db"]), ("migrate", &["db"])];
    let mut seen = Seen::default();
    let deadline = Instant::now() + GENEROUS;
    while !seen.healthy.contains_key("web") {
        assert!(Instant::now() < deadline, "web not healthy in time; placed {:?}", seen.placed.keys());
        let mut healthy = BTreeMap::new();
        for s in ["db", "api", "web"] {
            healthy.insert(s, healthy_count(&cluster, leader, s).await);
        }
        let list: Vec<Value> = cluster.get_json(leader, "/v1/deployments").await.unwrap_or_default();
        let now = Instant::now();
        for d in &list {
            let name = d["spec"]["name"].as_str().unwrap_or_default().to_string();
            let instances = d["instances"].as_array().cloned().unwrap_or_default();
            let placed = instances.iter().any(|i| !i["nodeId"].as_str().unwrap_or_default().is_empty());
            for i in instances.iter().filter(|i| i["phase"] == "Waiting") {
                let why: Vec<String> = i["waitingOn"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|w| w.as_str().map(String::from))
                    .collect();
                seen.waiting_on.entry(name.clone()).or_insert(why);
            }
            if placed {
                seen.placed.entry(name.clone()).or_insert(now);
                for (dependent, needs) in deps {
                    for need in needs.iter().filter(|_| dependent == name) {
                        if healthy[need] == 0 {
                            seen.broken.push(format!("{name} placed while {need} had no healthy endpoint"));
                        }
                    }
                }
            }
        }
        for (s, n) in healthy {
            if n > 0 {
                seen.healthy.entry(s.to_string()).or_insert(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.broken.is_empty(), "start order broken: {:?}", seen.broken);
    assert!(seen.healthy["db"] <= seen.placed["api"], "api started before db was healthy");
    assert!(seen.healthy["api"] <= seen.placed["web"], "web started before api was healthy");
    let web_waits = seen.waiting_on.get("web").expect("web was seen waiting");
    assert!(web_waits.iter().any(|w| w.starts_with("api: 0 of 1 healthy")), "{web_waits:?}");
    let api_waits = seen.waiting_on.get("api").expect("api was seen waiting");
    assert!(api_waits.iter().any(|w| w.starts_with("db: ") || w.starts_with("migrate: ")), "{api_waits:?}");

    // The one-shot job ran to completion and stays so (restart: on-failure); its node is told
    // not to run it again (a restarted agent would otherwise).
    let migrate: Value = cluster.get_json(leader, "/v1/deployments/migrate-r1").await.unwrap();
    assert_eq!(migrate["instances"][0]["phase"], "Completed", "{migrate}");
    let node = migrate["instances"][0]["nodeId"].as_str().unwrap().to_string();
    let assigned: Value = cluster.get_json(leader, &format!("/v1/assignments?nodeId={node}")).await.unwrap();
    let item = assigned["items"].as_array().unwrap().iter().find(|i| i["deploymentId"] == "migrate-r1").cloned();
    assert_eq!(item.map(|i| i["desired"].clone()), Some(json!("Completed")), "{assigned}");
    let web: Value = cluster.get_json(leader, "/v1/deployments/web-r1").await.unwrap();
    assert_eq!(web["dependencies"], "Ready", "{web}");

    // A cycle is refused, naming it, from any replica; nothing changes.
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let patch = json!({"dependsOn": [{"service": "web"}]});
    let (status, body) = cluster.call(follower, Method::PATCH, "/v1/deployments/db-r1", Some(patch)).await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "dependency cycle: db -> web -> api -> db", "{body}");
    let db: Value = cluster.get_json(leader, "/v1/deployments/db-r1").await.unwrap();
    assert_eq!(db["generation"], 1, "the refused update changed nothing: {db}");
    let self_loop = json!({"name": "loop", "replicas": 1, "command": "/bin/true", "dependsOn": [{"service": "loop"}]});
    let (status, body) = cluster.call(follower, Method::POST, "/v1/deployments", Some(self_loop)).await.unwrap();
    assert_eq!((status, body["error"].as_str()), (400, Some("dependency cycle: loop -> loop")), "{body}");
    let bad = json!({"name": "x", "replicas": 1, "command": "/bin/true", "dependsOn": [{"service": "db", "condition": "ready"}]});
    let (status, body) = cluster.call(follower, Method::POST, "/v1/deployments", Some(bad)).await.unwrap();
    assert_eq!(status, 400, "unknown condition: {body}");

    // Changing only what the controllers read restarts nothing.
    let before: Value = cluster.get_json(leader, "/v1/deployments/api-r1").await.unwrap();
    let patch =
        json!({"dependsOn": [{"service": "db"}, {"service": "migrate", "condition": "completed", "optional": true}]});
    let (status, after) = cluster.call(follower, Method::PATCH, "/v1/deployments/api-r1", Some(patch)).await.unwrap();
    assert_eq!(status, 200, "{after}");
    let ids = |d: &Value| -> Vec<String> {
        d["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["instanceId"].as_str().map(String::from))
            .collect()
    };
    assert_eq!((&after["generation"], ids(&after)), (&before["generation"], ids(&before)), "{after}");
    assert_eq!(after["spec"]["dependsOn"][1]["optional"], true, "{after}");

    // Deleting or stopping db while api depends on it: 409 naming the dependents.
    let (status, body) = cluster.call(follower, Method::DELETE, "/v1/deployments/db-r1", None).await.unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["detail"]["dependents"], json!(["api-r1", "migrate-r1"]), "{body}");
    let (status, body) =
        cluster.call(follower, Method::PATCH, "/v1/deployments/db-r1", Some(json!({"replicas": 0}))).await.unwrap();
    assert_eq!(status, 409, "scale to 0: {body}");
    assert!(healthy_count(&cluster, leader, "db").await > 0, "db still serves");
    // web is what nobody depends on: it goes without force.
    let (status, body) = cluster.call(follower, Method::DELETE, "/v1/deployments/web-r1", None).await.unwrap();
    assert_eq!(status, 204, "{body}");

    // The graph as the topology read shows it.
    let topology: Value = cluster.get_json(follower, "/v1/topology?consistent=true").await.unwrap();
    let edges: Vec<(String, String, bool)> = topology["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["from"].as_str().unwrap().into(), e["to"].as_str().unwrap().into(), e["satisfied"] == true))
        .collect();
    let expected = [("api", "db", true), ("api", "migrate", true), ("migrate", "db", true)];
    let expected: Vec<(String, String, bool)> =
        expected.iter().map(|(a, b, s)| (a.to_string(), b.to_string(), *s)).collect();
    assert_eq!(edges, expected, "{topology}");
    let dependents: Value = cluster.get_json(follower, "/v1/services/db/dependents").await.unwrap();
    assert_eq!(dependents["direct"], json!(["api", "migrate"]), "{dependents}");
    assert_eq!(dependents["deployments"], json!(["api-r1", "migrate-r1"]), "{dependents}");

    // Forced, it goes.
    let (status, body) =
        cluster.call(follower, Method::DELETE, "/v1/deployments/db-r1?force=true", None).await.unwrap();
    assert_eq!(status, 204, "{body}");
    wait_until(GENEROUS, "db's endpoint gone", || async { healthy_count(&cluster, leader, "db").await == 0 }).await;
    // Gating applies at start only: api keeps running without db.
    let api: Value = cluster.get_json(leader, "/v1/deployments/api-r1").await.unwrap();
    assert_eq!(api["instances"][0]["phase"], "Running", "{api}");
}

/// Observed edges: a client that names the service it serves (the Rust SDK's
/// `client_service`) while it looks another up appears in the topology of every replica; an
/// instance's `upstreams` at registration is a registered edge; a bad name is a 400 that
/// records nothing.
#[tokio::test]
async fn clients_that_name_their_service_draw_observed_edges() {
    use std::sync::Arc;

    use plum_sdk::client::ClientOptions;
    use plum_sdk::discovery::DiscoveryOptions;
    use plum_sdk::{Client, Controllers};

    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_leader(GENEROUS).await;
    let register = json!({"instanceId": "db-1", "ip": "127.0.0.1", "ttlMs": 600000,
        "endpoints": [{"serviceName": "db", "port": 5432, "protocol": "tcp"}]});
    let (status, body) = cluster.call(leader, Method::POST, "/v1/services/register", Some(register)).await.unwrap();
    assert_eq!(status, 204, "{body}");
    let gateway = json!({"instanceId": "gw-1", "ip": "127.0.0.1", "ttlMs": 600000, "upstreams": ["web"],
        "endpoints": [{"serviceName": "gateway", "port": 80, "protocol": "http"}]});
    let (status, body) = cluster.call(leader, Method::POST, "/v1/services/register", Some(gateway)).await.unwrap();
    assert_eq!(status, 204, "{body}");

    let urls: Vec<String> = cluster.ids().into_iter().map(|id| cluster.url(id)).collect();
    let discovery = DiscoveryOptions { client_service: Some("web".into()), ..DiscoveryOptions::default() };
    let options = ClientOptions { discovery, ..ClientOptions::default() };
    let sdk = Client::over(Arc::new(Controllers::with_options(urls, options.transport.clone())), options);
    let found = sdk.discover("db", &plum_sdk::discovery::Query::default()).await.expect("lookup");
    assert_eq!(found.endpoints.len(), 1);

    let edges = |t: &Value| -> Vec<(String, String, String, bool)> {
        t["edges"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["from"].as_str().unwrap().into(),
                    e["to"].as_str().unwrap().into(),
                    e["kind"].as_str().unwrap().into(),
                    e["satisfied"] == true,
                )
            })
            .collect()
    };
    let want = vec![
        ("gateway".to_string(), "web".to_string(), "registered".to_string(), false),
        ("web".to_string(), "db".to_string(), "observed".to_string(), true),
    ];
    for id in cluster.ids() {
        wait_until(GENEROUS, "the observed edge on every replica", || async {
            let t: Value = cluster.get_json(id, "/v1/topology").await.unwrap_or_default();
            edges(&t) == want
        })
        .await;
    }
    let dependents: Value = cluster.get_json(leader, "/v1/services/db/dependents").await.unwrap();
    assert_eq!(
        (&dependents["direct"], &dependents["transitive"]),
        (&json!(["web"]), &json!(["gateway", "web"])),
        "{dependents}"
    );

    let (status, body) =
        cluster.call(leader, Method::GET, "/v1/discovery?service=db&clientService=bad%00name", None).await.unwrap();
    assert_eq!(status, 400, "{body}");
    let (status, body) = cluster
        .call(leader, Method::GET, "/v1/discovery?service=db&clientService=api&version=%3E%3Dnot", None)
        .await
        .unwrap();
    assert_eq!(status, 400, "a bad version: {body}");
    let (status, body) =
        cluster.call(leader, Method::GET, "/v1/discovery?service=nosuch&clientService=web", None).await.unwrap();
    assert_eq!((status, body), (200, json!([])), "a lookup of a service nobody knows");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t: Value = cluster.get_json(leader, "/v1/topology?consistent=true").await.unwrap();
    assert_eq!(edges(&t), want, "refused lookups recorded nothing");
}
