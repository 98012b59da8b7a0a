//! Deployments on the controllers (no agent yet: fake agent nodes heartbeat as ours will):
//! placement spreads over nodes that can run work and never picks a node that only
//! heartbeats; when a node dies, its instances get new homes in the same Raft entry that
//! declares it dead; Plum's Go agent's routes serve the same state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use plum_tests::{TestCluster, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const GENEROUS: Duration = Duration::from_secs(30);

/// Heartbeats `node` every 250 ms with a 1 s TTL, as our agent will, until `stop`.
fn agent_heartbeats(
    cluster: &TestCluster,
    node: &str,
    can_run: bool,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let http = cluster.http.clone();
    let urls: Vec<String> = cluster.ids().iter().map(|id| cluster.url(*id)).collect();
    let body = json!({"nodeId": node, "ip": "127.0.0.1", "ttlMs": 1000, "canRunInstances": can_run});
    tokio::spawn(async move {
        let mut at = 0;
        while !stop.load(Ordering::Relaxed) {
            let sent = http.post(format!("{}/v1/nodes/heartbeat", urls[at % urls.len()])).json(&body).send().await;
            if !sent.is_ok_and(|r| r.status() == 200) {
                at += 1;
                continue;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

fn homes(deployment: &Value) -> Vec<String> {
    let mut nodes: Vec<String> = deployment["instances"]
        .as_array()
        .map(|a| a.iter().map(|i| i["nodeId"].as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default();
    nodes.sort();
    nodes
}

#[tokio::test]
async fn instances_spread_and_move_off_a_dead_node_in_the_entry_that_declares_it_dead() {
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_leader(GENEROUS).await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("follower");
    let stop_all = Arc::new(AtomicBool::new(false));
    let stop_a2 = Arc::new(AtomicBool::new(false));
    let mut beats = vec![
        agent_heartbeats(&cluster, "a1", true, stop_all.clone()),
        agent_heartbeats(&cluster, "a3", true, stop_all.clone()),
        agent_heartbeats(&cluster, "loadtool", false, stop_all.clone()),
    ];
    let a2 = agent_heartbeats(&cluster, "a2", true, stop_a2.clone());
    wait_until(GENEROUS, "four nodes known", || async {
        cluster.get_json::<Vec<Value>>(follower, "/v1/nodes").await.is_ok_and(|n| n.len() == 4)
    })
    .await;

    // Bad requests change nothing.
    for bad in [
        json!({"name": "echo", "replicas": 3}),
        json!({"name": "has space", "replicas": 1, "command": "/bin/true"}),
        json!({"name": "echo", "replicas": 100000, "command": "/bin/true"}),
        json!({"name": "echo", "replicas": 1, "artifact": {"url": "http://x/a.tgz", "sha256": "nothex"}}),
    ] {
        let (status, body) =
            cluster.call(follower, Method::POST, "/v1/deployments", Some(bad)).await.expect("answered");
        assert_eq!(status, 400, "{body}");
    }

    let spec = json!({"name": "echo", "version": "1.0.0", "replicas": 3, "command": "/bin/echo-server",
                      "args": ["--port", "${PORT}"], "service": {"name": "echo", "protocol": "http"},
                      "requestId": "first"});
    let (status, created) =
        cluster.call(follower, Method::POST, "/v1/deployments", Some(spec.clone())).await.expect("create");
    assert_eq!(status, 201, "{created}");
    assert_eq!(homes(&created), vec!["a1", "a2", "a3"], "one per node that can run work: {created}");
    let id = created["deploymentId"].as_str().expect("deploymentId").to_string();
    // A retried create (same requestId) finds the same deployment.
    let (status, again) = cluster.call(leader, Method::POST, "/v1/deployments", Some(spec)).await.expect("retry");
    assert_eq!((status, again["deploymentId"].clone()), (201, json!(id)));
    let all: Vec<Value> = cluster.get_json(follower, "/v1/deployments?consistent=true").await.expect("list");
    assert_eq!(all.len(), 1);

    // Plum's Go agent polls its assignments and reports status.
    let polled: Value = cluster.get_json(follower, "/v1/assignments?nodeId=a1&consistent=true").await.expect("poll");
    let item = &polled["items"][0];
    assert_eq!(polled["items"].as_array().map(Vec::len), Some(1), "{polled}");
    assert_eq!((item["appName"].clone(), item["appVersion"].clone()), (json!("echo"), json!("1.0.0")));
    assert_eq!(item["startCmd"], json!("/bin/echo-server --port ${PORT}"));
    assert_eq!(item["desired"], json!("Running"));
    let instance = item["instanceId"].as_str().expect("instanceId").to_string();
    let report = json!({"instanceId": instance, "phase": "Running", "healthy": true, "port": 31000, "tsUnix": 1});
    let (status, _) = cluster.call(follower, Method::POST, "/v1/instances/status", Some(report)).await.expect("report");
    assert_eq!(status, 200);
    let (status, _) = cluster
        .call(follower, Method::POST, "/v1/instances/status", Some(json!({"instanceId": "ghost", "phase": "Running"})))
        .await
        .expect("report");
    assert_eq!(status, 404);

    // a2 dies. Read the nodes first, then the deployment: once a2 is dead, none of the
    // deployment's instances may still be on it (a later, separate move would show here).
    stop_a2.store(true, Ordering::Relaxed);
    a2.await.expect("a2 heartbeats");
    let started = Instant::now();
    loop {
        let nodes: Vec<Value> = cluster.get_json(follower, "/v1/nodes").await.expect("nodes");
        let a2_dead = nodes.iter().any(|n| n["nodeId"] == "a2" && n["health"] == "Unhealthy");
        let d: Value = cluster.get_json(follower, &format!("/v1/deployments/{id}")).await.expect("deployment");
        if a2_dead {
            let on = homes(&d);
            assert!(!on.contains(&"a2".to_string()), "a2 is dead but still holds an instance: {d}");
            assert!(!on.contains(&"loadtool".to_string()) && !on.contains(&String::new()), "{d}");
            assert_eq!(on.len(), 3);
            break;
        }
        assert!(started.elapsed() < GENEROUS, "a2 never declared dead");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let polled: Value = cluster.get_json(follower, "/v1/assignments?nodeId=a2").await.expect("poll");
    assert_eq!(polled["items"], json!([]), "the dead node's agent would stop what it ran");

    let (status, _) =
        cluster.call(follower, Method::DELETE, &format!("/v1/deployments/{id}"), None).await.expect("delete");
    assert_eq!(status, 204);
    let (status, _) =
        cluster.call(leader, Method::GET, &format!("/v1/deployments/{id}?consistent=true"), None).await.expect("get");
    assert_eq!(status, 404);
    let (status, _) =
        cluster.call(leader, Method::DELETE, &format!("/v1/deployments/{id}"), None).await.expect("delete");
    assert_eq!(status, 404);

    stop_all.store(true, Ordering::Relaxed);
    for b in beats.drain(..) {
        b.await.expect("heartbeats");
    }
}

/// Three of four nodes lost together looks like the controllers' network, not the nodes:
/// rescheduling pauses (and says so) instead of piling the fleet onto the one node left, and
/// resumes by itself once enough nodes are back.
#[tokio::test]
async fn a_mass_loss_pauses_rescheduling_until_nodes_come_back() {
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_leader(GENEROUS).await;
    let stops: Vec<Arc<AtomicBool>> = (0..4).map(|_| Arc::new(AtomicBool::new(false))).collect();
    let mut beats: Vec<_> =
        (0..4).map(|i| agent_heartbeats(&cluster, &format!("m{i}"), true, stops[i].clone())).collect();
    wait_until(GENEROUS, "four nodes known", || async {
        cluster.get_json::<Vec<Value>>(leader, "/v1/nodes").await.is_ok_and(|n| n.len() == 4)
    })
    .await;
    let spec = json!({"name": "svc", "replicas": 4, "command": "/bin/true"});
    let (status, created) = cluster.call(leader, Method::POST, "/v1/deployments", Some(spec)).await.expect("create");
    assert_eq!(status, 201, "{created}");
    let id = created["deploymentId"].as_str().expect("id").to_string();
    assert_eq!(homes(&created), vec!["m0", "m1", "m2", "m3"]);

    for (i, stop) in stops.iter().enumerate().skip(1) {
        stop.store(true, Ordering::Relaxed);
        beats[i].abort();
    }
    wait_until(GENEROUS, "rescheduling paused", || async {
        let c: Value = cluster.get_json(leader, "/v1/cluster").await.unwrap_or_default();
        c["reschedulePaused"]["nodes"].as_array().is_some_and(|n| n.len() == 3)
    })
    .await;
    let d: Value = cluster.get_json(leader, &format!("/v1/deployments/{id}")).await.expect("deployment");
    assert!(d["reschedulePaused"].as_str().is_some_and(|r| r.contains("3 of 4")), "{d}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let d: Value = cluster.get_json(leader, &format!("/v1/deployments/{id}")).await.expect("deployment");
    assert_eq!(homes(&d), vec!["m0", "m1", "m2", "m3"], "nothing moved during the pause: {d}");

    // Two nodes come back: one of four down is no mass loss; the last one's instance moves.
    for i in [1, 2] {
        stops[i].store(false, Ordering::Relaxed);
        beats[i] = agent_heartbeats(&cluster, &format!("m{i}"), true, stops[i].clone());
    }
    wait_until(GENEROUS, "rescheduling resumed and m3's instance moved", || async {
        let c: Value = cluster.get_json(leader, "/v1/cluster").await.unwrap_or_default();
        let d: Value = cluster.get_json(leader, &format!("/v1/deployments/{id}")).await.unwrap_or_default();
        c.get("reschedulePaused").is_none() && !homes(&d).contains(&"m3".to_string()) && homes(&d).len() == 4
    })
    .await;
    let (status, body) = cluster.call(leader, Method::POST, "/v1/cluster/reschedule", None).await.expect("confirm");
    assert_eq!((status, body["resumed"].clone()), (200, json!(true)));
    for (i, stop) in stops.iter().enumerate() {
        stop.store(true, Ordering::Relaxed);
        beats[i].abort();
    }
}

/// Plum's Go agent never says `canRunInstances`: asking for its assignments is what marks its
/// node as one that runs work. A load tool's node, which only heartbeats, never is. The event
/// stream the Go agent listens to wakes on placement changes.
#[tokio::test]
async fn a_go_agent_becomes_a_target_by_polling_and_its_stream_wakes_it() {
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_leader(GENEROUS).await;
    for node in ["go1", "loadtool"] {
        let (status, _) =
            cluster.call(leader, Method::POST, "/v1/nodes/heartbeat", Some(json!({"nodeId": node}))).await.expect("hb");
        assert_eq!(status, 200);
    }
    let spec = json!({"name": "legacy", "replicas": 1, "command": "/bin/true"});
    let (_, d) = cluster.call(leader, Method::POST, "/v1/deployments", Some(spec)).await.expect("create");
    assert_eq!(homes(&d), vec![""], "no node runs work yet: {d}");

    let mut stream = cluster
        .http
        .get(format!("{}/v1/stream?nodeId=go1", cluster.url(leader)))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    let first =
        tokio::time::timeout(Duration::from_secs(5), stream.chunk()).await.expect("first event").expect("chunk");
    assert!(String::from_utf8_lossy(&first.unwrap_or_default()).contains("event: assignments"));

    let polled: Value = cluster.get_json(leader, "/v1/assignments?nodeId=go1").await.expect("poll");
    assert_eq!(polled["items"], json!([]));
    // The waiting instance is placed on the node that polled (within the leader's next round),
    // and the stream says so.
    let woke = tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await.expect("a wake-up").expect("chunk");
    assert!(String::from_utf8_lossy(&woke.unwrap_or_default()).contains("event: assignments"));
    wait_until(GENEROUS, "the instance on the Go agent's node", || async {
        let d: Value = cluster
            .get_json(leader, &format!("/v1/deployments/{}", d["deploymentId"].as_str().unwrap_or("")))
            .await
            .unwrap_or_default();
        homes(&d) == vec!["go1"]
    })
    .await;
    let polled: Value = cluster.get_json(leader, "/v1/assignments?nodeId=loadtool").await.expect("poll");
    assert_eq!(polled["items"], json!([]));
}
