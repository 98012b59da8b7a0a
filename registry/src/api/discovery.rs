//! `/v1/discovery*`: healthy, live endpoints of a service from the local view.

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use plum_types::Endpoint;
use rand::seq::{IndexedRandom, SliceRandom};

use super::error::ApiError;
use super::extract::Query;
use super::{Shared, with_index};

struct Filter {
    service: String,
    version: Option<String>,
    protocol: Option<String>,
}

impl Filter {
    fn parse(query: &Query) -> Result<Filter, ApiError> {
        let service = query.get("service").ok_or_else(|| ApiError::bad("query parameter `service` is required"))?;
        Ok(Filter {
            service: service.to_string(),
            version: query.get("version").map(str::to_string),
            protocol: query.get("protocol").map(str::to_string),
        })
    }

    fn key(&self) -> String {
        format!(
            "{}\0{}\0{}",
            self.service,
            self.version.as_deref().unwrap_or(""),
            self.protocol.as_deref().unwrap_or("")
        )
    }
}

async fn endpoints(state: &Shared, query: &Query) -> Result<(Filter, Vec<Endpoint>, u64), ApiError> {
    let filter = Filter::parse(query)?;
    let index = state.read_point(query).await?;
    let eps = state
        .cluster
        .with_registry(|r| r.discover(&filter.service, filter.version.as_deref(), filter.protocol.as_deref()));
    Ok((filter, eps, index))
}

pub async fn all(State(state): State<Shared>, query: Query) -> Result<Response, ApiError> {
    let limit = query.number("limit")?;
    let (_, mut eps, index) = endpoints(&state, &query).await?;
    if let Some(limit) = limit.map(|l| l as usize)
        && limit < eps.len()
    {
        // Spread load: a limited answer is a random subset, not always the first few.
        eps.shuffle(&mut rand::rng());
        eps.truncate(limit);
    }
    Ok(with_index(index, Json(eps)))
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
