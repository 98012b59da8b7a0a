//! `plumctl` end to end: the real binary against a real three-replica cluster, checking what
//! scripts rely on (its JSON output and its exit codes).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plum_tests::{TestCluster, echo_spec, start_with_agents, wait_until, workspace_bin};
use serde_json::Value;

const GENEROUS: Duration = Duration::from_secs(30);
/// No plumctl run in these tests may take longer than this.
const RUN_LIMIT: Duration = Duration::from_secs(60);

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs plumctl with `args`, bounded in time, without colour, and never reading the
/// environment's or a `.plum/cluster.env`'s controllers (every call names its own).
fn plumctl(controllers: &str, args: &[&str]) -> Run {
    let mut child = Command::new(workspace_bin("plumctl"))
        .arg("--controllers")
        .arg(controllers)
        .args(if args.contains(&"--timeout") { &[][..] } else { &["--timeout", "5"][..] })
        .args(args)
        .env_remove("PLUM_CONTROLLERS")
        .env("NO_COLOR", "1")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plumctl");
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for plumctl") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("plumctl {args:?} still running after {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("read stdout");
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
    Run { code: status.code().unwrap_or(-1), stdout, stderr }
}

#[track_caller]
fn expect_code(run: &Run, code: i32, what: &str) {
    assert_eq!(run.code, code, "{what}: exit code\nstdout: {}\nstderr: {}", run.stdout, run.stderr);
}

#[tokio::test]
async fn plumctl_against_a_real_cluster() {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_leader(GENEROUS).await;
    let all = cluster.ids().iter().map(|id| cluster.url(*id)).collect::<Vec<_>>().join(",");
    // Through a follower first: everything works against any replica.
    let leader = cluster.wait_leader(GENEROUS).await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    let via_follower = cluster.url(follower);

    // cluster status --json names a leader, and the table shows every member.
    let run = plumctl(&all, &["cluster", "status", "--json"]);
    expect_code(&run, 0, "cluster status --json");
    let status: Value = serde_json::from_str(&run.stdout).expect("cluster status is JSON");
    assert!(status["leaderId"].as_u64().is_some(), "no leader in {status}");
    assert_eq!(status["members"].as_array().map(Vec::len), Some(3), "{status}");
    let run = plumctl(&all, &["cluster", "status"]);
    expect_code(&run, 0, "cluster status");
    assert!(run.stdout.lines().any(|l| l.starts_with("ID ")), "{}", run.stdout);
    assert!(!run.stdout.contains('\x1b'), "no colour in a pipe: {}", run.stdout);

    // kv put then get, round trip (the get is linearizable: it may go to another replica).
    let run = plumctl(&via_follower, &["kv", "put", "app", "color", "red"]);
    expect_code(&run, 0, "kv put");
    let run = plumctl(&all, &["kv", "get", "app", "color", "--consistent", "--json"]);
    expect_code(&run, 0, "kv get");
    let item: Value = serde_json::from_str(&run.stdout).expect("kv get is JSON");
    assert_eq!((item["value"].as_str(), item["version"].as_u64()), (Some("red"), Some(1)), "{item}");
    let run = plumctl(&all, &["kv", "get", "app", "color", "--consistent", "--value"]);
    expect_code(&run, 0, "kv get --value");
    assert_eq!(run.stdout, "red\n");

    // Compare-and-set against the wrong version: conflict, exit 5, nothing changed.
    let run = plumctl(&all, &["kv", "put", "app", "color", "blue", "--expect-version", "99"]);
    expect_code(&run, 5, "kv put --expect-version 99");
    assert!(run.stderr.contains("version") && run.stderr.lines().count() == 1, "{}", run.stderr);
    let run = plumctl(&all, &["kv", "put", "app", "color", "blue", "--expect-version", "1"]);
    expect_code(&run, 0, "kv put --expect-version 1");

    // A missing key: 404, exit 4.
    let run = plumctl(&all, &["kv", "get", "app", "nosuchkey"]);
    expect_code(&run, 4, "kv get of a missing key");

    // An unknown service: an empty table (its headers), exit 0; and `[]` with --json.
    let run = plumctl(&all, &["discover", "nosuchservice"]);
    expect_code(&run, 0, "discover of an unknown service");
    assert_eq!(run.stdout.lines().count(), 1, "headers only: {}", run.stdout);
    assert!(run.stdout.starts_with("INSTANCE"), "{}", run.stdout);
    let run = plumctl(&all, &["discover", "nosuchservice", "--version", "^1.2", "--json"]);
    expect_code(&run, 0, "discover --json");
    assert_eq!(serde_json::from_str::<Value>(&run.stdout).ok(), Some(Value::Array(vec![])), "{}", run.stdout);

    // A usage error: exit 2.
    let run = plumctl(&all, &["kv", "put", "app", "k", "v", "--type", "float"]);
    expect_code(&run, 2, "bad --type");

    // Every controller on a closed port: unreachable, exit 3, one line on stderr.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let started = Instant::now();
    let run = plumctl(&format!("127.0.0.1:{closed}"), &["--timeout", "1", "kv", "get", "app", "color"]);
    expect_code(&run, 3, "closed port");
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(20), "unreachable took {:?}", started.elapsed());
}

/// `cluster` as plumctl's `--controllers`.
fn controllers_of(cluster: &TestCluster) -> String {
    cluster.ids().iter().map(|id| cluster.url(*id)).collect::<Vec<_>>().join(",")
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout))
}

#[tokio::test]
async fn plumctl_deploys_scales_rolls_and_undeploys() {
    let cluster = start_with_agents(&["n1", "n2"], GENEROUS).await;
    let all = controllers_of(&cluster);
    let dir = tempfile::TempDir::new().expect("temp dir");
    let spec = dir.path().join("echo.json");
    std::fs::write(&spec, echo_spec(1, 0).to_string()).expect("write spec");
    let spec = spec.display().to_string();

    let run = plumctl(&all, &["nodes"]);
    expect_code(&run, 0, "nodes");
    assert_eq!(run.stdout.lines().filter(|l| l.contains(" healthy")).count(), 2, "{}", run.stdout);

    // deploy -f, with a flag on top of the file.
    let run = plumctl(&all, &["deploy", "-f", &spec, "--label", "", "--json"]);
    expect_code(&run, 2, "a label that is not KEY=VALUE");
    let run = plumctl(&all, &["deploy", "-f", &spec, "--env", "GREETING=hi", "--json"]);
    expect_code(&run, 0, "deploy -f");
    let created = json_of(&run);
    let id = created["deploymentId"].as_str().expect("deploymentId").to_string();
    assert_eq!(created["spec"]["env"]["GREETING"], "hi", "{created}");
    let endpoints = |n: usize| {
        let all = all.clone();
        move || {
            let all = all.clone();
            async move {
                let run = plumctl(&all, &["discover", "echo", "--json"]);
                run.code == 0 && serde_json::from_str::<Vec<Value>>(&run.stdout).is_ok_and(|e| e.len() == n)
            }
        }
    };
    wait_until(GENEROUS, "one echo endpoint", endpoints(1)).await;
    let run = plumctl(&all, &["services"]);
    expect_code(&run, 0, "services");
    assert!(run.stdout.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["echo", "1"]), "{}", run.stdout);

    // scale, then the deployment's table has two instances.
    let run = plumctl(&all, &["scale", &id, "2"]);
    expect_code(&run, 0, "scale");
    wait_until(GENEROUS, "two echo endpoints", endpoints(2)).await;
    let run = plumctl(&all, &["deployment", &id]);
    expect_code(&run, 0, "deployment");
    assert_eq!(run.stdout.lines().filter(|l| l.starts_with(&format!("{id}-"))).count(), 2, "{}", run.stdout);
    let run = plumctl(&all, &["deployments", "--json"]);
    expect_code(&run, 0, "deployments");
    assert!(json_of(&run).as_array().is_some_and(|d| d.iter().any(|d| d["deploymentId"] == id.as_str())));

    // A rolling update, waited for: every instance ends on the new generation.
    let run = plumctl(&all, &["rollout", &id, "--version", "1.1.0", "--wait", "--json"]);
    expect_code(&run, 0, "rollout --wait");
    let rolled = json_of(&run);
    assert_eq!(rolled["rollout"], "Done", "{rolled}");
    assert_eq!(rolled["spec"]["version"], "1.1.0", "{rolled}");
    let run = plumctl(&all, &["rollout", &id]);
    expect_code(&run, 2, "a rollout that changes nothing");

    // undeploy; then the deployment is gone (exit 4).
    let run = plumctl(&all, &["undeploy", &id]);
    expect_code(&run, 0, "undeploy");
    let run = plumctl(&all, &["deployment", &id]);
    expect_code(&run, 4, "a removed deployment");
}
