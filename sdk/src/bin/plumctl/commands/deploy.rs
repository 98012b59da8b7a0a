//! `plumctl deploy | deployments | deployment | scale | rollout | undeploy` (`/v1/deployments*`).

use std::path::Path;
use std::time::Duration;

use plum_types::{DeploymentInfo, DeploymentRequest, InstanceInfo};
use serde_json::{Map, Value, json};

use super::{Ctx, decode};
use crate::api::{Method, encode};
use crate::cli::{DeployArgs, RolloutArgs, RunArgs};
use crate::error::{CtlError, Result};
use crate::output::{Cell, Paint, Table, ago, now_secs};

/// How often `rollout --wait` looks at the deployment.
const WAIT_POLL: Duration = Duration::from_millis(500);

pub async fn create(ctx: &Ctx, args: &DeployArgs) -> Result<()> {
    let file_text = match &args.file {
        Some(path) => Some(read_spec(path)?),
        None => None,
    };
    let spec = build_spec(args, file_text.as_deref())?;
    let reply = ctx.api.send(Method::Post, "/v1/deployments", Some(&spec)).await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    let info: DeploymentInfo = decode(&reply.body, "POST /v1/deployments")?;
    ctx.out.line(&format!(
        "deployment {} created: {} x {} {}",
        info.deployment_id, info.spec.replicas, info.spec.name, info.spec.version
    ))?;
    ctx.out.table(&instances_table(&info.instances))
}

/// The spec file's text (`-`: standard input).
fn read_spec(path: &Path) -> Result<String> {
    let read =
        if path == Path::new("-") { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(path) };
    read.map_err(|e| CtlError::Usage(format!("cannot read {}: {e}", path.display())))
}

/// The body of `POST /v1/deployments`: the spec file's fields (kept as given, so fields this
/// plumctl does not know still reach the cluster), overridden by the flags, with a request id
/// so that a retried create finds the first one's deployment.
pub fn build_spec(args: &DeployArgs, file_text: Option<&str>) -> Result<Value> {
    let mut spec = match file_text {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(CtlError::Usage("the spec file must hold a JSON object".into())),
            Err(e) => return Err(CtlError::Usage(format!("the spec file is not valid JSON: {e}"))),
        },
        None => Map::new(),
    };
    set(&mut spec, "name", args.name.as_ref());
    set(&mut spec, "version", args.version.as_ref());
    match args.replicas {
        Some(r) => set(&mut spec, "replicas", Some(r)),
        None if !spec.contains_key("replicas") => set(&mut spec, "replicas", Some(1)),
        None => {}
    }
    apply_run(&mut spec, &args.run);
    if args.service_name.is_some() || args.protocol.is_some() || args.readiness_path.is_some() {
        let deployment_name = spec.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        let service = object_at(&mut spec, "service");
        let name = args
            .service_name
            .clone()
            .or_else(|| service.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_string));
        service.insert("name".into(), json!(name.unwrap_or(deployment_name)));
        let protocol = args
            .protocol
            .clone()
            .or_else(|| service.get("protocol").and_then(Value::as_str).filter(|p| !p.is_empty()).map(str::to_string));
        service.insert("protocol".into(), json!(protocol.unwrap_or_else(|| "http".into())));
        if let Some(path) = &args.readiness_path {
            object_at(service, "readiness").insert("httpPath".into(), json!(path));
        }
    }
    if !args.labels.is_empty() {
        let labels = object_at(object_at(&mut spec, "placement"), "labels");
        for (k, v) in &args.labels {
            labels.insert(k.clone(), json!(v));
        }
    }
    set(&mut spec, "standby", args.standby);
    set(&mut spec, "fencing", args.fencing.as_ref());
    set(&mut spec, "requestId", args.request_id.as_ref());
    set(&mut spec, "restart", args.restart.as_ref());
    if !args.depends_on.is_empty() {
        let list = spec.entry("dependsOn").or_insert_with(|| json!([]));
        let Some(list) = list.as_array_mut() else {
            return Err(CtlError::Usage("`dependsOn` in the spec file must be a list".into()));
        };
        for d in &args.depends_on {
            let (service, condition) = d.split_once(':').unwrap_or((d.as_str(), "healthy"));
            list.push(json!({ "service": service, "condition": condition }));
        }
    }
    let has_request_id = spec.get("requestId").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    if !has_request_id {
        spec.insert("requestId".into(), json!(format!("{:08x}", rand::random::<u32>())));
    }
    let spec = Value::Object(spec);
    // Catch a spec of the wrong shape here, with a usage error, rather than as the cluster's 400.
    serde_json::from_value::<DeploymentRequest>(spec.clone())
        .map_err(|e| CtlError::Usage(format!("invalid deployment spec: {e}")))?;
    Ok(spec)
}

/// What runs (command, args, env, artifact) from the flags into a spec or a patch. Env
/// variables given are added to the ones already there.
fn apply_run(spec: &mut Map<String, Value>, run: &RunArgs) {
    set(spec, "command", run.command.as_ref());
    if !run.args.is_empty() {
        spec.insert("args".into(), json!(run.args));
    }
    if !run.env.is_empty() || !run.port_env.is_empty() {
        let env = object_at(spec, "env");
        for (k, v) in &run.env {
            env.insert(k.clone(), json!(v));
        }
        for name in &run.port_env {
            env.insert(name.clone(), json!("${PORT}"));
        }
    }
    if let (Some(url), Some(sha256)) = (&run.artifact_url, &run.artifact_sha256) {
        spec.insert("artifact".into(), json!({ "url": url, "sha256": sha256 }));
    }
}

fn set<T: serde::Serialize>(spec: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(v) = value {
        spec.insert(key.to_string(), json!(v));
    }
}

/// The object under `key`, made one if it is missing or something else.
fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key.to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

pub async fn list(ctx: &Ctx) -> Result<()> {
    let reply = ctx.api.get("/v1/deployments").await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    let mut list: Vec<DeploymentInfo> = decode(&reply.body, "GET /v1/deployments")?;
    list.sort_by(|a, b| a.deployment_id.cmp(&b.deployment_id));
    let now = now_secs();
    let mut table = Table::new(&["DEPLOYMENT", "NAME", "VERSION", "READY", "STANDBY", "ROLLOUT", "AGE"]);
    for d in &list {
        let ready = d.instances.iter().filter(|i| !i.standby && is_ready(i)).count();
        let standby = d.instances.iter().filter(|i| i.standby).count();
        let all_ready = ready >= d.spec.replicas as usize;
        table.row(vec![
            d.deployment_id.clone().into(),
            d.spec.name.clone().into(),
            d.spec.version.clone().into(),
            Cell::painted(format!("{ready}/{}", d.spec.replicas), if all_ready { Paint::Green } else { Paint::Yellow }),
            standby.to_string().into(),
            rollout_cell(&d.rollout),
            ago(d.created_at, now).trim_end_matches(" ago").to_string().into(),
        ]);
    }
    ctx.out.table(&table)
}

fn is_ready(i: &InstanceInfo) -> bool {
    i.phase == "Running" && i.healthy
}

fn rollout_cell(rollout: &str) -> Cell {
    match rollout {
        "" => "-".into(),
        "Done" => Cell::painted(rollout, Paint::Green),
        r if r.starts_with("Failed") => Cell::painted(r, Paint::Red),
        r => Cell::painted(r, Paint::Yellow),
    }
}

pub async fn show(ctx: &Ctx, id: &str) -> Result<()> {
    let reply = ctx.api.get(&format!("/v1/deployments/{}", encode(id))).await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    let info: DeploymentInfo = decode(&reply.body, "GET /v1/deployments/{id}")?;
    print_deployment(ctx, &info)
}

fn print_deployment(ctx: &Ctx, info: &DeploymentInfo) -> Result<()> {
    let s = &info.spec;
    let rollout = if info.rollout.is_empty() { "-" } else { &info.rollout };
    ctx.out.line(&format!(
        "deployment {}: {} {}, {} replicas{}, generation {}, rollout {}",
        info.deployment_id,
        s.name,
        s.version,
        s.replicas,
        if s.standby > 0 { format!(" + {} standby", s.standby) } else { String::new() },
        info.generation,
        rollout
    ))?;
    if let Some(reason) = &info.reschedule_paused {
        ctx.out.line(&ctx.out.paint(&format!("rescheduling paused: {reason}"), Paint::Yellow))?;
    }
    if let Some(deps) = &info.dependencies {
        let paint = if deps == "Ready" { Paint::Green } else { Paint::Yellow };
        ctx.out.line(&ctx.out.paint(&format!("dependencies: {deps}"), paint))?;
    }
    ctx.out.table(&instances_table(&info.instances))?;
    for i in info.instances.iter().filter(|i| !i.waiting_on.is_empty()) {
        ctx.out.line(&format!("{} waits on: {}", i.instance_id, i.waiting_on.join(", ")))?;
    }
    Ok(())
}

pub fn instances_table(instances: &[InstanceInfo]) -> Table {
    let mut sorted: Vec<&InstanceInfo> = instances.iter().collect();
    sorted.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    let now = now_secs();
    let mut table = Table::new(&["INSTANCE", "NODE", "PHASE", "PORT", "HEALTH", "RESTARTS", "GEN", "ROLE", "UPDATED"]);
    for i in sorted {
        let phase = match i.phase.as_str() {
            "Running" => Cell::painted(&i.phase, Paint::Green),
            "Failed" | "Exited" => Cell::painted(&i.phase, Paint::Red),
            _ => Cell::painted(&i.phase, Paint::Yellow),
        };
        table.row(vec![
            i.instance_id.clone().into(),
            if i.node_id.is_empty() { "(none)".into() } else { i.node_id.clone().into() },
            phase,
            if i.port == 0 { "-".into() } else { i.port.to_string().into() },
            Cell::painted(if i.healthy { "healthy" } else { "unhealthy" }, Paint::good_bad(i.healthy)),
            i.restarts.to_string().into(),
            i.generation.to_string().into(),
            if i.standby { "standby" } else { "active" }.into(),
            ago(i.updated_at, now).into(),
        ]);
    }
    table
}

pub async fn scale(ctx: &Ctx, id: &str, replicas: u32, force: bool) -> Result<()> {
    let patch = json!({ "replicas": replicas });
    let path = format!("/v1/deployments/{}{}", encode(id), if force { "?force=true" } else { "" });
    let reply = ctx.api.send(Method::Patch, &path, Some(&patch)).await.map_err(force_hint)?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    let info: DeploymentInfo = decode(&reply.body, "PATCH /v1/deployments/{id}")?;
    print_deployment(ctx, &info)
}

pub async fn rollout(ctx: &Ctx, args: &RolloutArgs) -> Result<()> {
    let path = format!("/v1/deployments/{}", encode(&args.id));
    let mut patch = Map::new();
    set(&mut patch, "version", args.version.as_ref());
    if !args.run.env.is_empty() || !args.run.port_env.is_empty() {
        // A PATCH replaces `env` whole: start from the deployment's, so the flags add to it.
        let current: DeploymentInfo = decode(&ctx.api.get(&path).await?.body, "GET /v1/deployments/{id}")?;
        patch.insert("env".into(), json!(current.spec.env));
    }
    apply_run(&mut patch, &args.run);
    if patch.is_empty() {
        return Err(CtlError::Usage(
            "nothing to change: give --version, --command, --arg, --env, --port-env or --artifact-url".into(),
        ));
    }
    let reply = ctx.api.send(Method::Patch, &path, Some(&Value::Object(patch))).await?;
    if ctx.out.json && !args.wait {
        return ctx.out.json_value(&reply.body);
    }
    let mut body = reply.body;
    let mut info: DeploymentInfo = decode(&body, "PATCH /v1/deployments/{id}")?;
    if !ctx.out.json && info.rollout == "InProgress" {
        ctx.out.line(&format!(
            "deployment {}: rolling update to generation {} started",
            info.deployment_id, info.generation
        ))?;
    }
    if args.wait {
        let mut last_progress = String::new();
        while info.rollout == "InProgress" {
            let progress = progress(&info);
            if progress != last_progress && !ctx.out.json {
                ctx.out.line(&progress)?;
                last_progress = progress;
            }
            tokio::time::sleep(WAIT_POLL).await;
            body = ctx.api.get(&path).await?.body;
            info = decode(&body, "GET /v1/deployments/{id}")?;
        }
    }
    if ctx.out.json {
        ctx.out.json_value(&body)?;
    } else {
        print_deployment(ctx, &info)?;
    }
    if info.rollout.starts_with("Failed") && args.wait {
        return Err(CtlError::Failed(format!("deployment {}: rolling update {}", info.deployment_id, info.rollout)));
    }
    Ok(())
}

/// `2/3 instances of generation 4 ready`.
fn progress(info: &DeploymentInfo) -> String {
    let ready = info.instances.iter().filter(|i| !i.standby && i.generation == info.generation && is_ready(i)).count();
    format!("{ready}/{} instances of generation {} ready", info.spec.replicas, info.generation)
}

/// A stop refused because others depend on the deployment: say how to do it anyway.
fn force_hint(e: CtlError) -> CtlError {
    match e {
        CtlError::Conflict(m) if m.contains("depend on service") => {
            CtlError::Conflict(format!("{m}; plumctl: --force"))
        }
        e => e,
    }
}

pub async fn remove(ctx: &Ctx, id: &str, force: bool) -> Result<()> {
    let path = format!("/v1/deployments/{}{}", encode(id), if force { "?force=true" } else { "" });
    let reply = ctx.api.send(Method::Delete, &path, None::<&()>).await.map_err(force_hint)?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    ctx.out.line(&format!("deployment {id} removed; its instances are being stopped"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn deploy_args(args: &[&str]) -> DeployArgs {
        let cli = Cli::try_parse_from(["plumctl", "deploy"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Deploy(d) => *d,
            other => panic!("not deploy: {other:?}"),
        }
    }

    #[test]
    fn spec_from_flags() {
        let args = deploy_args(&[
            "--name",
            "web",
            "--version",
            "1.2.0",
            "--replicas",
            "3",
            "--command",
            "/srv/web",
            "--arg",
            "--port",
            "--arg",
            "${PORT}",
            "--env",
            "MODE=prod",
            "--port-env",
            "HTTP_PORT",
            "--readiness-path",
            "/health",
            "--label",
            "zone=a",
            "--standby",
            "1",
            "--fencing",
            "stop",
            "--artifact-url",
            "http://files/web.tgz",
            "--artifact-sha256",
            &"a".repeat(64),
        ]);
        let spec = build_spec(&args, None).unwrap();
        let id = spec["requestId"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 8);
        assert_eq!(
            spec,
            json!({
                "name": "web", "version": "1.2.0", "replicas": 3, "command": "/srv/web",
                "args": ["--port", "${PORT}"], "env": {"MODE": "prod", "HTTP_PORT": "${PORT}"},
                "service": {"name": "web", "protocol": "http", "readiness": {"httpPath": "/health"}},
                "placement": {"labels": {"zone": "a"}}, "standby": 1, "fencing": "stop",
                "artifact": {"url": "http://files/web.tgz", "sha256": "a".repeat(64)},
                "requestId": id,
            })
        );
        // Without any service flag there is no service; replicas default to 1.
        let spec = build_spec(&deploy_args(&["--name", "w", "--version", "1", "--command", "/w"]), None).unwrap();
        assert!(spec.get("service").is_none());
        assert_eq!(spec["replicas"], 1);
    }

    #[test]
    fn spec_file_with_flags_on_top() {
        let file = r#"{"name": "echo", "version": "1.0.0", "replicas": 2, "command": "/bin/echo",
                       "env": {"A": "1"}, "requestId": "demo", "futureField": {"x": 1},
                       "service": {"name": "echo-svc", "protocol": "grpc"}}"#;
        let args = deploy_args(&["-f", "spec.json", "--replicas", "5", "--env", "B=2", "--readiness-path", "/ready"]);
        let spec = build_spec(&args, Some(file)).unwrap();
        assert_eq!(spec["replicas"], 5);
        assert_eq!(spec["version"], "1.0.0");
        assert_eq!(spec["env"], json!({"A": "1", "B": "2"}));
        assert_eq!(spec["requestId"], "demo");
        assert_eq!(spec["futureField"], json!({"x": 1}), "unknown fields reach the cluster");
        assert_eq!(
            spec["service"],
            json!({"name": "echo-svc", "protocol": "grpc", "readiness": {"httpPath": "/ready"}})
        );
        // A file alone: as written, plus a request id.
        let spec = build_spec(&deploy_args(&["-f", "spec.json"]), Some(r#"{"name":"x","replicas":0}"#)).unwrap();
        assert_eq!(spec["replicas"], 0);
        assert!(spec["requestId"].is_string());
    }

    #[test]
    fn bad_spec_files_are_usage_errors() {
        let args = deploy_args(&["-f", "spec.json"]);
        for text in ["", "not json", "[1, 2]", r#"{"replicas": "three"}"#, r#"{"env": ["A=1"]}"#] {
            let err = build_spec(&args, Some(text)).expect_err(text);
            assert_eq!(err.exit_code(), 2, "{text}: {err}");
        }
        let missing = read_spec(Path::new("/nonexistent/plumctl/spec.json")).unwrap_err();
        assert_eq!(missing.exit_code(), 2);
    }

    #[test]
    fn instance_rows() {
        let i = InstanceInfo {
            instance_id: "web-1".into(),
            node_id: String::new(),
            phase: "Pending".into(),
            port: 0,
            healthy: false,
            restarts: 0,
            created_at: 0,
            updated_at: 0,
            generation: 1,
            standby: true,
            waiting_on: vec![],
        };
        let text = instances_table(&[i]).render(false);
        let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row, ["web-1", "(none)", "Pending", "-", "unhealthy", "0", "1", "standby", "-"]);
    }
}
