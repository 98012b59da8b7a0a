//! `/v1/deployments*`: what should run where; `/v1/assignments` and `/v1/instances/status`,
//! the routes Plum's Go agent polls and reports to.
//!
//! Creating a deployment needs a placement decision, which only the leader makes: a follower
//! passes the request on. The leader places the instances with its current view and proposes
//! deployment and placements as one entry.

use std::collections::BTreeSet;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use plum_types::{DeploymentRequest, InstanceStatusReport, VersionFilter};
use serde_json::json;

use super::error::ApiError;
use super::extract::{JsonBody, Query};
use super::validate::{self, MAX_ID, MAX_SHORT};
use super::{INDEX_HEADER, Shared, body_and_parts, on_leader, scope, watch_timeout, with_index};
use crate::auth::Caller;
use crate::cluster::unix_now_ms;
use crate::scheduler::Scheduler;
use crate::state::limits::MAX_REPLICAS;
use crate::state::{CommandResult, InstanceReport, Op, Placed, deps};

/// Arguments and environment entries a deployment may carry.
const MAX_ARGS: usize = 256;
const MAX_ARG: usize = 4096;
/// Dependencies a deployment may declare, and the longest `timeoutMs` (a day).
const MAX_DEPENDENCIES: usize = 64;
const MAX_DEPENDENCY_TIMEOUT_MS: u64 = 86_400_000;

/// `dependsOn`, `configRefs` and `restart`: 400 when not acceptable.
fn check_dependencies(spec: &DeploymentRequest) -> Result<(), ApiError> {
    if spec.depends_on.len() > MAX_DEPENDENCIES {
        return Err(ApiError::bad(format!("more than {MAX_DEPENDENCIES} entries in `dependsOn`")));
    }
    for (i, d) in spec.depends_on.iter().enumerate() {
        validate::name(&format!("dependsOn[{i}].service"), &d.service, MAX_ID)?;
        if let Some(v) = &d.version {
            validate::text(&format!("dependsOn[{i}].version"), v, MAX_SHORT)?;
            VersionFilter::parse(v).map_err(|e| ApiError::bad(format!("dependsOn[{i}].version: {e}")))?;
        }
        if d.min_healthy as usize > MAX_REPLICAS {
            return Err(ApiError::bad(format!("dependsOn[{i}].minHealthy above {MAX_REPLICAS}")));
        }
        if d.timeout_ms > MAX_DEPENDENCY_TIMEOUT_MS {
            return Err(ApiError::bad(format!("dependsOn[{i}].timeoutMs above {MAX_DEPENDENCY_TIMEOUT_MS}")));
        }
    }
    if spec.config_refs.len() > MAX_DEPENDENCIES {
        return Err(ApiError::bad(format!("more than {MAX_DEPENDENCIES} entries in `configRefs`")));
    }
    for (i, c) in spec.config_refs.iter().enumerate() {
        validate::name(&format!("configRefs[{i}].namespace"), &c.namespace, MAX_ID)?;
        validate::name(&format!("configRefs[{i}].key"), &c.key, MAX_ID)?;
        if c.env.is_none() && c.file.is_none() {
            return Err(ApiError::bad(format!("configRefs[{i}] needs `env` or `file`")));
        }
        if let Some(var) = &c.env {
            let mut chars = var.chars();
            let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || var.len() > MAX_SHORT {
                return Err(ApiError::bad(format!("configRefs[{i}].env `{var}` is not an environment variable name")));
            }
        }
        if let Some(file) = &c.file {
            validate::text(&format!("configRefs[{i}].file"), file, MAX_SHORT)?;
            let plain = std::path::Path::new(file).components().all(|c| matches!(c, std::path::Component::Normal(_)));
            if file.is_empty() || !plain {
                return Err(ApiError::bad(format!(
                    "configRefs[{i}].file `{file}` must be a relative path without `..`"
                )));
            }
        }
    }
    if let Some(r) = spec.restart.as_deref().filter(|r| !matches!(*r, "always" | "on-failure" | "never")) {
        return Err(ApiError::bad(format!("`restart` must be \"always\", \"on-failure\" or \"never\", not `{r}`")));
    }
    Ok(())
}

/// What an apply refused, as the API answers it: `Busy` and `Needed` 409, `Invalid` 400.
fn refused(result: CommandResult) -> Result<CommandResult, ApiError> {
    match result {
        CommandResult::Busy { reason } => Err(ApiError::Conflict { message: reason, detail: None }),
        CommandResult::Invalid { reason } => Err(ApiError::BadRequest(reason)),
        CommandResult::Needed { service, by } => Err(ApiError::Conflict {
            message: format!(
                "deployments {} depend on service `{service}`: stopping it would break them (`force=true` does it anyway)",
                by.join(", ")
            ),
            detail: Some(json!({ "service": service, "dependents": by })),
        }),
        other => Ok(other),
    }
}

/// Checks a deployment request: 400 and nothing proposed when it is not acceptable.
fn check(spec: &DeploymentRequest) -> Result<(), ApiError> {
    validate::name("name", &spec.name, MAX_SHORT)?;
    if !spec.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(ApiError::bad("`name` may hold only letters, digits, '-', '_' and '.'"));
    }
    validate::text("version", &spec.version, MAX_SHORT)?;
    if spec.replicas as usize > MAX_REPLICAS {
        return Err(ApiError::bad(format!("`replicas` above {MAX_REPLICAS}")));
    }
    let artifact = spec.artifact.as_ref().filter(|a| !a.url.is_empty());
    if spec.command.is_empty() {
        return Err(ApiError::bad("`command` is required (with an `artifact`, a path inside it)"));
    }
    if artifact.is_none() && !spec.command.starts_with('/') {
        return Err(ApiError::bad("`command` must be an absolute path unless it runs from an `artifact`"));
    }
    validate::text("command", &spec.command, MAX_ARG)?;
    if spec.args.len() > MAX_ARGS || spec.env.len() > MAX_ARGS {
        return Err(ApiError::bad(format!("more than {MAX_ARGS} args or env entries")));
    }
    for (i, a) in spec.args.iter().enumerate() {
        validate::text(&format!("args[{i}]"), a, MAX_ARG)?;
    }
    for (k, v) in &spec.env {
        validate::name("env key", k, MAX_SHORT)?;
        validate::text("env value", v, MAX_ARG)?;
    }
    if let Some(a) = artifact {
        validate::text("artifact.url", &a.url, MAX_ARG)?;
        if a.sha256.len() != 64 || !a.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ApiError::bad("`artifact.sha256` must be 64 hex digits"));
        }
    }
    if let Some(svc) = &spec.service {
        validate::name("service.name", &svc.name, MAX_ID)?;
        validate::text("service.protocol", &svc.protocol, MAX_SHORT)?;
    }
    validate::labels("placement.labels", &spec.placement.labels)?;
    if let Some(f) = spec.fencing.as_deref().filter(|f| !matches!(*f, "stop" | "none")) {
        return Err(ApiError::bad(format!("`fencing` must be \"stop\" or \"none\", not `{f}`")));
    }
    if let Some(id) = &spec.request_id {
        validate::name("requestId", id, MAX_SHORT)?;
    }
    check_dependencies(spec)?;
    // Ids must stay addressable: the deployment id is `name-requestId` and its instances add a
    // suffix (`-standby-7`, `-g12-3`); every id of the API is at most MAX_ID characters.
    let id_len = spec.name.len() + 1 + spec.request_id.as_ref().map_or(8, String::len);
    if id_len > MAX_ID - INSTANCE_SUFFIX_ROOM {
        return Err(ApiError::bad(format!(
            "`name` and `requestId` make a {id_len}-character deployment id; at most {} leaves room for instance ids",
            MAX_ID - INSTANCE_SUFFIX_ROOM
        )));
    }
    Ok(())
}

/// Characters an instance id may add to its deployment's id (`-g<generation>-<n>` at most).
const INSTANCE_SUFFIX_ROOM: usize = 32;

/// The deployment's id: from the client's request id (so a retried create finds the first
/// one), or fresh.
fn deployment_id(spec: &DeploymentRequest) -> String {
    match &spec.request_id {
        Some(id) => format!("{}-{id}", spec.name),
        None => format!("{}-{:08x}", spec.name, rand::random::<u32>()),
    }
}

pub async fn create(State(state): State<Shared>, req: Request) -> Result<Response, ApiError> {
    let (headers, path, bytes) = body_and_parts(req).await?;
    let spec: DeploymentRequest =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))?;
    check(&spec)?;
    // Every instance, warm standbys too, is placed below before proposing: bounded like
    // `Op::check` bounds a forwarded one (unbounded, `standby: 4294967295` exhausted memory).
    if spec.replicas as usize + spec.standby as usize > MAX_REPLICAS {
        return Err(ApiError::bad(format!("`replicas` plus `standby` above {MAX_REPLICAS}")));
    }
    if let Some(resp) = on_leader(&state, &headers, &path, reqwest::Method::POST, bytes).await {
        return Ok(resp);
    }
    let deployment_id = deployment_id(&spec);
    // A dependency cycle is refused by the entry itself (`Invalid`, a 400 below).
    let (placements, standby): (Vec<Placed>, Vec<Placed>) = state.cluster.with_registry(|r| {
        // Dependencies that do not hold yet: every instance waits without a node; the leader
        // places them once they hold (`liveness::duties`).
        let gated = !deps::unmet(r, &spec, 0).is_empty();
        let mut scheduler = Scheduler::new(r, BTreeSet::new());
        let mut place = |id: String| Placed {
            node_id: if gated { String::new() } else { scheduler.place(&deployment_id, &spec.placement.labels) },
            instance_id: id,
        };
        let active = (0..spec.replicas).map(|i| place(format!("{deployment_id}-{i}"))).collect();
        let standby = (0..spec.standby).map(|i| place(format!("{deployment_id}-standby-{i}"))).collect();
        (active, standby)
    });
    let op = Op::CreateDeployment { deployment_id: deployment_id.clone(), spec: Box::new(spec), placements, standby };
    let applied = state.cluster.write(op).await?;
    refused(applied.result)?;
    let info = state.cluster.with_registry(|r| r.deployment(&deployment_id, unix_now_ms()));
    let info = info.ok_or_else(|| ApiError::NotFound(format!("deployment `{deployment_id}` vanished")))?;
    Ok(with_index(applied.index, (StatusCode::CREATED, Json(info))))
}

/// `PATCH /v1/deployments/{id}`: the fields given replace the current ones. A new `replicas`
/// scales at once; a change of what runs (version, command, args, env, artifact, service)
/// starts a rolling update (409 while one is in progress). Scaling to 0 replicas is refused
/// (409) while other deployments need its service, unless `?force=true`.
pub async fn update(
    State(state): State<Shared>,
    Path(id): Path<String>,
    query: Query,
    req: Request,
) -> Result<Response, ApiError> {
    let (headers, path, bytes) = body_and_parts(req).await?;
    let patch: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))?;
    let Some(fields) = patch.as_object() else { return Err(ApiError::bad("the body must be a JSON object")) };
    if let Some(fixed) = ["name", "requestId"].into_iter().find(|k| fields.contains_key(*k)) {
        return Err(ApiError::bad(format!("`{fixed}` cannot be changed")));
    }
    if let Some(resp) = on_leader(&state, &headers, &path, reqwest::Method::PATCH, bytes.clone()).await {
        return Ok(resp);
    }
    let current = state.cluster.with_registry(|r| r.deployment_record(&id).map(|d| d.spec.clone()));
    let current = current.ok_or_else(|| ApiError::NotFound(format!("deployment `{id}` not found")))?;
    let mut merged = serde_json::to_value(&current).map_err(|e| ApiError::bad(e.to_string()))?;
    for (k, v) in fields {
        merged[k] = v.clone();
    }
    let spec: DeploymentRequest =
        serde_json::from_value(merged).map_err(|e| ApiError::bad(format!("invalid deployment: {e}")))?;
    check(&spec)?;
    let unscaled = |s: &DeploymentRequest| DeploymentRequest { replicas: 0, ..s.clone() };
    let changed = unscaled(&spec) != unscaled(&current);
    if changed {
        // The entry refuses a cycle too, but only after the scale below would have committed.
        let cycle = state.cluster.with_registry(|r| deps::cycle_with(r, &id, &spec));
        if let Some(cycle) = cycle {
            return Err(ApiError::bad(format!("dependency cycle: {}", cycle.join(" -> "))));
        }
    }
    if spec.replicas != current.replicas {
        let op = state.cluster.with_registry(|r| scale_op(r, &id, &spec, query.flag("force")));
        refused(state.cluster.write(op).await?.result)?;
    }
    if changed {
        let in_place = what_runs(&spec) == what_runs(&current);
        let op = Op::UpdateDeployment { deployment_id: id.clone(), spec: Box::new(spec), in_place };
        refused(state.cluster.write(op).await?.result)?;
    }
    state.read_found(&Query::default(), &format!("deployment `{id}`"), |r| r.deployment(&id, unix_now_ms())).await
}

/// `POST /v1/deployments/{id}/rollback`: a rolling update back to the spec the last one replaced
/// (`rollbackTo`), with the current number of replicas. `409` when there is none, when the
/// deployment already runs it, or while an update is in progress.
pub async fn rollback(State(state): State<Shared>, Path(id): Path<String>, req: Request) -> Result<Response, ApiError> {
    let (headers, path, bytes) = body_and_parts(req).await?;
    if let Some(resp) = on_leader(&state, &headers, &path, reqwest::Method::POST, bytes).await {
        return Ok(resp);
    }
    let found = state.cluster.with_registry(|r| r.deployment_record(&id).map(|d| (d.spec.clone(), d.rollback.clone())));
    let (current, to) = found.ok_or_else(|| ApiError::NotFound(format!("deployment `{id}` not found")))?;
    let conflict = |message: String| ApiError::Conflict { message, detail: None };
    let Some(to) = to else {
        return Err(conflict(format!(
            "deployment `{id}` has not been updated: there is no earlier spec to roll back to"
        )));
    };
    let spec = DeploymentRequest { replicas: current.replicas, request_id: current.request_id.clone(), ..to };
    if spec == current {
        return Err(conflict(format!("deployment `{id}` already runs the spec it would roll back to")));
    }
    let op = Op::UpdateDeployment { deployment_id: id.clone(), spec: Box::new(spec), in_place: false };
    refused(state.cluster.write(op).await?.result)?;
    tracing::info!(deployment = %id, "rolling back to the previous spec");
    state.read_found(&Query::default(), &format!("deployment `{id}`"), |r| r.deployment(&id, unix_now_ms())).await
}

/// What an instance runs with: a change in it starts a rolling update. The rest (`replicas`,
/// `dependsOn`, `rollOnConfigChange`) only the controllers read: it changes in place.
fn what_runs(s: &DeploymentRequest) -> DeploymentRequest {
    DeploymentRequest { replicas: 0, depends_on: Vec::new(), roll_on_config_change: false, ..s.clone() }
}

/// Instances to add (placed here, on the leader) or remove (the last ones by id) to reach
/// `spec.replicas`.
fn scale_op(r: &crate::state::Registry, id: &str, spec: &DeploymentRequest, force: bool) -> Op {
    let mut ids: Vec<String> =
        r.assignment_records().filter(|a| a.deployment_id == id).map(|a| a.instance_id.clone()).collect();
    ids.sort();
    let want = spec.replicas as usize;
    let remove: Vec<String> = ids.iter().skip(want).cloned().collect();
    let mut scheduler = Scheduler::new(r, BTreeSet::new());
    // Added instances start like created ones: not before their dependencies and config hold.
    let gated = !deps::unmet(r, spec, 0).is_empty();
    let mut add = Vec::new();
    let mut n = 0;
    while ids.len() + add.len() < want {
        let instance_id = format!("{id}-s{n}");
        n += 1;
        if ids.contains(&instance_id) {
            continue;
        }
        let node_id = if gated { String::new() } else { scheduler.place(id, &spec.placement.labels) };
        add.push(Placed { instance_id, node_id });
    }
    Op::ScaleDeployment { deployment_id: id.to_string(), replicas: spec.replicas, add, remove, force }
}

pub async fn list(State(state): State<Shared>, query: Query) -> Result<Response, ApiError> {
    state.read(&query, |r| r.deployments(unix_now_ms())).await
}

pub async fn get_one(State(state): State<Shared>, query: Query, Path(id): Path<String>) -> Result<Response, ApiError> {
    state.read_found(&query, &format!("deployment `{id}`"), |r| r.deployment(&id, unix_now_ms())).await
}

pub async fn remove(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    validate::name("deploymentId", &id, MAX_ID)?;
    let op = Op::DeleteDeployment { deployment_id: id.clone(), force: query.flag("force") };
    let applied = state.write(&headers, &query, &uri, op).await?;
    match refused(applied.result)? {
        CommandResult::NotFound => Err(ApiError::NotFound(format!("deployment `{id}` not found"))),
        _ => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `GET /v1/assignments?nodeId=`: what the node should run (the Go agent's poll). With
/// `watch=true&index=N`, a long poll that answers once placements changed after index N (or
/// on timeout); `x-plum-index` is the index to pass next.
pub async fn assignments(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
) -> Result<Response, ApiError> {
    let node = query.get("nodeId").ok_or_else(|| ApiError::bad("query parameter `nodeId` is required"))?.to_string();
    validate::name("nodeId", &node, MAX_ID)?;
    // Every parameter is checked before anything is written: a refused request changes nothing.
    let after = query.number("index")?.unwrap_or(0);
    let timeout = watch_timeout(&query)?;
    mark_agent(&state, &headers, &query, &uri, &node).await?;
    let mut index = state.read_point(&query).await?;
    let mut change = state.cluster.with_registry(|r| r.placement_index());
    if query.flag("watch") {
        change = state.wait_for_change(after, timeout, |r| r.placement_index()).await;
        index = state.cluster.applied_index();
    }
    let items = state.cluster.with_registry(|r| r.assignments_of(&node));
    let mut resp = with_index(index, Json(json!({ "items": items })));
    resp.headers_mut().insert(INDEX_HEADER, HeaderValue::from(change));
    Ok(resp)
}

/// The rule for agents that never say `canRunInstances` (Plum's Go agent): a node that asks
/// for its assignments runs an agent, so it becomes a placement target. Load tools only
/// heartbeat and never ask, so their nodes never are.
async fn mark_agent(state: &Shared, headers: &HeaderMap, query: &Query, uri: &Uri, node: &str) -> Result<(), ApiError> {
    let known = state.cluster.with_registry(|r| r.node_record(node).filter(|n| !n.can_run).cloned());
    let Some(n) = known else { return Ok(()) };
    tracing::info!(id = state.cluster.id, node, "node asked for assignments: it runs an agent, now a placement target");
    let op = Op::UpsertNode {
        node_id: n.node_id,
        ip: n.ip,
        labels: n.labels,
        can_run: true,
        ttl_ms: n.ttl_ms,
        capacity: n.capacity,
    };
    state.write(headers, query, uri, op).await?;
    Ok(())
}

/// `GET /v1/stream?nodeId=`: server-sent events that wake an agent when placements change
/// (Plum's Go agent listens to it, then polls `/v1/assignments`). Each event carries the
/// placement index; a keep-alive comment every 15 s holds idle connections open.
pub async fn stream(State(state): State<Shared>, query: Query) -> Result<Response, ApiError> {
    let node = query.get("nodeId").ok_or_else(|| ApiError::bad("query parameter `nodeId` is required"))?.to_string();
    validate::name("nodeId", &node, MAX_ID)?;
    let start = state.cluster.with_registry(|r| r.placement_index());
    let events = futures::stream::unfold((state, start, true), |(state, after, first)| async move {
        let mut index = after;
        while !first && index <= after {
            index = state.wait_for_change(after, super::WATCH_MAX, |r| r.placement_index()).await;
        }
        let event = Event::default().event("assignments").data(index.to_string());
        Some((Ok::<_, std::convert::Infallible>(event), (state, index, false)))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))).into_response())
}

/// `POST /v1/instances/status`: an agent's report on one instance.
pub async fn report(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Extension(caller): Extension<Caller>,
    JsonBody(r): JsonBody<InstanceStatusReport>,
) -> Result<Response, ApiError> {
    validate::name("instanceId", &r.instance_id, MAX_ID)?;
    validate::name("phase", &r.phase, MAX_SHORT)?;
    validate::text("nodeId", &r.node_id, MAX_ID)?;
    scope::instance(&state, &caller, &r.instance_id, Some(&r.node_id).filter(|n| !n.is_empty()).map(String::as_str))?;
    let report = InstanceReport {
        instance_id: r.instance_id,
        node_id: r.node_id,
        phase: r.phase,
        port: r.port,
        healthy: r.healthy,
        exit_code: r.exit_code,
    };
    let applied = state.write(&headers, &query, &uri, Op::ReportInstance { report }).await?;
    match applied.result {
        CommandResult::NotFound => Err(ApiError::NotFound("no such assigned instance".into())),
        _ => Ok(Json(json!({})).into_response()),
    }
}
