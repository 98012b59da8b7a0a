//! `/v1/services*`: registration, instance heartbeats, deregistration, service names.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use plum_types::{EndpointSpec, HealthReport, RegisterRequest, ServiceHeartbeat};

use super::Shared;
use super::error::ApiError;
use super::extract::{JsonBody, Query};
use super::validate::{self, MAX_ENDPOINTS, MAX_ID, MAX_SHORT};
use crate::cluster::WriteError;
use crate::config::LivenessConfig;
use crate::state::{EndpointRecord, Op};

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
    })
}

pub async fn register(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> Result<StatusCode, ApiError> {
    let op = register_op(req, &state.cluster.config.liveness)?;
    state.write(&headers, &query, &uri, op).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn heartbeat(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    JsonBody(hb): JsonBody<ServiceHeartbeat>,
) -> Result<StatusCode, ApiError> {
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
    // A health or TTL change is a write; an unchanged live instance only renews (batched).
    // An instance this replica does not know yet (its registration may still be on the way
    // here) is renewed anyway: the leader ignores ids it does not know.
    let ttl_ms = hb.ttl_ms.map(|t| state.cluster.config.liveness.bounded_ttl_ms(Some(t)));
    let needs_write = state.cluster.with_registry(|r| match r.instance_record(&hb.instance_id) {
        None => false,
        Some(inst) => {
            ttl_ms.is_some_and(|t| t != inst.ttl_ms)
                || reports.iter().any(|rep| {
                    inst.endpoints.iter().any(|ep| {
                        ep.service_name == rep.service_name
                            && rep.port.is_none_or(|p| p == ep.port)
                            && ep.healthy != rep.healthy
                    })
                })
        }
    });
    if needs_write {
        let op = Op::SetHealth { instance_id: hb.instance_id, reports, ttl_ms };
        state.write(&headers, &query, &uri, op).await?;
    } else {
        state
            .batcher
            .renew(Vec::new(), vec![hb.instance_id])
            .await
            .map_err(|e| ApiError::Write(WriteError::Unavailable(e.to_string())))?;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn deregister(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
) -> Result<StatusCode, ApiError> {
    let id =
        query.get("instanceId").ok_or_else(|| ApiError::bad("query parameter `instanceId` is required"))?.to_string();
    validate::name("instanceId", &id, MAX_ID)?;
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
