//! `/v1/discovery*`: healthy, live endpoints of a service from the local view, and watches
//! on them (long poll and server-sent events).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use plum_types::{Endpoint, VersionFilter};
use rand::seq::{IndexedRandom, SliceRandom};
use serde::Serialize;

use super::error::ApiError;
use super::extract::Query;
use super::{INDEX_HEADER, Shared, with_index};
use crate::state::Registry;

struct Filter {
    service: String,
    /// As given (the memo key of the `lazy` strategy).
    version_text: Option<String>,
    version: Option<VersionFilter>,
    protocol: Option<String>,
}

impl Filter {
    /// The filter, and the service the client serves when it says (`clientService`): an
    /// observed dependency.
    fn parse(state: &Shared, query: &Query) -> Result<Filter, ApiError> {
        let service = query.get("service").ok_or_else(|| ApiError::bad("query parameter `service` is required"))?;
        let version_text = query.get("version").map(str::to_string);
        let version =
            version_text.as_deref().map(VersionFilter::parse).transpose().map_err(|e| ApiError::bad(e.to_string()))?;
        // Last: a request refused for another reason records nothing.
        if let Some(client) = query.get("clientService") {
            super::validate::name("clientService", client, super::validate::MAX_ID)?;
            super::validate::name("service", service, super::validate::MAX_ID)?;
            super::observed::saw(state, client, service);
        }
        Ok(Filter {
            service: service.to_string(),
            version_text,
            version,
            protocol: query.get("protocol").map(str::to_string),
        })
    }

    fn key(&self) -> String {
        format!(
            "{}\0{}\0{}",
            self.service,
            self.version_text.as_deref().unwrap_or(""),
            self.protocol.as_deref().unwrap_or("")
        )
    }

    fn select(&self, r: &Registry) -> Vec<Endpoint> {
        let exact = match &self.version {
            Some(VersionFilter::Exact(v)) => Some(v.as_str()),
            _ => None,
        };
        let mut eps = r.discover(&self.service, exact, self.protocol.as_deref());
        if let Some(range @ VersionFilter::Range(_)) = &self.version {
            eps.retain(|e| range.matches(&e.version));
        }
        eps
    }
}

async fn endpoints(state: &Shared, query: &Query) -> Result<(Filter, Vec<Endpoint>, u64), ApiError> {
    let filter = Filter::parse(state, query)?;
    let index = state.read_point(query).await?;
    let eps = state.cluster.with_registry(|r| filter.select(r));
    Ok((filter, eps, index))
}

/// `GET /v1/discovery?service=S`: the endpoints, with `x-plum-index` telling when the
/// service's answer last changed. With `watch=true&index=N` a long poll: it answers once the
/// answer changed after N (or after `timeoutMs`, default 30 s), so a client keeps a cache fresh
/// by passing back the index it got each time.
pub async fn all(State(state): State<Shared>, query: Query) -> Result<Response, ApiError> {
    let limit = query.number("limit")?;
    let filter = Filter::parse(&state, &query)?;
    let mut index = state.read_point(&query).await?;
    let service = filter.service.clone();
    let mut change = state.cluster.with_registry(|r| r.discovery_change_index(Some(&service)));
    if query.flag("watch") {
        let after = query.number("index")?.unwrap_or(0);
        let timeout = super::watch_timeout(&query)?;
        change = state.wait_for_change(after, timeout, |r| r.discovery_change_index(Some(&service))).await;
        index = state.cluster.applied_index();
    }
    let mut eps = state.cluster.with_registry(|r| filter.select(r));
    if let Some(limit) = limit.map(|l| l as usize)
        && limit < eps.len()
    {
        // Spread load: a limited answer is a random subset, not always the first few.
        eps.shuffle(&mut rand::rng());
        eps.truncate(limit);
    }
    let mut resp = with_index(index, Json(eps));
    resp.headers_mut().insert(INDEX_HEADER, HeaderValue::from(change));
    Ok(resp)
}

/// One event of the discovery stream.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceEndpoints {
    service: String,
    index: u64,
    endpoints: Vec<Endpoint>,
}

/// `GET /v1/discovery/stream[?service=S][&index=N]`: server-sent events, one `endpoints` event
/// per service whose answer changed (all services without `service`), each with the service's
/// change index as event id. It starts with the current answer of every watched service whose
/// index is above N (all of them without N); a client that reconnects passes the last id it saw
/// as `index` (or `Last-Event-ID`) and misses nothing.
pub async fn stream(State(state): State<Shared>, headers: HeaderMap, query: Query) -> Result<Response, ApiError> {
    let service = query.get("service").map(str::to_string);
    if let Some(s) = &service {
        super::validate::name("service", s, super::validate::MAX_ID)?;
    }
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let after = match query.number("index")? {
        Some(n) => n,
        None => resume.unwrap_or(0),
    };
    let start = (state, after, std::collections::VecDeque::new());
    let events = futures::stream::unfold(start, move |(state, mut after, mut pending)| {
        let service = service.clone();
        async move {
            while pending.is_empty() {
                let watched = |r: &Registry| r.discovery_change_index(service.as_deref());
                let change = state.wait_for_change(after, super::WATCH_MAX, watched).await;
                if change <= after {
                    // Timed out: a comment keeps the connection (and proxies) awake.
                    return Some((
                        Ok::<_, std::convert::Infallible>(Event::default().comment("idle")),
                        (state, after, pending),
                    ));
                }
                pending = state.cluster.with_registry(|r| changed_services(r, service.as_deref(), after)).into();
                after = change;
            }
            let next: ServiceEndpoints = pending.pop_front()?;
            let event = Event::default().event("endpoints").id(next.index.to_string()).json_data(&next).ok()?;
            Some((Ok(event), (state, after, pending)))
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))).into_response())
}

/// The current answers of the services (or the one service) whose answer changed after `after`.
fn changed_services(r: &Registry, only: Option<&str>, after: u64) -> Vec<ServiceEndpoints> {
    let names: Vec<String> = match only {
        Some(s) => vec![s.to_string()],
        None => r.discovery_changed_since(after),
    };
    names
        .into_iter()
        .map(|service| ServiceEndpoints {
            index: r.discovery_change_index(Some(&service)),
            endpoints: r.discover(&service, None, None),
            service,
        })
        .filter(|s| s.index > after)
        .collect()
}

pub async fn random(State(state): State<Shared>, query: Query) -> Result<Response, ApiError> {
    let (filter, eps, index) = endpoints(&state, &query).await?;
    match eps.choose(&mut rand::rng()) {
        Some(ep) => Ok(with_index(index, Json(ep.clone()))),
        None => Err(ApiError::NotFound(format!("no healthy endpoint of service `{}`", filter.service))),
    }
}

pub async fn one(State(state): State<Shared>, query: Query) -> Result<Response, ApiError> {
    let lazy = match query.get("strategy").unwrap_or("random") {
        "random" => false,
        "lazy" => true,
        other => return Err(ApiError::bad(format!("unknown strategy `{other}`: use random or lazy"))),
    };
    let (filter, eps, index) = endpoints(&state, &query).await?;
    let chosen = if lazy {
        let mut memo = state.lazy_choice.lock().unwrap_or_else(|p| p.into_inner());
        let key = filter.key();
        // Keep the previous choice while it is still handed out (alive and healthy).
        let previous = memo
            .get(&key)
            .and_then(|prev| eps.iter().find(|e| e.instance_id == prev.instance_id && e.port == prev.port))
            .cloned();
        let chosen = previous.or_else(|| eps.choose(&mut rand::rng()).cloned());
        match &chosen {
            Some(ep) => memo.insert(key, ep.clone()),
            None => memo.remove(&key),
        };
        chosen
    } else {
        eps.choose(&mut rand::rng()).cloned()
    };
    match chosen {
        Some(ep) => Ok(with_index(index, Json(ep))),
        None => Err(ApiError::NotFound(format!("no healthy endpoint of service `{}`", filter.service))),
    }
}
