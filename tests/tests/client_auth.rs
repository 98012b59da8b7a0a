//! Client tokens with roles: every route of the client API against every role (a table of its
//! own, written from the list, not from the controller's), agent tokens confined to
//! their node, revocation, and the anonymous role Plum's Go clients get.

use std::time::Duration;

use plum_tests::{TestCluster, echo_spec, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const GENEROUS: Duration = Duration::from_secs(30);

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    /// Everyone, without a token too.
    Anyone,
    /// Every role.
    Readers,
    /// `agent` (for its own node), `write`, `admin`.
    NodeWriters,
    /// `write`, `admin`.
    Writers,
    Admins,
}

const ROLES: [&str; 4] = ["read", "agent", "write", "admin"];

impl Who {
    fn allows(self, role: &str) -> bool {
        match self {
            Who::Anyone | Who::Readers => true,
            Who::NodeWriters => role != "read",
            Who::Writers => matches!(role, "write" | "admin"),
            Who::Admins => role == "admin",
        }
    }
}

/// The agent token acts for node `n1`: node routes name `n1` or its instances. Admin calls
/// carry bodies or ids that fail after the door (unknown ids, invalid bodies), so that the
/// table changes nothing that matters while proving the door let them through.
fn table() -> Vec<(Method, &'static str, Option<Value>, Who)> {
    let register = json!({"instanceId": "i-n1", "nodeId": "n1", "ip": "10.0.0.1",
        "endpoints": [{"serviceName": "web", "port": 8080}]});
    let status = json!({"instanceId": "i-n1", "nodeId": "n1", "phase": "Running"});
    vec![
        (Method::GET, "/healthz", None, Who::Anyone),
        (Method::GET, "/metrics", None, Who::Readers),
        (Method::POST, "/v1/nodes/heartbeat", Some(json!({"nodeId": "n1", "ip": "10.0.0.1"})), Who::NodeWriters),
        (Method::GET, "/v1/nodes", None, Who::Readers),
        (Method::GET, "/v1/nodes/n1", None, Who::Readers),
        (Method::DELETE, "/v1/nodes/no-such-node", None, Who::Admins),
        (Method::POST, "/v1/services/register", Some(register.clone()), Who::NodeWriters),
        (Method::POST, "/v1/services/heartbeat", Some(json!({"instanceId": "i-n1"})), Who::NodeWriters),
        (Method::POST, "/v1/services/register/batch", Some(json!({"items": [register]})), Who::NodeWriters),
        (
            Method::POST,
            "/v1/services/heartbeat/batch",
            Some(json!({"items": [{"instanceId": "i-n1"}]})),
            Who::NodeWriters,
        ),
        (Method::DELETE, "/v1/services?instanceId=i-unknown", None, Who::NodeWriters),
        (Method::GET, "/v1/services/list", None, Who::Readers),
        (Method::GET, "/v1/discovery?service=web", None, Who::Readers),
        (Method::GET, "/v1/discovery/random?service=web", None, Who::Readers),
        (Method::GET, "/v1/discovery/one?service=web", None, Who::Readers),
        (Method::GET, "/v1/discovery/stream?service=web", None, Who::Readers),
        (Method::GET, "/v1/kv", None, Who::Readers),
        (Method::GET, "/v1/kv/app", None, Who::Readers),
        (Method::GET, "/v1/kv/app/keys", None, Who::Readers),
        (Method::PUT, "/v1/kv/app/keys", Some(json!({"value": "1"})), Who::Writers),
        (Method::DELETE, "/v1/kv/app/keys", None, Who::Writers),
        (Method::GET, "/v1/kv/app/batch", None, Who::Readers),
        (Method::POST, "/v1/kv/app/batch", Some(json!({"items": [{"key": "a", "value": "1"}]})), Who::Writers),
        (Method::PUT, "/v1/kv/app/batch", Some(json!({"value": "1"})), Who::Writers),
        (Method::DELETE, "/v1/kv/app/batch", None, Who::Writers),
        (Method::GET, "/v1/kv/app/color", None, Who::Readers),
        (Method::PUT, "/v1/kv/app/color", Some(json!({"value": "red"})), Who::Writers),
        (Method::DELETE, "/v1/kv/app/color", None, Who::Writers),
        (Method::GET, "/v1/kv/app/key/color", None, Who::Readers),
        (Method::PUT, "/v1/kv/app/key/color", Some(json!({"value": "red"})), Who::Writers),
        (Method::DELETE, "/v1/kv/app/key/color", None, Who::Writers),
        (Method::GET, "/v1/deployments", None, Who::Readers),
        (Method::POST, "/v1/deployments", Some(json!({})), Who::Admins),
        (Method::GET, "/v1/deployments/no-such", None, Who::Readers),
        (Method::PATCH, "/v1/deployments/no-such", Some(json!({"replicas": 1})), Who::Admins),
        (Method::DELETE, "/v1/deployments/no-such", None, Who::Admins),
        (Method::POST, "/v1/deployments/no-such/rollback", None, Who::Admins),
        (Method::GET, "/v1/assignments?nodeId=n1", None, Who::Readers),
        (Method::GET, "/v1/stream?nodeId=n1", None, Who::Readers),
        (Method::POST, "/v1/instances/status", Some(status), Who::NodeWriters),
        (Method::GET, "/v1/cluster", None, Who::Readers),
        (Method::POST, "/v1/cluster/learners", Some(json!({"id": 0})), Who::Admins),
        (Method::POST, "/v1/cluster/voters", Some(json!({"id": 0})), Who::Admins),
        // Sent to a follower: forwarded to the leader, which checks the token again.
        (Method::DELETE, "/v1/cluster/members/99", None, Who::Admins),
        (Method::POST, "/v1/cluster/transfer-leader", Some(json!({"id": 99})), Who::Admins),
        (Method::POST, "/v1/cluster/reschedule", None, Who::Admins),
        (Method::GET, "/v1/failovers", None, Who::Readers),
        (Method::GET, "/v1/tokens", None, Who::Admins),
        (Method::POST, "/v1/tokens", Some(json!({"role": "no-such-role"})), Who::Admins),
        (Method::DELETE, "/v1/tokens/no-such-token", None, Who::Admins),
        (Method::GET, "/v1/auth/whoami", None, Who::Readers),
    ]
}

/// Sends one request (only the status line and headers are waited for: streams stay open).
async fn status_of(http: &reqwest::Client, url: &str, method: &Method, body: &Option<Value>) -> u16 {
    let mut req = http.request(method.clone(), url);
    if let Some(b) = body {
        req = req.json(b);
    }
    req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}")).status().as_u16()
}

async fn create_token(cluster: &TestCluster, via: u64, role: &str, node: Option<&str>) -> (String, String) {
    let mut body = json!({"name": format!("test {role}"), "role": role});
    if let Some(n) = node {
        body["nodeId"] = json!(n);
    }
    let (status, created) = cluster.call(via, Method::POST, "/v1/tokens", Some(body)).await.expect("create token");
    assert_eq!(status, 201, "{created}");
    (created["token"].as_str().unwrap().to_string(), created["id"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn each_role_can_do_exactly_its_list_and_gets_403_on_the_rest() {
    let cluster = TestCluster::start_secured(3, &[]);
    let leader = cluster.wait_leader(GENEROUS).await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let mut clients = Vec::new();
    for role in ROLES {
        let node = (role == "agent").then_some("n1");
        let (token, _) = create_token(&cluster, leader, role, node).await;
        clients.push((role, TestCluster::client_with_token(Some(&token))));
    }
    let anonymous = TestCluster::client_with_token(None);
    let mut checked = 0;
    for (method, path, body, who) in table() {
        // Through a follower: what it forwards (writes, membership) is checked on the leader too.
        let url = format!("{}{path}", cluster.url(follower));
        for (role, http) in &clients {
            let status = status_of(http, &url, &method, &body).await;
            if who.allows(role) {
                assert!(!matches!(status, 401 | 403), "{role} may {method} {path}, got {status}");
            } else {
                assert_eq!(status, 403, "{role} may not {method} {path}");
            }
            checked += 1;
        }
        let status = status_of(&anonymous, &url, &method, &body).await;
        let want_anonymous = if who == Who::Anyone { 200 } else { 401 };
        assert_eq!(status, want_anonymous, "anonymous {method} {path}");
    }
    assert_eq!(checked, table().len() * ROLES.len());
    // whoami says how the cluster sees each caller.
    for (role, http) in &clients {
        let me: Value =
            http.get(format!("{}/v1/auth/whoami", cluster.url(leader))).send().await.unwrap().json().await.unwrap();
        assert_eq!(me["role"], json!(role));
        assert_eq!(me["authEnabled"], json!(true));
        assert_eq!(me["nodeId"], if *role == "agent" { json!("n1") } else { Value::Null });
    }
}

#[tokio::test]
async fn an_agent_token_acts_only_for_its_own_node_and_its_instances() {
    let cluster = TestCluster::start_secured(3, &[]);
    let leader = cluster.wait_leader(GENEROUS).await;
    let (agent, _) = create_token(&cluster, leader, "agent", Some("n1")).await;
    let agent = TestCluster::client_with_token(Some(&agent));
    // An instance on n2, registered by an admin.
    let on_n2 = json!({"instanceId": "i-n2", "nodeId": "n2", "ip": "10.0.0.2",
        "endpoints": [{"serviceName": "web", "port": 80}]});
    let (status, _) = cluster.call(leader, Method::POST, "/v1/services/register", Some(on_n2.clone())).await.unwrap();
    assert_eq!(status, 204);
    for id in cluster.ids() {
        wait_until(GENEROUS, "every replica knows i-n2", || async {
            cluster.get_json::<Vec<Value>>(id, "/v1/discovery?service=web").await.is_ok_and(|e| e.len() == 1)
        })
        .await;
    }
    for id in cluster.ids() {
        let url = |path: &str| format!("{}{path}", cluster.url(id));
        let refused = [
            (Method::POST, "/v1/nodes/heartbeat", Some(json!({"nodeId": "n2", "ip": "10.0.0.2"}))),
            (
                Method::POST,
                "/v1/services/register",
                Some(json!({"instanceId": "i-new", "nodeId": "n2", "ip": "1.1.1.1"})),
            ),
            // Its own node named, but the instance is n2's.
            (
                Method::POST,
                "/v1/services/register",
                Some(json!({"instanceId": "i-n2", "nodeId": "n1", "ip": "1.1.1.1"})),
            ),
            (Method::POST, "/v1/services/register", Some(json!({"instanceId": "i-none", "ip": "1.1.1.1"}))),
            (
                Method::POST,
                "/v1/services/heartbeat",
                Some(json!({"instanceId": "i-n2", "health": [{"serviceName": "web", "healthy": false}]})),
            ),
            (Method::POST, "/v1/services/heartbeat/batch", Some(json!({"items": [{"instanceId": "i-n2"}]}))),
            (Method::POST, "/v1/services/register/batch", Some(json!({"items": [on_n2.clone()]}))),
            (Method::DELETE, "/v1/services?instanceId=i-n2", None),
            (Method::POST, "/v1/instances/status", Some(json!({"instanceId": "i-n2", "phase": "Failed"}))),
        ];
        for (method, path, body) in &refused {
            let status = status_of(&agent, &url(path), method, body).await;
            assert_eq!(status, 403, "agent n1: {method} {path} {body:?} on replica {id}");
        }
        // Its own node: allowed.
        let own = json!({"nodeId": "n1", "ip": "10.0.0.1"});
        assert_eq!(status_of(&agent, &url("/v1/nodes/heartbeat"), &Method::POST, &Some(own)).await, 200);
    }
    // Nothing of n2's changed: still registered, healthy, discoverable.
    let eps: Vec<Value> = cluster.get_json(leader, "/v1/discovery?service=web&consistent=true").await.unwrap();
    assert_eq!(eps.len(), 1, "{eps:?}");
    assert_eq!(eps[0]["instanceId"], json!("i-n2"));
    assert_eq!(eps[0]["healthy"], json!(true));
    // And its own instances are its to register, renew and remove.
    let mine = json!({"instanceId": "i-n1", "nodeId": "n1", "ip": "10.0.0.1",
        "endpoints": [{"serviceName": "api", "port": 81}]});
    let base = cluster.url(leader);
    assert_eq!(status_of(&agent, &format!("{base}/v1/services/register"), &Method::POST, &Some(mine)).await, 204);
    let hb = Some(json!({"instanceId": "i-n1"}));
    assert_eq!(status_of(&agent, &format!("{base}/v1/services/heartbeat"), &Method::POST, &hb).await, 204);
    assert_eq!(status_of(&agent, &format!("{base}/v1/services?instanceId=i-n1"), &Method::DELETE, &None).await, 204);
}

#[tokio::test]
async fn a_revoked_token_is_refused_everywhere_and_the_bootstrap_token_is_recorded_once() {
    let cluster = TestCluster::start_secured(3, &[]);
    let leader = cluster.wait_leader(GENEROUS).await;
    let (token, id) = create_token(&cluster, leader, "write", None).await;
    let writer = TestCluster::client_with_token(Some(&token));
    // Usable at once on every replica (a replica that has not seen it yet catches up first).
    for r in cluster.ids() {
        let url = format!("{}/v1/kv/app/k{r}", cluster.url(r));
        assert_eq!(status_of(&writer, &url, &Method::PUT, &Some(json!({"value": "v"}))).await, 200);
    }
    let tokens: Vec<Value> = cluster.get_json(leader, "/v1/tokens").await.unwrap();
    assert!(tokens.iter().any(|t| t["id"] == json!(id) && t["role"] == json!("write")), "{tokens:?}");
    assert!(tokens.iter().all(|t| t.get("token").is_none() && t.get("hash").is_none()), "never the secret");
    let bootstrap: Vec<&Value> = tokens.iter().filter(|t| t["role"] == json!("admin")).collect();
    assert_eq!(bootstrap.len(), 1, "one bootstrap admin token: {tokens:?}");

    let (status, _) = cluster.call(leader, Method::DELETE, &format!("/v1/tokens/{id}"), None).await.unwrap();
    assert_eq!(status, 204);
    for r in cluster.ids() {
        let url = format!("{}/v1/kv/app/k{r}", cluster.url(r));
        wait_until(GENEROUS, "every replica refuses the revoked token", || async {
            status_of(&writer, &url, &Method::GET, &None).await == 401
        })
        .await;
        assert_eq!(status_of(&writer, &url, &Method::PUT, &Some(json!({"value": "w"}))).await, 401);
    }
    let (status, _) = cluster.call(leader, Method::DELETE, &format!("/v1/tokens/{id}"), None).await.unwrap();
    assert_eq!(status, 404, "revoked once");
    // A garbled token is refused like an unknown one.
    let garbled = TestCluster::client_with_token(Some(&format!("{token}x")));
    assert_eq!(status_of(&garbled, &format!("{}/v1/nodes", cluster.url(leader)), &Method::GET, &None).await, 401);
}

#[tokio::test]
async fn go_clients_without_a_token_get_the_configured_anonymous_role() {
    let cluster = TestCluster::start_secured(1, &["--anonymous-role", "write"]);
    cluster.wait_leader(GENEROUS).await;
    let go = TestCluster::client_with_token(None);
    let base = cluster.url(1);
    let register = json!({"instanceId": "go-1", "ip": "10.0.0.7", "endpoints": [{"serviceName": "legacy", "port": 9}]});
    assert_eq!(status_of(&go, &format!("{base}/v1/services/register"), &Method::POST, &Some(register)).await, 204);
    let kv = Some(json!({"value": "1"}));
    assert_eq!(status_of(&go, &format!("{base}/v1/kv/app/limit"), &Method::PUT, &kv).await, 200);
    let eps: Vec<Value> =
        go.get(format!("{base}/v1/discovery?service=legacy")).send().await.unwrap().json().await.unwrap();
    assert_eq!(eps.len(), 1);
    // Write is not admin.
    assert_eq!(status_of(&go, &format!("{base}/v1/deployments"), &Method::POST, &Some(json!({}))).await, 403);
    assert_eq!(status_of(&go, &format!("{base}/v1/tokens"), &Method::GET, &None).await, 403);
}

#[tokio::test]
async fn agents_with_agent_tokens_run_a_deployment_in_a_secured_cluster() {
    let mut cluster = TestCluster::start_secured(3, &[]);
    cluster.wait_leader(GENEROUS).await;
    cluster.start_agents_with_tokens(&["s1", "s2"], GENEROUS).await;
    let (status, created) = cluster.call(1, Method::POST, "/v1/deployments", Some(echo_spec(2, 0))).await.unwrap();
    assert_eq!(status, 201, "{created}");
    wait_until(Duration::from_secs(60), "both instances registered by their agents and discoverable", || async {
        let eps: Vec<Value> = cluster.get_json(2, "/v1/discovery?service=echo").await.unwrap_or_default();
        let mut nodes: Vec<&str> = eps.iter().filter_map(|e| e["nodeId"].as_str()).collect();
        nodes.sort();
        nodes == ["s1", "s2"]
    })
    .await;
    // An agent without a token is refused and runs nothing.
    cluster.start_agent("s3-no-token");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let nodes: Vec<Value> = cluster.get_json(1, "/v1/nodes").await.unwrap();
    assert!(nodes.iter().all(|n| n["nodeId"] != "s3-no-token"), "{nodes:?}");
}
