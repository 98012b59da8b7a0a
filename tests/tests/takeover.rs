//! Real agents run a deployment of `plum-echo`: it becomes ready and discoverable on three
//! nodes; a crashed instance is restarted by its agent; a node killed outright (agent and
//! instances) has its instance replaced on another node, and discovery stops returning the
//! dead one's endpoint.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use plum_tests::{TestCluster, echo_spec, instance_pids, start_with_agents, wait_until, workspace_bin};
use reqwest::Method;
use serde_json::{Value, json};

const GENEROUS: Duration = Duration::from_secs(60);

/// (node, instance, url) of every discoverable echo endpoint that answers as itself.
async fn serving(cluster: &TestCluster, via: u64) -> Vec<(String, String)> {
    let eps: Vec<Value> = cluster.get_json(via, "/v1/discovery?service=echo").await.unwrap_or_default();
    let mut out = Vec::new();
    for ep in eps {
        let url = format!("http://{}:{}/", ep["ip"].as_str().unwrap_or_default(), ep["port"]);
        let answer: Option<Value> = match cluster.http.get(&url).timeout(Duration::from_secs(2)).send().await {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        // The process behind the endpoint is the instance discovery names.
        if answer.is_some_and(|a| a["instance"] == ep["instanceId"]) {
            out.push((
                ep["nodeId"].as_str().unwrap_or_default().to_string(),
                ep["instanceId"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_deployment_runs_restarts_crashed_instances_and_moves_off_a_killed_node() {
    let mut cluster = start_with_agents(&["n1", "n2", "n3"], GENEROUS).await;
    let (status, created) =
        cluster.call(2, Method::POST, "/v1/deployments", Some(echo_spec(3, 0))).await.expect("create");
    assert_eq!(status, 201, "{created}");
    wait_until(GENEROUS, "three instances serving, one per node", || async {
        let nodes: BTreeSet<String> = serving(&cluster, 3).await.into_iter().map(|(n, _)| n).collect();
        nodes == BTreeSet::from(["n1".to_string(), "n2".to_string(), "n3".to_string()])
    })
    .await;

    // A crashed instance is restarted by its agent.
    let pids = instance_pids(&cluster.agent_dir("n1"));
    assert_eq!(pids.len(), 1, "one instance on n1");
    // SAFETY: kill(2) on an instance process this test's agent started.
    unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) };
    wait_until(GENEROUS, "the crashed instance restarted and serving again", || async {
        let restarted = instance_pids(&cluster.agent_dir("n1")).first().is_some_and(|p| *p != pids[0]);
        restarted && serving(&cluster, 1).await.len() == 3
    })
    .await;

    // n2 dies outright: its instance moves, and its endpoint leaves discovery.
    cluster.kill_node("n2");
    let killed = Instant::now();
    wait_until(GENEROUS, "three instances serving again, none on the dead node", || async {
        let now = serving(&cluster, 3).await;
        now.len() == 3 && now.iter().all(|(node, _)| node != "n2")
    })
    .await;
    eprintln!("node failover: {:?} from kill to three serving endpoints again (debug build)", killed.elapsed());
    let eps: Vec<Value> = cluster.get_json(3, "/v1/discovery?service=echo").await.expect("discovery");
    assert!(eps.iter().all(|e| e["nodeId"] != "n2"), "a dead node's endpoint is still discoverable: {eps:?}");
}

/// A warm standby runs and is ready but out of discovery; when a node with an active instance
/// dies, the standby takes over in the entry that declares the node dead, and a new standby
/// is started elsewhere.
#[tokio::test]
async fn a_warm_standby_takes_over_from_a_killed_node() {
    let mut cluster = start_with_agents(&["w1", "w2", "w3", "w4"], GENEROUS).await;
    let (status, created) =
        cluster.call(1, Method::POST, "/v1/deployments", Some(echo_spec(2, 1))).await.expect("create");
    assert_eq!(status, 201, "{created}");
    let id = created["deploymentId"].as_str().expect("id").to_string();
    let standby_of = |d: &Value| {
        d["instances"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["standby"] == json!(true)).cloned())
            .unwrap_or_default()
    };
    wait_until(GENEROUS, "two serving and a ready standby", || async {
        let d: Value = cluster.get_json(1, &format!("/v1/deployments/{id}")).await.unwrap_or_default();
        let s = standby_of(&d);
        serving(&cluster, 2).await.len() == 2 && s["phase"] == "Running" && s["healthy"] == json!(true)
    })
    .await;
    let d: Value = cluster.get_json(1, &format!("/v1/deployments/{id}")).await.expect("deployment");
    let standby = standby_of(&d)["instanceId"].as_str().expect("standby id").to_string();
    let eps: Vec<Value> = cluster.get_json(1, "/v1/discovery?service=echo").await.expect("discovery");
    assert!(eps.iter().all(|e| e["instanceId"] != json!(standby)), "a standby is not in discovery: {eps:?}");
    let victim = eps[0]["nodeId"].as_str().expect("node").to_string();

    cluster.kill_node(&victim);
    wait_until(GENEROUS, "the standby serving in place of the dead node's instance", || async {
        let now = serving(&cluster, 3).await;
        now.len() == 2 && now.iter().all(|(n, _)| *n != victim) && now.iter().any(|(_, i)| *i == standby)
    })
    .await;
    // `GET /v1/failovers` names the takeover: ready in the entry that declared the node dead.
    let answer: Value = cluster.get_json(3, "/v1/failovers").await.expect("failovers");
    let f = answer["failovers"]
        .as_array()
        .and_then(|all| all.iter().find(|f| f["nodeId"] == json!(victim)))
        .unwrap_or_else(|| panic!("no failover of {victim}: {answer}"));
    let taken = f["instances"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["standbyTakeover"] == json!(true)))
        .unwrap_or_else(|| panic!("no standby takeover in {f}"));
    assert_eq!((&taken["replacementId"], &taken["state"]), (&json!(standby), &json!("ready")), "{taken}");
    assert_eq!(taken["readyMs"], f["declaredDeadMs"], "{f}");
    assert!(taken["durationMs"].as_u64().is_some(), "{taken}");
    wait_until(GENEROUS, "a new standby, ready, on a live node", || async {
        let d: Value = cluster.get_json(1, &format!("/v1/deployments/{id}")).await.unwrap_or_default();
        let s = standby_of(&d);
        s["instanceId"] != json!(standby) && s["nodeId"] != json!(victim) && s["phase"] == "Running"
    })
    .await;
}

/// The node and the controller leader die at the same moment: a new leader is elected, gives
/// every node a full TTL from its election, then declares the dead node dead and moves its
/// instance, as the old one would have.
#[tokio::test]
async fn a_node_and_the_controller_leader_killed_together() {
    let mut cluster = start_with_agents(&["k1", "k2", "k3"], GENEROUS).await;
    let (status, created) =
        cluster.call(1, Method::POST, "/v1/deployments", Some(echo_spec(3, 0))).await.expect("create");
    assert_eq!(status, 201, "{created}");
    wait_until(GENEROUS, "three serving", || async { serving(&cluster, 2).await.len() == 3 }).await;
    let leader = cluster.wait_leader(GENEROUS).await;
    let survivor = cluster.ids().into_iter().find(|id| *id != leader).expect("a survivor");
    cluster.kill(leader);
    cluster.kill_node("k2");
    wait_until(GENEROUS, "three serving again, none on the dead node", || async {
        let now = serving(&cluster, survivor).await;
        now.len() == 3 && now.iter().all(|(n, _)| n != "k2")
    })
    .await;
}

/// With `fencing: stop`, an agent cut off from every controller for longer than its TTL stops
/// that deployment's instances; others keep running (the data plane outlives the control
/// plane).
#[tokio::test]
async fn fencing_stops_a_cut_off_nodes_instances_and_only_those() {
    let mut cluster = TestCluster::start(3, &[]);
    cluster.wait_leader(GENEROUS).await;
    cluster.start_agent("f1");
    wait_until(GENEROUS, "the agent node healthy", || async {
        let nodes: Vec<Value> = cluster.get_json(1, "/v1/nodes").await.unwrap_or_default();
        nodes.iter().any(|n| n["health"] == "Healthy")
    })
    .await;
    let echo = workspace_bin("plum-echo").display().to_string();
    for (name, fencing) in [("fenced", "stop"), ("kept", "none")] {
        let spec = json!({"name": name, "replicas": 1, "command": echo, "fencing": fencing,
                          "service": {"name": name, "readiness": {"httpPath": "/health"}}});
        let (status, d) = cluster.call(1, Method::POST, "/v1/deployments", Some(spec)).await.expect("create");
        assert_eq!(status, 201, "{d}");
    }
    wait_until(GENEROUS, "both instances running", || async { instance_pids(&cluster.agent_dir("f1")).len() == 2 })
        .await;
    let pids = instance_pids(&cluster.agent_dir("f1"));
    // SAFETY: signal 0 only asks whether a process this test started still exists.
    let alive = |pid: u32| unsafe { libc::kill(pid as i32, 0) == 0 };

    for id in cluster.ids() {
        cluster.pause(id);
    }
    let cut = Instant::now();
    while cut.elapsed() < Duration::from_secs(10) && pids.iter().all(|p| alive(*p)) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let still: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    for id in cluster.ids() {
        cluster.resume(id);
    }
    assert_eq!(still.len(), 1, "exactly the fenced instance stops when contact is lost ({:?})", cut.elapsed());
    // The TTL counts from the last acknowledged heartbeat, up to 250 ms before the cut.
    assert!(cut.elapsed() >= Duration::from_millis(700), "stopped before the TTL ran out: {:?}", cut.elapsed());
}

/// An agent killed and started again adopts the instances its previous run started: the same
/// processes keep serving, none is started twice.
#[tokio::test]
async fn a_restarted_agent_adopts_its_instances_without_duplicates() {
    let mut cluster = start_with_agents(&["a1", "a2", "a3"], GENEROUS).await;
    let (status, created) =
        cluster.call(1, Method::POST, "/v1/deployments", Some(echo_spec(3, 0))).await.expect("create");
    assert_eq!(status, 201, "{created}");
    wait_until(GENEROUS, "three serving", || async { serving(&cluster, 2).await.len() == 3 }).await;
    let before = instance_pids(&cluster.agent_dir("a1"));
    assert_eq!(before.len(), 1);
    let serving_before = serving(&cluster, 2).await;

    cluster.restart_agent("a1");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(instance_pids(&cluster.agent_dir("a1")), before, "the same process, not a second one");
    // SAFETY: signal 0 only asks whether the instance this test's agent started still exists.
    assert!(unsafe { libc::kill(before[0] as i32, 0) == 0 }, "the adopted instance still runs");
    assert_eq!(serving(&cluster, 3).await, serving_before, "the same instances serve, on the same nodes");
}

/// Serves `body` to every request on a loopback port, until the test ends.
async fn serve_bytes(body: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = conn.read(&mut request).await;
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(&body).await;
            });
        }
    });
    format!("http://{addr}/echo.tar.gz")
}

/// A deployment that runs from an artifact: fetched, checked against its SHA-256, unpacked,
/// `command` run from inside it. A wrong hash is refused and reported.
#[tokio::test]
async fn an_artifact_is_fetched_verified_and_run() {
    let work = tempfile::tempdir().expect("tmp");
    let app = work.path().join("app/bin");
    std::fs::create_dir_all(&app).expect("dir");
    let script = format!("#!/bin/sh\nexec {} \"$@\"\n", workspace_bin("plum-echo").display());
    std::fs::write(app.join("echo.sh"), script).expect("script");
    let chmod = std::process::Command::new("chmod").arg("+x").arg(app.join("echo.sh")).status().expect("chmod");
    assert!(chmod.success());
    let archive = work.path().join("echo.tar.gz");
    let tar = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(work.path().join("app"))
        .arg("bin")
        .status()
        .expect("tar");
    assert!(tar.success());
    let bytes = std::fs::read(&archive).expect("archive");
    let sum = std::process::Command::new("sha256sum").arg(&archive).output().expect("sha256sum");
    let sha = String::from_utf8_lossy(&sum.stdout).split_whitespace().next().expect("hash").to_string();
    let url = serve_bytes(bytes).await;

    let cluster = start_with_agents(&["t1"], GENEROUS).await;
    let mut spec = echo_spec(1, 0);
    spec["command"] = json!("bin/echo.sh");
    spec["artifact"] = json!({"url": url, "sha256": sha});
    let (status, created) = cluster.call(1, Method::POST, "/v1/deployments", Some(spec.clone())).await.expect("create");
    assert_eq!(status, 201, "{created}");
    wait_until(GENEROUS, "the artifact's program serving", || async { serving(&cluster, 1).await.len() == 1 }).await;

    let mut wrong = spec;
    wrong["name"] = json!("tampered");
    wrong["service"]["name"] = json!("tampered");
    wrong["artifact"]["sha256"] = json!("0".repeat(64));
    let (status, created) = cluster.call(1, Method::POST, "/v1/deployments", Some(wrong)).await.expect("create");
    assert_eq!(status, 201, "{created}");
    let id = created["deploymentId"].as_str().expect("id").to_string();
    wait_until(GENEROUS, "the tampered artifact reported as failed", || async {
        let d: Value = cluster.get_json(1, &format!("/v1/deployments/{id}")).await.unwrap_or_default();
        d["instances"][0]["phase"] == "Failed"
    })
    .await;
}
