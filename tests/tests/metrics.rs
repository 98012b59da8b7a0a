//! `GET /metrics` on controller replicas and agents, scraped around failures: a killed leader
//! moves the survivors' term and leader-change counts; a killed node shows in the expiries,
//! the reschedules and the failover-duration histogram of every replica, and its instance
//! comes back ready; a crashed instance shows in its agent's restarts. `/metrics` needs what
//! `/v1/cluster` needs (a token where client authentication is on).

use std::collections::BTreeSet;
use std::time::Duration;

use plum_tests::prom::Scrape;
use plum_tests::{TestCluster, echo_spec, instance_pids, wait_until};
use reqwest::Method;
use serde_json::{Value, json};

const GENEROUS: Duration = Duration::from_secs(60);

/// A value that must be there.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape.value(name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in the scrape"))
}

/// Replica `id`'s scrape, or an empty one while it does not answer.
async fn scrape(cluster: &TestCluster, id: u64) -> Scrape {
    cluster.metrics(id).await.unwrap_or_default()
}

#[tokio::test]
async fn a_leader_kill_moves_term_and_leader_changes_on_the_survivors() {
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_leader(GENEROUS).await;
    let survivors: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();
    for i in 0..5 {
        assert_eq!(cluster.put_kv(survivors[0], "app", &format!("key-{i}"), "v").await, Ok(200));
    }

    // The answer itself: OpenMetrics text, complete.
    let resp = cluster.http.get(format!("{}/metrics", cluster.url(leader))).send().await.expect("scrape");
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().expect("content type").to_string();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    assert!(resp.text().await.expect("body").ends_with("# EOF\n"));

    let on_leader = cluster.metrics(leader).await.expect("leader's metrics");
    assert_eq!(value(&on_leader, "plum_raft_role", &[("role", "leader")]), 1.0);
    assert!(value(&on_leader, "plum_raft_append_duration_seconds_count", &[]) > 0.0);
    assert!(value(&on_leader, "plum_raft_apply_duration_seconds_count", &[]) > 0.0);
    assert!(value(&on_leader, "plum_raft_commit_index", &[]) >= 5.0);

    let mut before = Vec::new();
    for id in &survivors {
        let m = cluster.metrics(*id).await.expect("survivor's metrics");
        assert_eq!(value(&m, "plum_raft_role", &[("role", "follower")]), 1.0);
        assert_eq!(value(&m, "plum_raft_leader_id", &[]), leader as f64);
        before.push((*id, value(&m, "plum_raft_term", &[]), value(&m, "plum_raft_leader_changes_total", &[])));
    }
    // Requests counted by route template, never by the keys in the path.
    let writes = cluster.metrics(survivors[0]).await.expect("metrics");
    let put = [("route", "/v1/kv/{ns}/{key}"), ("method", "PUT"), ("status", "200")];
    assert_eq!(value(&writes, "plum_http_requests_total", &put), 5.0);
    let latency = [("route", "/v1/kv/{ns}/{key}"), ("method", "PUT"), ("status_class", "2xx")];
    assert_eq!(value(&writes, "plum_http_request_duration_seconds_count", &latency), 5.0);
    assert!(writes.samples.iter().all(|s| s.labels.values().all(|v| !v.contains("key-"))), "a raw path in a label");
    // A path no route knows is one series, whatever the path.
    let (status, _) = cluster.call(survivors[0], Method::GET, "/no/such/thing-1", None).await.expect("404");
    assert_eq!(status, 404);
    let unknown = cluster.metrics(survivors[0]).await.expect("metrics");
    assert_eq!(value(&unknown, "plum_http_requests_total", &[("route", "unmatched"), ("status", "404")]), 1.0);

    cluster.kill(leader);
    for (id, term, changes) in before {
        wait_until(GENEROUS, &format!("replica {id} in a later term under a new leader"), || async {
            let m = scrape(&cluster, id).await;
            m.value("plum_raft_term", &[]).is_some_and(|t| t > term)
                && m.value("plum_raft_leader_changes_total", &[]).is_some_and(|c| c > changes)
                && m.value("plum_raft_leader_id", &[]).is_some_and(|l| l != leader as f64)
        })
        .await;
    }
    let new_leader = cluster.wait_leader(GENEROUS).await;
    let m = cluster.metrics(new_leader).await.expect("new leader's metrics");
    assert_eq!(value(&m, "plum_raft_role", &[("role", "leader")]), 1.0);
    assert_eq!(value(&m, "plum_raft_has_leader", &[]), 1.0);
}

#[tokio::test]
async fn a_node_kill_shows_in_expiries_reschedules_and_failover_durations() {
    let mut cluster = TestCluster::start(3, &[]);
    cluster.wait_leader(GENEROUS).await;
    let agents: Vec<(String, String)> =
        ["m1", "m2", "m3"].iter().map(|n| (n.to_string(), cluster.start_agent_with_metrics(n))).collect();
    cluster.wait_nodes_healthy(&["m1", "m2", "m3"], GENEROUS).await;
    let (status, created) =
        cluster.call(1, Method::POST, "/v1/deployments", Some(echo_spec(3, 0))).await.expect("create");
    assert_eq!(status, 201, "{created}");
    let id = created["deploymentId"].as_str().expect("deployment id").to_string();
    let deployment = [("deployment", id.as_str())];
    wait_until(GENEROUS, "three instances ready, by the metrics", || async {
        let m = scrape(&cluster, 2).await;
        m.value("plum_deployment_ready_instances", &deployment) == Some(3.0)
    })
    .await;
    let m = cluster.metrics(2).await.expect("metrics");
    assert_eq!(value(&m, "plum_deployment_desired_instances", &deployment), 3.0);
    assert_eq!(value(&m, "plum_nodes", &[("state", "live")]), 3.0);
    // Agents heartbeat to the replica that answered last: some replica counts their renewals.
    wait_until(GENEROUS, "node heartbeat renewals counted", || async {
        let mut renewals = 0.0;
        for id in cluster.ids() {
            renewals += scrape(&cluster, id).await.sum("plum_heartbeats_received_total", &[("kind", "node")]);
        }
        renewals > 0.0
    })
    .await;

    // Each agent supervises one ready instance and heartbeats.
    for (node, url) in &agents {
        wait_until(GENEROUS, &format!("{node}'s agent reporting its ready instance"), || async {
            let a = cluster.scrape(url).await.unwrap_or_default();
            a.value("plum_agent_instances", &[]) == Some(1.0) && a.value("plum_agent_instances_ready", &[]) == Some(1.0)
        })
        .await;
        let a = cluster.scrape(url).await.expect("agent metrics");
        assert!(value(&a, "plum_agent_instance_starts_total", &[]) >= 1.0);
        assert!(value(&a, "plum_agent_heartbeats_total", &[("outcome", "ok")]) > 0.0);
    }

    // A crashed instance: its agent starts it again, and counts it.
    let pids = instance_pids(&cluster.agent_dir("m1"));
    assert_eq!(pids.len(), 1, "one instance on m1");
    // SAFETY: kill(2) on an instance process this test's agent started.
    unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) };
    wait_until(GENEROUS, "m1's agent counting a restart and its instance ready again", || async {
        let a = cluster.scrape(&agents[0].1).await.unwrap_or_default();
        a.value("plum_agent_instance_restarts_total", &[]).is_some_and(|r| r >= 1.0)
            && a.value("plum_agent_instances_ready", &[]) == Some(1.0)
    })
    .await;

    let mut before = Vec::new();
    for id in cluster.ids() {
        let m = cluster.metrics(id).await.expect("metrics");
        let expiries = value(&m, "plum_liveness_expiries_total", &[("kind", "node")]);
        let reschedules = value(&m, "plum_instance_reschedules_total", &[]);
        let failovers = value(&m, "plum_failover_duration_seconds_count", &[]);
        before.push((id, expiries, reschedules, failovers));
    }

    let d: Value = cluster.get_json(1, &format!("/v1/deployments/{id}")).await.expect("deployment");
    let on_m2 = d["instances"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["nodeId"] == "m2"))
        .and_then(|i| i["instanceId"].as_str())
        .expect("an instance on m2")
        .to_string();

    // m2 dies outright: every replica applies its expiry and the move of its instance, and
    // sees the replacement become ready.
    cluster.kill_node("m2");
    for (id, expiries, reschedules, failovers) in before {
        wait_until(GENEROUS, &format!("replica {id} counting the expiry, the move and the failover"), || async {
            let m = scrape(&cluster, id).await;
            m.value("plum_liveness_expiries_total", &[("kind", "node")]).is_some_and(|e| e > expiries)
                && m.value("plum_instance_reschedules_total", &[]).is_some_and(|r| r > reschedules)
                && m.value("plum_failover_duration_seconds_count", &[]).is_some_and(|c| c > failovers)
        })
        .await;
        let m = cluster.metrics(id).await.expect("metrics");
        assert_eq!(value(&m, "plum_nodes", &[("state", "dead")]), 1.0);
        assert_eq!(value(&m, "plum_failover_pending_instances", &[]), 0.0);
        // From the last heartbeat to ready again: at least most of the 1 s TTL (detection),
        // far below the test's deadline.
        let (sum, count) = (
            value(&m, "plum_failover_duration_seconds_sum", &[]),
            value(&m, "plum_failover_duration_seconds_count", &[]),
        );
        let mean = sum / count;
        eprintln!("replica {id}: failover {mean:.2} s from the node's last heartbeat to its instance ready again");
        assert!(mean > 0.5 && mean < GENEROUS.as_secs_f64(), "mean failover {mean} s on replica {id}");
        let within_a_minute = value(&m, "plum_failover_duration_seconds_bucket", &[("le", "60.0")]);
        assert_eq!(within_a_minute, count, "every failover within a minute");

        // The same failover in `GET /v1/failovers`: m2, its instance moved and ready elsewhere.
        let answer: Value = cluster.get_json(id, "/v1/failovers").await.expect("failovers");
        assert_eq!(answer["replicaId"], json!(id));
        let f = answer["failovers"]
            .as_array()
            .and_then(|all| all.iter().find(|f| f["nodeId"] == "m2"))
            .unwrap_or_else(|| panic!("replica {id} lists no failover of m2: {answer}"));
        assert_eq!(f["inProgress"], json!(false), "{f}");
        let (last_seen, declared) =
            (f["lastSeenMs"].as_u64().expect("lastSeenMs"), f["declaredDeadMs"].as_u64().expect("declaredDeadMs"));
        assert!(declared >= last_seen, "{f}");
        let moved = f["instances"]
            .as_array()
            .and_then(|all| all.iter().find(|i| i["instanceId"] == json!(on_m2)))
            .unwrap_or_else(|| panic!("m2's failover does not list {on_m2}: {f}"));
        assert_eq!(
            (&moved["fromNode"], &moved["state"], &moved["standbyTakeover"]),
            (&json!("m2"), &json!("ready"), &json!(false)),
            "{moved}"
        );
        assert!(moved["toNode"] == "m1" || moved["toNode"] == "m3", "{moved}");
        assert_eq!(moved["deploymentId"], json!(deployment[0].1));
        let took = moved["durationMs"].as_u64().expect("durationMs");
        assert!(took > 500 && took < GENEROUS.as_millis() as u64, "{moved}");
        assert_eq!(moved["readyMs"].as_u64(), Some(last_seen + took), "{moved}");
        assert_eq!(f["durationMs"].as_u64(), Some(took), "{f}");
    }
    wait_until(GENEROUS, "three instances ready again", || async {
        scrape(&cluster, 3).await.value("plum_deployment_ready_instances", &deployment) == Some(3.0)
    })
    .await;

    // The Grafana dashboard shows only series that exist.
    let mut names: BTreeSet<String> =
        cluster.metrics(3).await.expect("metrics").samples.into_iter().map(|s| s.name).collect();
    names.extend(cluster.scrape(&agents[0].1).await.expect("agent metrics").samples.into_iter().map(|s| s.name));
    let dashboard = include_str!("../../docs/grafana-plum.json");
    let shown = dashboard_metrics(dashboard);
    assert!(shown.len() >= 15, "{shown:?}");
    let missing: Vec<&String> = shown.iter().filter(|n| !names.contains(*n)).collect();
    assert!(missing.is_empty(), "the dashboard uses series no scrape has: {missing:?}");
}

/// Every `plum_*` name in the dashboard's queries.
fn dashboard_metrics(json: &str) -> BTreeSet<String> {
    let dashboard: serde_json::Value = serde_json::from_str(json).expect("the dashboard is valid JSON");
    let mut names = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for (at, _) in expr.match_indices("plum_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                names.insert(name);
            }
        }
    }
    names
}

#[tokio::test]
async fn metrics_need_a_token_where_client_authentication_is_on() {
    let cluster = TestCluster::start_secured(3, &[]);
    let leader = cluster.wait_leader(GENEROUS).await;
    let url = format!("{}/metrics", cluster.url(leader));
    let anonymous = TestCluster::client_with_token(None).get(&url).send().await.expect("anonymous scrape");
    assert_eq!(anonymous.status(), 401);
    // A `read` token is enough, as for `/v1/cluster`.
    let body = json!({"name": "prometheus", "role": "read"});
    let (status, created) = cluster.call(leader, Method::POST, "/v1/tokens", Some(body)).await.expect("token");
    assert_eq!(status, 201, "{created}");
    let scraper = TestCluster::client_with_token(created["token"].as_str());
    wait_until(GENEROUS, "the read token accepted by every replica", || async {
        let mut answered = 0;
        for id in cluster.ids() {
            let url = format!("{}/metrics", cluster.url(id));
            if scraper.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
                answered += 1;
            }
        }
        answered == 3
    })
    .await;
    let text = scraper.get(&url).send().await.expect("scrape").text().await.expect("body");
    assert!(text.contains("plum_raft_term"), "{text}");
}
