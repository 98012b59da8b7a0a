//! `/v1/services*`: registration, instance heartbeats (one at a time or in batches),
//! deregistration, service names.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::{Extension, Json};
use plum_types::{
    BatchResponse, EndpointSpec, HealthReport, HeartbeatBatch, RegisterBatch, RegisterRequest, ServiceHeartbeat,
};

use super::error::ApiError;
use super::extract::{JsonBody, Query};
use super::validate::{self, MAX_BATCH, MAX_ENDPOINTS, MAX_ID, MAX_SHORT};
use super::{Shared, scope};
use crate::auth::Caller;
use crate::cluster::codec;
use crate::config::LivenessConfig;
use crate::state::{EndpointRecord, LeaseKind, Op, Registry};

fn endpoint_record(i: usize, spec: &EndpointSpec, instance_ip: &str) -> Result<EndpointRecord, ApiError> {
    let field = |f: &str| format!("endpoints[{i}].{f}");
    validate::name(&field("serviceName"), &spec.service_name, MAX_ID)?;
    let port = validate::port(&field("port"), spec.port)?;
    validate::text(&field("protocol"), &spec.protocol, MAX_SHORT)?;
    validate::text(&field("version"), &spec.version, MAX_SHORT)?;
    validate::labels(&field("labels"), &spec.labels)?;
    // API.md: the top-level address wins; an endpoint's own counts only when there is none.
    let ip = Some(instance_ip.to_string()).filter(|ip| !ip.is_empty()).or_else(|| spec.ip.clone()).unwrap_or_default();
    validate::text(&field("ip"), &ip, MAX_ID)?;
    Ok(EndpointRecord {
        ip,
        service_name: spec.service_name.clone(),
        port,
        protocol: spec.protocol.clone(),
        version: spec.version.clone(),
        labels: spec.labels.clone(),
        healthy: spec.healthy.unwrap_or(true),
    })
}

/// Checks a registration and turns it into the command that records it.
fn register_op(req: RegisterRequest, live: &LivenessConfig) -> Result<Op, ApiError> {
    validate::name("instanceId", &req.instance_id, MAX_ID)?;
    if req.endpoints.len() > MAX_ENDPOINTS {
        return Err(ApiError::bad(format!("more than {MAX_ENDPOINTS} endpoints")));
    }
    // `ip` and `nodeId` come from the top level, or from the endpoints when a client sends them there.
    let pick = |top: &Option<String>, per: fn(&EndpointSpec) -> &Option<String>| {
        top.clone()
            .filter(|s| !s.is_empty())
            .or_else(|| req.endpoints.iter().find_map(|e| per(e).clone().filter(|s| !s.is_empty())))
    };
    let ip = pick(&req.ip, |e| &e.ip).unwrap_or_default();
    let node_id = pick(&req.node_id, |e| &e.node_id).unwrap_or_default();
    if ip.is_empty() && !req.endpoints.is_empty() {
        return Err(ApiError::bad("`ip` is required (top level or per endpoint)"));
    }
    validate::text("ip", &ip, MAX_ID)?;
    validate::text("nodeId", &node_id, MAX_ID)?;
    if req.upstreams.len() > MAX_ENDPOINTS {
        return Err(ApiError::bad(format!("more than {MAX_ENDPOINTS} upstreams")));
    }
    for (i, u) in req.upstreams.iter().enumerate() {
        validate::name(&format!("upstreams[{i}]"), u, MAX_ID)?;
    }
    let top_ip = req.ip.clone().unwrap_or_default();
    let endpoints =
        req.endpoints.iter().enumerate().map(|(i, e)| endpoint_record(i, e, &top_ip)).collect::<Result<Vec<_>, _>>()?;
    Ok(Op::RegisterInstance {
        instance_id: req.instance_id,
        node_id,
        ip,
        endpoints,
        ttl_ms: live.bounded_ttl_ms(req.ttl_ms),
        replace: req.replace,
        upstreams: req.upstreams,
    })
}

pub async fn register(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> Result<StatusCode, ApiError> {
    let op = register_op(req, &state.cluster.config.liveness)?;
    registration_scope(&state, &caller, &op)?;
    state.write_upsert(&headers, &query, &uri, op).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An agent token registers only on its own node, only its node's instances.
fn registration_scope(state: &Shared, caller: &Caller, op: &Op) -> Result<(), ApiError> {
    match op {
        Op::RegisterInstance { instance_id, node_id, .. } => scope::instance(state, caller, instance_id, Some(node_id)),
        _ => Ok(()),
    }
}

/// A service heartbeat, checked: the health it reports and the TTL it declares (bounded).
#[derive(Debug)]
struct CheckedHeartbeat {
    instance_id: String,
    reports: Vec<HealthReport>,
    ttl_ms: Option<u64>,
}

/// Checks a heartbeat; the single and the batch call share it.
fn check_heartbeat(hb: ServiceHeartbeat, live: &LivenessConfig) -> Result<CheckedHeartbeat, ApiError> {
    validate::name("instanceId", &hb.instance_id, MAX_ID)?;
    let reports = match &hb.health {
        Some(list) => {
            if list.len() > MAX_ENDPOINTS {
                return Err(ApiError::bad(format!("more than {MAX_ENDPOINTS} health entries")));
            }
            let mut reports = Vec::with_capacity(list.len());
            for (i, e) in list.iter().enumerate() {
                validate::name(&format!("health[{i}].serviceName"), &e.service_name, MAX_ID)?;
                let port = if e.port == 0 { None } else { Some(validate::port(&format!("health[{i}].port"), e.port)?) };
                reports.push(HealthReport {
                    service_name: e.service_name.clone(),
                    port,
                    healthy: e.healthy.unwrap_or(true),
                });
            }
            reports
        }
        None => Vec::new(),
    };
    let ttl_ms = hb.ttl_ms.map(|t| live.bounded_ttl_ms(Some(t)));
    Ok(CheckedHeartbeat { instance_id: hb.instance_id, reports, ttl_ms })
}

impl CheckedHeartbeat {
    /// Whether it changes something (health, TTL), so is a write rather than a renewal.
    /// `None`: the instance is unknown here.
    fn needs_write(&self, r: &Registry) -> Option<bool> {
        let inst = r.instance_record(&self.instance_id)?;
        Some(
            self.ttl_ms.is_some_and(|t| t != inst.ttl_ms)
                || self.reports.iter().any(|rep| {
                    inst.endpoints.iter().any(|ep| {
                        ep.service_name == rep.service_name
                            && rep.port.is_none_or(|p| p == ep.port)
                            && ep.healthy != rep.healthy
                    })
                }),
        )
    }

    fn op(&self) -> Op {
        Op::SetHealth { instance_id: self.instance_id.clone(), reports: self.reports.clone(), ttl_ms: self.ttl_ms }
    }
}

pub async fn heartbeat(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Extension(caller): Extension<Caller>,
    JsonBody(hb): JsonBody<ServiceHeartbeat>,
) -> Result<StatusCode, ApiError> {
    let hb = check_heartbeat(hb, &state.cluster.config.liveness)?;
    scope::instance(&state, &caller, &hb.instance_id, None)?;
    // A health or TTL change is a write; an unchanged live instance only renews (batched).
    // An instance this replica does not know yet (its registration may still be on the way
    // here) is renewed anyway: the leader ignores ids it does not know.
    if state.cluster.with_registry(|r| hb.needs_write(r)) == Some(true) {
        state.write(&headers, &query, &uri, hb.op()).await?;
    } else {
        state.renew(Vec::new(), vec![hb.instance_id]).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A batch's ops make one log entry at most this big: a proposal forwarded to the leader must
/// fit the internal routes' body limit (2 MiB). Endpoints carry their instance's address, so
/// an entry can outgrow the request that asked for it.
const MAX_BATCH_ENTRY: usize = 1024 * 1024;

/// Checks every item of a batch as the single call does. The first bad one refuses the whole
/// batch, named by its index.
fn check_items<T, U>(items: Vec<T>, check: impl Fn(T) -> Result<U, ApiError>) -> Result<Vec<U>, ApiError> {
    if items.len() > MAX_BATCH {
        return Err(ApiError::bad(format!("{} items: a batch holds at most {MAX_BATCH}", items.len())));
    }
    items.into_iter().enumerate().map(|(i, item)| check(item).map_err(|e| e.at_item(i))).collect()
}

/// Several ops as one log entry.
fn batch_op(ops: Vec<Op>) -> Result<Op, ApiError> {
    let op = Op::Batch { ops };
    let size = codec::encode(&op).map_or(usize::MAX, |b| b.len());
    if size > MAX_BATCH_ENTRY {
        return Err(ApiError::bad(format!(
            "the batch makes a {size}-byte log entry, above {MAX_BATCH_ENTRY}: send fewer items per call"
        )));
    }
    Ok(op)
}

/// The TTL in force for an instance that stored `ttl_ms` (0: the default).
fn instance_ttl_ms(state: &Shared, ttl_ms: u64) -> u64 {
    state.tracker.ttl_of(LeaseKind::Instance, ttl_ms).as_millis() as u64
}

/// The heartbeat interval to advise for these instances: from the shortest TTL in force among
/// those this replica knows.
fn advised_interval(state: &Shared, ids: &[String]) -> Option<u64> {
    let shortest = state.cluster.with_registry(|r| {
        ids.iter().filter_map(|id| r.instance_record(id)).map(|i| instance_ttl_ms(state, i.ttl_ms)).min()
    });
    shortest.map(LivenessConfig::advised_interval_ms)
}

/// `POST /v1/services/register/batch`: all items in one log entry, all or nothing.
pub async fn register_batch(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Extension(caller): Extension<Caller>,
    JsonBody(batch): JsonBody<RegisterBatch>,
) -> Result<Json<BatchResponse>, ApiError> {
    let ops = check_items(batch.items, |req| {
        let op = register_op(req, &state.cluster.config.liveness)?;
        registration_scope(&state, &caller, &op).map(|()| op)
    })?;
    let count = ops.len();
    // From the TTLs these registrations put in force (this replica may not have applied them
    // yet when the leader answers).
    let ttls = ops.iter().filter_map(|op| match op {
        Op::RegisterInstance { ttl_ms, .. } => Some(instance_ttl_ms(&state, *ttl_ms)),
        _ => None,
    });
    let interval = ttls.min().map(LivenessConfig::advised_interval_ms);
    if count > 0 {
        state.write(&headers, &query, &uri, batch_op(ops)?).await?;
    }
    Ok(Json(BatchResponse { count, unknown: None, heartbeat_interval_ms: interval }))
}

/// What a heartbeat batch does with each item.
#[derive(Debug, Default, PartialEq, Eq)]
struct HeartbeatPlan {
    /// Items that change something: written, all in one entry.
    writes: Vec<usize>,
    /// Ids to renew through the batcher.
    renew: Vec<String>,
    /// Ids unknown here (sorted, once each): nothing is recorded for them.
    unknown: Vec<String>,
}

fn plan_heartbeats(items: &[CheckedHeartbeat], r: &Registry) -> HeartbeatPlan {
    let mut plan = HeartbeatPlan::default();
    let mut unknown = std::collections::BTreeSet::new();
    for (i, hb) in items.iter().enumerate() {
        match hb.needs_write(r) {
            Some(true) => plan.writes.push(i),
            Some(false) => plan.renew.push(hb.instance_id.clone()),
            None => {
                unknown.insert(hb.instance_id.clone());
            }
        }
    }
    plan.unknown = unknown.into_iter().collect();
    plan
}

/// `POST /v1/services/heartbeat/batch`: renewals ride the renewal batcher, health and TTL
/// changes make one log entry; ids the cluster does not know come back in `unknown`.
pub async fn heartbeat_batch(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Extension(caller): Extension<Caller>,
    JsonBody(batch): JsonBody<HeartbeatBatch>,
) -> Result<Json<BatchResponse>, ApiError> {
    let items = check_items(batch.items, |hb| {
        let hb = check_heartbeat(hb, &state.cluster.config.liveness)?;
        scope::instance(&state, &caller, &hb.instance_id, None).map(|()| hb)
    })?;
    let mut plan = state.cluster.with_registry(|r| plan_heartbeats(&items, r));
    if !plan.unknown.is_empty() {
        // This replica may lag the leader: be sure before telling the client to register again.
        state.cluster.read_barrier().await?;
        plan = state.cluster.with_registry(|r| plan_heartbeats(&items, r));
    }
    let HeartbeatPlan { writes, renew: renewals, unknown } = plan;
    let count = writes.len() + renewals.len();
    // Built before anything is sent: a batch refused here renews nothing either.
    let op = match writes.iter().map(|&i| items[i].op()).collect::<Vec<_>>() {
        ops if ops.is_empty() => None,
        ops => Some(batch_op(ops)?),
    };
    let write = async {
        if let Some(op) = op {
            state.write(&headers, &query, &uri, op).await?;
        }
        Ok::<_, ApiError>(())
    };
    let renewal = async { if renewals.is_empty() { Ok(()) } else { state.renew(Vec::new(), renewals).await } };
    let (written, renewed) = tokio::join!(write, renewal);
    written?;
    renewed?;
    let ids: Vec<String> = items.iter().map(|hb| hb.instance_id.clone()).collect();
    let heartbeat_interval_ms = advised_interval(&state, &ids);
    Ok(Json(BatchResponse { count, unknown: Some(unknown), heartbeat_interval_ms }))
}

pub async fn deregister(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Extension(caller): Extension<Caller>,
) -> Result<StatusCode, ApiError> {
    let id =
        query.get("instanceId").ok_or_else(|| ApiError::bad("query parameter `instanceId` is required"))?.to_string();
    validate::name("instanceId", &id, MAX_ID)?;
    scope::instance(&state, &caller, &id, None)?;
    state.write(&headers, &query, &uri, Op::DeregisterInstance { instance_id: id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list(State(state): State<Shared>, query: Query) -> Result<Response, ApiError> {
    state.read(&query, |r| r.services()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, port: u32) -> EndpointSpec {
        EndpointSpec { service_name: name.into(), port, ..EndpointSpec::default() }
    }

    #[test]
    fn ip_and_node_fall_back_to_the_endpoints() {
        let mut e = spec("svc", 80);
        e.ip = Some("10.0.0.1".into());
        e.node_id = Some("n1".into());
        let req = RegisterRequest { instance_id: "i1".into(), endpoints: vec![e], ..RegisterRequest::default() };
        let Op::RegisterInstance { ip, node_id, .. } = register_op(req, &live()).unwrap() else { panic!() };
        assert_eq!((ip.as_str(), node_id.as_str()), ("10.0.0.1", "n1"));
    }

    fn live() -> LivenessConfig {
        let ms = std::time::Duration::from_millis;
        LivenessConfig {
            node_ttl: ms(15_000),
            instance_ttl: ms(15_000),
            min_ttl: ms(500),
            max_ttl: ms(60_000),
            dead_retention: ms(3_600_000),
            mass_loss_share: 0.5,
            renew_flush: ms(100),
            sweep: ms(50),
            heartbeat_batch: ms(5),
        }
    }

    #[test]
    fn bad_registrations_are_refused() {
        let ok = |eps: Vec<EndpointSpec>| RegisterRequest {
            instance_id: "i".into(),
            ip: Some("1.2.3.4".into()),
            endpoints: eps,
            ..RegisterRequest::default()
        };
        let op = |r| register_op(r, &live());
        assert!(op(RegisterRequest::default()).is_err(), "missing instanceId");
        assert!(op(ok(vec![spec("", 80)])).is_err(), "missing serviceName");
        assert!(op(ok(vec![spec("s", 0)])).is_err(), "port 0");
        assert!(op(ok(vec![spec("s", 65536)])).is_err(), "port too big");
        assert!(op(RegisterRequest { ip: None, ..ok(vec![spec("s", 1)]) }).is_err(), "no ip anywhere");
        assert!(op(ok(vec![spec("s", 1)])).is_ok());
    }

    fn registered(ids: &[&str]) -> Registry {
        let mut r = Registry::default();
        for (i, id) in ids.iter().enumerate() {
            let req = RegisterRequest {
                instance_id: id.to_string(),
                ip: Some("10.0.0.1".into()),
                endpoints: vec![spec("web", 80)],
                ..RegisterRequest::default()
            };
            let cmd = crate::state::Command { now_ms: 1_000, op: register_op(req, &live()).unwrap() };
            r.apply(i as u64 + 1, &cmd, &mut plum_raft_store::DataWrites::default());
        }
        r
    }

    #[test]
    fn batch_items_are_checked_like_single_ones_and_named_by_index() {
        let ok = |id: &str| RegisterRequest {
            instance_id: id.into(),
            ip: Some("10.0.0.1".into()),
            endpoints: vec![spec("web", 80)],
            ..RegisterRequest::default()
        };
        let check = |items| check_items(items, |req| register_op(req, &live()));
        assert_eq!(check(vec![ok("a"), ok("b")]).unwrap().len(), 2);
        let bad = RegisterRequest { endpoints: vec![spec("web", 0)], ..ok("c") };
        match check(vec![ok("a"), ok("b"), bad]) {
            Err(ApiError::BadItem { index: 2, message }) => assert!(message.contains("endpoints[0].port"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(check(vec![ok("a"); MAX_BATCH + 1]), Err(ApiError::BadRequest(_))));
        let beats = |items| check_items(items, |hb| check_heartbeat(hb, &live()));
        let hb = |id: &str| ServiceHeartbeat { instance_id: id.into(), ..ServiceHeartbeat::default() };
        assert!(matches!(beats(vec![hb("a"), hb("")]), Err(ApiError::BadItem { index: 1, .. })));
    }

    #[test]
    fn a_heartbeat_batch_renews_writes_changes_and_names_unknown_instances() {
        let r = registered(&["a", "b", "c"]);
        let hb = |id: &str, healthy: Option<bool>, ttl_ms: Option<u64>| {
            let health = healthy.map(|h| vec![EndpointSpec { healthy: Some(h), ..spec("web", 80) }]);
            check_heartbeat(ServiceHeartbeat { instance_id: id.into(), health, ttl_ms, ..Default::default() }, &live())
                .unwrap()
        };
        let items = vec![
            hb("a", None, None),
            hb("b", Some(false), None),
            hb("zz", None, None),
            hb("c", Some(true), None),
            hb("c", None, Some(2_000)),
            hb("y", None, None),
            hb("zz", Some(false), None),
        ];
        let plan = plan_heartbeats(&items, &r);
        let want = HeartbeatPlan {
            writes: vec![1, 4],
            renew: vec!["a".into(), "c".into()],
            unknown: vec!["y".into(), "zz".into()],
        };
        assert_eq!(plan, want);
        assert!(matches!(items[1].op(), Op::SetHealth { ref instance_id, .. } if instance_id == "b"));
    }

    #[test]
    fn a_batch_is_one_entry_of_bounded_size() {
        let ops = check_items(
            (0..10).map(|i| RegisterRequest { instance_id: format!("i{i}"), ..RegisterRequest::default() }).collect(),
            |req| register_op(req, &live()),
        )
        .unwrap();
        let batch = batch_op(ops).unwrap();
        assert_eq!(batch.check(), Ok(()), "what a leader checks in a forwarded proposal");
        let Op::Batch { ops } = batch else { panic!() };
        assert_eq!(ops.len(), 10);
        let nested = Op::Batch { ops: vec![Op::Batch { ops: Vec::new() }] };
        assert!(nested.check().is_err(), "a batch holds only registrations and health changes");
        // Every endpoint carries its instance's address: 100 items of 64 endpoints and a long
        // address make an entry several times bigger than the request.
        let ip = "1".repeat(MAX_ID);
        let big = RegisterRequest {
            instance_id: "i".into(),
            ip: Some(ip),
            endpoints: (1..=MAX_ENDPOINTS as u32).map(|p| spec("s", p)).collect(),
            ..RegisterRequest::default()
        };
        let ops = check_items(vec![big; 100], |req| register_op(req, &live())).unwrap();
        assert!(matches!(batch_op(ops), Err(ApiError::BadRequest(m)) if m.contains("fewer items")));
    }

    #[test]
    fn declared_ttls_are_bounded_and_the_top_level_address_wins() {
        let mut e = spec("s", 1);
        e.ip = Some("10.0.0.9".into());
        let req = |ttl| RegisterRequest {
            instance_id: "i".into(),
            ip: Some("10.0.0.1".into()),
            endpoints: vec![e.clone(), spec("t", 2)],
            ttl_ms: ttl,
            ..RegisterRequest::default()
        };
        let ttl_of = |ttl| match register_op(req(ttl), &live()).unwrap() {
            Op::RegisterInstance { ttl_ms, .. } => ttl_ms,
            _ => unreachable!(),
        };
        assert_eq!(ttl_of(None), 0, "no declaration: the default");
        assert_eq!(ttl_of(Some(1)), 500);
        assert_eq!(ttl_of(Some(1000)), 1000);
        assert_eq!(ttl_of(Some(u64::MAX)), 60_000);
        let Op::RegisterInstance { endpoints, .. } = register_op(req(None), &live()).unwrap() else { panic!() };
        assert_eq!((endpoints[0].ip.as_str(), endpoints[1].ip.as_str()), ("10.0.0.1", "10.0.0.1"));
        // Without a top-level address, each endpoint's own counts.
        let mut f = spec("u", 3);
        f.ip = Some("10.0.0.5".into());
        let req =
            RegisterRequest { instance_id: "i".into(), endpoints: vec![e.clone(), f], ..RegisterRequest::default() };
        let Op::RegisterInstance { ip, endpoints, .. } = register_op(req, &live()).unwrap() else { panic!() };
        assert_eq!(ip, "10.0.0.9", "the instance takes the first endpoint's");
        assert_eq!((endpoints[0].ip.as_str(), endpoints[1].ip.as_str()), ("10.0.0.9", "10.0.0.5"));
    }
}
