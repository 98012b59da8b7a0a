//! `plumctl watch services`: endpoints appearing, leaving or changing, as they happen.
//!
//! For one service, when the cluster answers discovery with an `x-plum-index`, a long poll
//! (`GET /v1/discovery?service=S&watch=true&index=N`); otherwise polling `/v1/services/list`
//! and discovery every `--interval`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use plum_types::Endpoint;
use serde_json::json;

use super::kv::clock;
use super::{Ctx, decode};
use crate::api::{Method, encode, with_query};
use crate::error::{CtlError, Result};
use crate::output::{Paint, note, now_secs};

const WATCH_WAIT: Duration = Duration::from_secs(30);

/// An endpoint is the same endpoint while these stay the same (as registration keys it).
type EndpointKey = (String, String, String, u16, String);

fn key_of(e: &Endpoint) -> EndpointKey {
    (e.service_name.clone(), e.instance_id.clone(), e.ip.clone(), e.port, e.protocol.clone())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointEvent {
    Added(Endpoint),
    Removed(Endpoint),
    Changed(Endpoint),
}

/// What changed between two views of discovery (`lastSeen` alone is not a change).
pub fn endpoint_changes(
    before: &BTreeMap<EndpointKey, Endpoint>,
    after: &BTreeMap<EndpointKey, Endpoint>,
) -> Vec<EndpointEvent> {
    let mut events = Vec::new();
    for (key, e) in after {
        match before.get(key) {
            None => events.push(EndpointEvent::Added(e.clone())),
            Some(old) if Endpoint { last_seen: e.last_seen, ..old.clone() } != *e => {
                events.push(EndpointEvent::Changed(e.clone()))
            }
            Some(_) => {}
        }
    }
    for (key, e) in before {
        if !after.contains_key(key) {
            events.push(EndpointEvent::Removed(e.clone()));
        }
    }
    events
}

fn by_key(endpoints: Vec<Endpoint>) -> BTreeMap<EndpointKey, Endpoint> {
    endpoints.into_iter().map(|e| (key_of(&e), e)).collect()
}

pub async fn services(ctx: &Ctx, service: Option<&str>, interval: Duration) -> Result<()> {
    let (mut known, mut index) = snapshot(ctx, service).await?;
    let what = service.map(|s| format!("service {s}")).unwrap_or_else(|| "every service".into());
    let how = if index.is_some() { "server-side watch" } else { "polling" };
    note(&format!("watching {what} ({how}): {} endpoints now; changes follow (Ctrl-C stops)", known.len()));
    loop {
        let started = Instant::now();
        let next = match (service, index) {
            (Some(s), Some(i)) => long_poll(ctx, s, i).await,
            _ => {
                tokio::time::sleep(interval).await;
                snapshot(ctx, service).await
            }
        };
        let (now, next_index) = match next {
            Ok(n) => n,
            Err(CtlError::Unreachable(e)) => {
                note(&format!("watch interrupted, retrying: {e}"));
                tokio::time::sleep(interval).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        for event in endpoint_changes(&known, &now) {
            print_event(ctx, &event)?;
        }
        known = now;
        // A "watch" answered at once with nothing new: the cluster does not wait; do not spin.
        if next_index.is_some() && next_index == index && started.elapsed() < Duration::from_millis(100) {
            tokio::time::sleep(interval).await;
        }
        index = match (index, next_index) {
            (Some(old), Some(new)) => Some(old.max(new)),
            (_, new) => new,
        };
    }
}

/// Every endpoint of the service (or of every service), with the discovery index when the
/// cluster gives one for a single service.
async fn snapshot(ctx: &Ctx, service: Option<&str>) -> Result<(BTreeMap<EndpointKey, Endpoint>, Option<u64>)> {
    let names: Vec<String> = match service {
        Some(s) => vec![s.to_string()],
        None => decode(&ctx.api.get("/v1/services/list").await?.body, "GET /v1/services/list")?,
    };
    let mut all = Vec::new();
    let mut index = None;
    for name in &names {
        let reply = ctx.api.get(&format!("/v1/discovery?service={}", encode(name))).await?;
        index = reply.index;
        all.extend(decode::<Vec<Endpoint>>(&reply.body, "GET /v1/discovery")?);
    }
    Ok((by_key(all), if service.is_some() { index } else { None }))
}

async fn long_poll(ctx: &Ctx, service: &str, index: u64) -> Result<(BTreeMap<EndpointKey, Endpoint>, Option<u64>)> {
    let wait_ms = WATCH_WAIT.as_millis().to_string();
    let path = with_query(
        "/v1/discovery",
        &[
            ("service", Some(service)),
            ("watch", Some("true")),
            ("index", Some(&index.to_string())),
            ("timeoutMs", Some(&wait_ms)),
        ],
    );
    let reply = ctx.api.call(Method::Get, &path, None::<&()>, WATCH_WAIT + ctx.api.attempt()).await?;
    Ok((by_key(decode(&reply.body, "GET /v1/discovery?watch=true")?), reply.index))
}

fn print_event(ctx: &Ctx, event: &EndpointEvent) -> Result<()> {
    let (kind, e, paint) = match event {
        EndpointEvent::Added(e) => ("added", e, Paint::Green),
        EndpointEvent::Removed(e) => ("removed", e, Paint::Red),
        EndpointEvent::Changed(e) => ("changed", e, Paint::Yellow),
    };
    if ctx.out.json {
        return ctx.out.json_line(&json!({ "event": kind, "endpoint": e }));
    }
    let health = if e.healthy { "healthy" } else { "unhealthy" };
    ctx.out.line(&format!(
        "{} {} {} {} {}:{} {} {} node={} {health}",
        clock(now_secs()),
        ctx.out.paint(&format!("{kind:<7}"), paint),
        e.service_name,
        e.instance_id,
        e.ip,
        e.port,
        e.protocol,
        e.version,
        e.node_id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(instance: &str, port: u16, version: &str, last_seen: u64) -> Endpoint {
        Endpoint {
            service_name: "web".into(),
            instance_id: instance.into(),
            node_id: "n1".into(),
            ip: "10.0.0.1".into(),
            port,
            protocol: "http".into(),
            version: version.into(),
            labels: Default::default(),
            healthy: true,
            last_seen,
        }
    }

    #[test]
    fn added_removed_changed_but_not_just_seen_again() {
        let before = by_key(vec![ep("a", 1, "v1", 10), ep("b", 2, "v1", 10), ep("c", 3, "v1", 10)]);
        let after = by_key(vec![ep("a", 1, "v1", 99), ep("b", 2, "v2", 10), ep("d", 4, "v1", 10)]);
        assert_eq!(
            endpoint_changes(&before, &after),
            vec![
                EndpointEvent::Changed(ep("b", 2, "v2", 10)),
                EndpointEvent::Added(ep("d", 4, "v1", 10)),
                EndpointEvent::Removed(ep("c", 3, "v1", 10)),
            ]
        );
    }
}
