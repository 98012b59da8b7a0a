//! `/v1/kv*`: the config store. Versions per key, compare-and-set (`expectVersion`), and a
//! long-poll watch on a namespace or prefix (`?watch=true&index=N`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use plum_types::{
    KvBatchRequest, KvBatchResponse, KvCopied, KvCopyRequest, KvHistory, KvKeys, KvNamespaces, KvPutRequest,
    KvRollbackRequest, KvWritten,
};

use super::error::ApiError;
use super::extract::{JsonBody, Query};
use super::validate::{self, MAX_BATCH, MAX_ID};
use super::{INDEX_HEADER, Shared, watch_timeout, with_index};
use crate::state::{CommandResult, KvWrite, Op};

fn check_place(ns: &str, key: Option<&str>) -> Result<(), ApiError> {
    validate::name("namespace", ns, MAX_ID)?;
    if let Some(key) = key {
        validate::name("key", key, MAX_ID)?;
    }
    Ok(())
}

fn parse_write(key: &str, value: Option<String>, kind: &str) -> Result<KvWrite, ApiError> {
    let kind = validate::kv_type(kind)?;
    let value = value.ok_or_else(|| ApiError::bad(format!("`value` is required for key `{key}`")))?;
    validate::kv_value(&value, kind)?;
    Ok(KvWrite { key: key.to_string(), value, kind })
}

pub async fn get(
    State(state): State<Shared>,
    query: Query,
    Path((ns, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let index = state.read_point(&query).await?;
    match state.cluster.with_registry(|r| r.kv_get(&ns, &key)) {
        Some(item) => Ok(with_index(index, Json(item))),
        None => Err(ApiError::NotFound(format!("key `{ns}/{key}` not found"))),
    }
}

/// `GET /v1/kv/{ns}/key/{key}/history`: the key's recent versions, newest first (also of a
/// key deleted since; 404 when it never had one this replica keeps).
pub async fn history(
    State(state): State<Shared>,
    query: Query,
    Path((ns, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_place(&ns, Some(&key))?;
    let index = state.read_point(&query).await?;
    let versions = state.cluster.with_registry(|r| r.kv_history(&ns, &key));
    if versions.is_empty() {
        return Err(ApiError::NotFound(format!("key `{ns}/{key}` has no history")));
    }
    Ok(with_index(index, Json(KvHistory { namespace: ns, key, versions })))
}

/// `POST /v1/kv/{ns}/key/{key}/rollback` `{"modIndex"}` or `{"version"}`: writes the value the
/// key had then as a new version, provided the key is still at the version this replica saw
/// (else `409` with `currentVersion`: look again, and retry). Watches and config rolls see it as
/// any other change.
pub async fn rollback(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Path((ns, key)): Path<(String, String)>,
    JsonBody(req): JsonBody<KvRollbackRequest>,
) -> Result<Response, ApiError> {
    check_place(&ns, Some(&key))?;
    if let Some(id) = &req.request_id {
        validate::text("requestId", id, MAX_ID)?;
    }
    let (versions, current) =
        state.cluster.with_registry(|r| (r.kv_history(&ns, &key), r.kv_get(&ns, &key).map_or(0, |i| i.version)));
    let target = match (req.mod_index, req.version) {
        (Some(at), _) => versions.into_iter().find(|v| v.mod_index == at),
        (None, Some(version)) => versions.into_iter().find(|v| v.version == version && !v.deleted),
        (None, None) => return Err(ApiError::bad("`modIndex` or `version` is required")),
    };
    let target = target.ok_or_else(|| ApiError::NotFound(format!("no such version of `{ns}/{key}` in its history")))?;
    if target.deleted {
        return Err(ApiError::bad("that version is a deletion: delete the key instead"));
    }
    let write = KvWrite { key: key.clone(), value: target.value, kind: target.kind };
    let op = Op::KvPut { ns: ns.clone(), write, expect_version: Some(current), request_id: req.request_id };
    written(ns, key, state.write(&headers, &query, &uri, op).await?.result)
}

/// `POST /v1/kv/{ns}/copy` `{"to", "prefix", "overwrite"}`: the keys under `prefix` written into
/// namespace `to` in one entry (promote `dev` to `prod`). Keys `to` has already are kept unless
/// `overwrite`; the answer lists both. The source is read linearizably.
pub async fn copy(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Path(ns): Path<String>,
    JsonBody(req): JsonBody<KvCopyRequest>,
) -> Result<Json<KvCopied>, ApiError> {
    check_place(&ns, None)?;
    check_place(&req.to, None)?;
    validate::text("prefix", &req.prefix, MAX_ID)?;
    if req.to == ns {
        return Err(ApiError::bad("`to` must be another namespace"));
    }
    state.read_point(&Query::parse("consistent=true")).await?;
    let (from, into) = state.cluster.with_registry(|r| (r.kv_list(&ns, &req.prefix), r.kv_list(&req.to, &req.prefix)));
    let (mut copied, mut kept, mut writes) = (Vec::new(), Vec::new(), Vec::new());
    for item in from {
        if !req.overwrite && into.iter().any(|t| t.key == item.key) {
            kept.push(item.key);
            continue;
        }
        copied.push(item.key.clone());
        writes.push(KvWrite { key: item.key, value: item.value, kind: item.kind });
    }
    if writes.len() > MAX_BATCH {
        return Err(ApiError::bad(format!("more than {MAX_BATCH} keys to copy: copy by narrower prefixes")));
    }
    if !writes.is_empty() {
        state.write(&headers, &query, &uri, Op::KvBatch { ns: req.to.clone(), writes }).await?;
    }
    Ok(Json(KvCopied { from: ns, to: req.to, copied, kept }))
}

pub async fn put(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Path((ns, key)): Path<(String, String)>,
    JsonBody(req): JsonBody<KvPutRequest>,
) -> Result<Response, ApiError> {
    check_place(&ns, Some(&key))?;
    let write = parse_write(&key, req.value, &req.kind)?;
    if let Some(id) = &req.request_id {
        validate::text("requestId", id, MAX_ID)?;
    }
    let op = Op::KvPut { ns: ns.clone(), write, expect_version: req.expect_version, request_id: req.request_id };
    written(ns, key, state.write(&headers, &query, &uri, op).await?.result)
}

/// The answer to a single KV write.
fn written(ns: String, key: String, result: CommandResult) -> Result<Response, ApiError> {
    match result {
        CommandResult::KvWritten { record } => {
            Ok(Json(KvWritten { namespace: ns, key, value: record.value, kind: record.kind, version: record.version })
                .into_response())
        }
        CommandResult::KvConflict { current } => Err(conflict(current)),
        other => Err(ApiError::Write(crate::cluster::WriteError::Unavailable(format!("unexpected result {other:?}")))),
    }
}

fn conflict(current: u64) -> ApiError {
    ApiError::Conflict {
        message: format!("version mismatch: the key is at version {current}"),
        detail: Some(serde_json::json!({ "currentVersion": current })),
    }
}

pub async fn remove(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Path((ns, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_place(&ns, Some(&key))?;
    let expect_version = query.number("expectVersion")?;
    let applied = state.write(&headers, &query, &uri, Op::KvDelete { ns, key, expect_version }).await?;
    match applied.result {
        CommandResult::KvConflict { current } => Err(conflict(current)),
        _ => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `GET /v1/kv/{ns}[?prefix=p]`, or with `watch=true&index=N` a long poll that answers once
/// something under the namespace/prefix changed after index N (or on timeout).
pub async fn list(State(state): State<Shared>, query: Query, Path(ns): Path<String>) -> Result<Response, ApiError> {
    let prefix = query.get("prefix").unwrap_or("").to_string();
    let mut index = state.read_point(&query).await?;
    let mut change = state.cluster.with_registry(|r| r.kv_change_index(&ns, &prefix));
    if query.flag("watch") {
        let after = query.number("index")?.unwrap_or(0);
        change = state.wait_for_change(after, watch_timeout(&query)?, |r| r.kv_change_index(&ns, &prefix)).await;
        index = state.cluster.applied_index();
    }
    let items = state.cluster.with_registry(|r| r.kv_list(&ns, &prefix));
    let mut resp = with_index(index, Json(items));
    resp.headers_mut().insert(INDEX_HEADER, HeaderValue::from(change));
    Ok(resp)
}

pub async fn namespaces(State(state): State<Shared>, query: Query) -> Result<Response, ApiError> {
    let index = state.read_point(&query).await?;
    Ok(with_index(index, Json(KvNamespaces { namespaces: state.cluster.with_registry(|r| r.kv_namespaces()) })))
}

pub async fn keys(State(state): State<Shared>, query: Query, Path(ns): Path<String>) -> Result<Response, ApiError> {
    let index = state.read_point(&query).await?;
    let keys = state.cluster.with_registry(|r| r.kv_keys(&ns));
    Ok(with_index(index, Json(KvKeys { namespace: ns, keys })))
}

pub async fn batch(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Path(ns): Path<String>,
    JsonBody(req): JsonBody<KvBatchRequest>,
) -> Result<Json<KvBatchResponse>, ApiError> {
    check_place(&ns, None)?;
    if req.items.len() > MAX_BATCH {
        return Err(ApiError::bad(format!("more than {MAX_BATCH} items")));
    }
    // All-or-nothing: every item is checked before anything is proposed, and the batch is one
    // log entry.
    let mut writes = Vec::with_capacity(req.items.len());
    for (i, item) in req.items.into_iter().enumerate() {
        validate::name(&format!("items[{i}].key"), &item.key, MAX_ID)?;
        writes.push(parse_write(&item.key, item.value, &item.kind)?);
    }
    let count = writes.len();
    state.write(&headers, &query, &uri, Op::KvBatch { ns: ns.clone(), writes }).await?;
    Ok(Json(KvBatchResponse { namespace: ns, count }))
}

// The compatible paths `/v1/kv/{ns}/keys` and `/v1/kv/{ns}/batch` are also keys named `keys`
// and `batch` for every method they do not otherwise use; `/v1/kv/{ns}/key/{key}` addresses
// any key unambiguously. These take the key from the path's last segment.

fn literal_key(uri: &Uri) -> String {
    uri.path().rsplit('/').next().unwrap_or_default().to_string()
}

pub async fn get_literal(
    state: State<Shared>,
    query: Query,
    uri: Uri,
    Path(ns): Path<String>,
) -> Result<Response, ApiError> {
    get(state, query, Path((ns, literal_key(&uri)))).await
}

pub async fn put_literal(
    state: State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Path(ns): Path<String>,
    body: JsonBody<KvPutRequest>,
) -> Result<Response, ApiError> {
    let key = literal_key(&uri);
    put(state, headers, query, uri, Path((ns, key)), body).await
}

pub async fn delete_literal(
    state: State<Shared>,
    headers: HeaderMap,
    query: Query,
    uri: Uri,
    Path(ns): Path<String>,
) -> Result<Response, ApiError> {
    let key = literal_key(&uri);
    remove(state, headers, query, uri, Path((ns, key))).await
}
