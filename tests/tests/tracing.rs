//! Traces and logs: a write sent to a follower with a W3C `traceparent` is forwarded to the
//! leader under the same trace id (the leader's request span names the follower's request as
//! its parent), a malformed `traceparent` is ignored, and `--log-format json` writes one JSON
//! object per line.

use std::time::Duration;

use plum_tests::{TestCluster, controller_bin, wait_until};
use serde_json::{Value, json};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// Every line of a replica's log, each parsed as JSON (the test fails on any other line).
fn json_lines(log: &str, replica: u64) -> Vec<Value> {
    log.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("replica {replica}: not a JSON line ({e}): {line}"));
            for field in ["timestamp", "level", "target", "fields"] {
                assert!(v.get(field).is_some(), "replica {replica}: no `{field}` in {line}");
            }
            v
        })
        .collect()
}

/// The `request` spans of the finished requests in a log, route `route`.
fn requests(lines: &[Value], route: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["fields"]["message"] == "request done" && l["span"]["route"] == route)
        .map(|l| l["span"].clone())
        .collect()
}

#[tokio::test]
async fn a_write_sent_to_a_follower_reaches_the_leader_in_the_same_trace_and_logs_are_json() {
    let cluster = TestCluster::start_logging(3, &["--log-format", "json"], "info,openraft=warn,plum::http=debug");
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let follower = cluster.ids().into_iter().find(|&id| id != leader).unwrap();
    let put = |key: &str, traceparent: &str| {
        cluster
            .http
            .put(format!("{}/v1/kv/app/{key}", cluster.url(follower)))
            .header("traceparent", traceparent.to_string())
            .json(&json!({ "value": "blue" }))
            .send()
    };
    let traced = put("color", &format!("00-{TRACE_ID}-{PARENT_ID}-01")).await.unwrap();
    assert_eq!(traced.status(), 200, "forwarded write answered");
    // Malformed (uppercase): ignored, the request is served and gets a trace of its own.
    let malformed = put("shade", &format!("00-{}-{PARENT_ID}-01", TRACE_ID.to_uppercase())).await.unwrap();
    assert_eq!(malformed.status(), 200, "a malformed traceparent is never an error");

    let forwarded =
        |lines: &[Value]| requests(lines, "/internal/v1/propose").into_iter().find(|s| s["trace_id"] == TRACE_ID);
    wait_until(Duration::from_secs(10), "the leader's span of the forwarded proposal", || async {
        forwarded(&json_lines(&cluster.log_of(leader), leader)).is_some()
    })
    .await;

    let at_follower = requests(&json_lines(&cluster.log_of(follower), follower), "/v1/kv/{ns}/{key}");
    let client = at_follower.iter().find(|s| s["trace_id"] == TRACE_ID).expect("the follower's span of the write");
    assert_eq!(client["parent_id"], PARENT_ID, "the client's span is the parent");
    assert_eq!(client["method"], "PUT");
    assert_eq!(client["status"], 200);
    assert_eq!(client["replica"], follower);
    let own = at_follower.iter().find(|s| s["trace_id"] != TRACE_ID).expect("the span of the malformed one");
    assert!(own.get("parent_id").is_none(), "no parent taken from a malformed header: {own}");
    assert!(own["trace_id"].as_str().is_some_and(|t| t.len() == 32 && t != "0".repeat(32)), "{own}");

    let at_leader = forwarded(&json_lines(&cluster.log_of(leader), leader)).unwrap();
    assert_eq!(at_leader["parent_id"], client["request_id"], "the follower's request is the parent: {at_leader}");
    assert_eq!(at_leader["replica"], leader);
    assert_eq!(at_leader["status"], 200);

    // Every line of every replica (startup, elections, requests) is one JSON object.
    for id in cluster.ids() {
        assert!(!json_lines(&cluster.log_of(id), id).is_empty(), "replica {id} logged nothing");
    }
}

#[test]
fn an_unknown_log_format_is_refused_by_the_flag_parser() {
    let out = std::process::Command::new(controller_bin()).args(["--log-format", "xml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid value 'xml'") && stderr.contains("[possible values: text, json]"), "{stderr}");
}
