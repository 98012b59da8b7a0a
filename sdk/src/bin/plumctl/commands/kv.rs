//! `plumctl kv get | put | del | ls | watch` (`/v1/kv/*`). Keys go through the unambiguous
//! `/v1/kv/{ns}/key/{key}` route, so keys named `keys` or `batch` work too.

use std::collections::BTreeMap;
use std::time::Duration;

use plum_types::{KvItem, KvPutRequest, KvWritten};
use serde_json::json;

use super::{Ctx, decode};
use crate::api::{Method, encode, with_query};
use crate::error::{CtlError, Result};
use crate::output::{Paint, Table, ago, note, now_secs};

/// How long one watch request waits on the server for a change.
const WATCH_WAIT: Duration = Duration::from_secs(30);
/// Pause before asking again after a failed watch request, or when the cluster offers no index.
const WATCH_RETRY: Duration = Duration::from_secs(1);

fn key_path(ns: &str, key: &str) -> String {
    format!("/v1/kv/{}/key/{}", encode(ns), encode(key))
}

pub async fn get(ctx: &Ctx, ns: &str, key: &str, value_only: bool, consistent: bool) -> Result<()> {
    let path = with_query(&key_path(ns, key), &[("consistent", consistent.then_some("true"))]);
    let reply = ctx.api.get(&path).await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    let item: KvItem = decode(&reply.body, "GET /v1/kv/{ns}/{key}")?;
    if value_only {
        return ctx.out.line(&item.value);
    }
    ctx.out.table(&items_table(&[item]))
}

pub async fn put(ctx: &Ctx, ns: &str, key: &str, value: &str, kind: &str, expect_version: Option<u64>) -> Result<()> {
    let body = KvPutRequest {
        value: Some(value.to_string()),
        kind: kind.to_string(),
        expect_version,
        // The client library resends a request that timed out: the id makes that safe.
        request_id: Some(format!("plumctl-{:016x}", rand::random::<u64>())),
    };
    let reply = ctx.api.send(Method::Put, &key_path(ns, key), Some(&body)).await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    let written: KvWritten = decode(&reply.body, "PUT /v1/kv/{ns}/{key}")?;
    ctx.out.line(&format!("{}/{} = {} (version {})", written.namespace, written.key, written.value, written.version))
}

pub async fn del(ctx: &Ctx, ns: &str, key: &str, expect_version: Option<u64>) -> Result<()> {
    let version = expect_version.map(|v| v.to_string());
    let path = with_query(&key_path(ns, key), &[("expectVersion", version.as_deref())]);
    let reply = ctx.api.send(Method::Delete, &path, None::<&()>).await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    ctx.out.line(&format!("{ns}/{key} deleted"))
}

pub async fn ls(ctx: &Ctx, ns: &str, prefix: Option<&str>, consistent: bool) -> Result<()> {
    let path = with_query(
        &format!("/v1/kv/{}", encode(ns)),
        &[("prefix", prefix), ("consistent", consistent.then_some("true"))],
    );
    let reply = ctx.api.get(&path).await?;
    if ctx.out.json {
        return ctx.out.json_value(&reply.body);
    }
    let items: Vec<KvItem> = decode(&reply.body, "GET /v1/kv/{ns}")?;
    ctx.out.table(&items_table(&items))
}

pub fn items_table(items: &[KvItem]) -> Table {
    let now = now_secs();
    let mut table = Table::new(&["KEY", "TYPE", "VERSION", "UPDATED", "VALUE"]);
    for i in items {
        table.row(vec![
            i.key.clone().into(),
            i.kind.as_str().into(),
            i.version.to_string().into(),
            ago(i.updated_at, now).into(),
            i.value.clone().into(),
        ]);
    }
    table
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvEvent {
    Put(KvItem),
    Delete { namespace: String, key: String },
}

/// What changed between two listings of a namespace.
pub fn kv_changes(before: &BTreeMap<String, KvItem>, after: &BTreeMap<String, KvItem>) -> Vec<KvEvent> {
    let mut events = Vec::new();
    for (key, item) in after {
        let changed = before.get(key).is_none_or(|old| (old.version, old.mod_index) != (item.version, item.mod_index));
        if changed {
            events.push(KvEvent::Put(item.clone()));
        }
    }
    for (key, item) in before {
        if !after.contains_key(key) {
            events.push(KvEvent::Delete { namespace: item.namespace.clone(), key: key.clone() });
        }
    }
    events
}

fn by_key(items: Vec<KvItem>) -> BTreeMap<String, KvItem> {
    items.into_iter().map(|i| (i.key.clone(), i)).collect()
}

/// Long polls `GET /v1/kv/{ns}?watch=true&index=N`: each answer is the listing once something
/// under the namespace (or prefix) changed after N, and `x-plum-index` is the next N. Prints
/// the difference to the previous listing; runs until Ctrl-C.
pub async fn watch(ctx: &Ctx, ns: &str, prefix: Option<&str>) -> Result<()> {
    let list_path = with_query(&format!("/v1/kv/{}", encode(ns)), &[("prefix", prefix)]);
    let first = ctx.api.get(&list_path).await?;
    let mut known = by_key(decode(&first.body, "GET /v1/kv/{ns}")?);
    let mut index = first.index;
    let scope = match prefix {
        Some(p) => format!("{ns} (prefix {p})"),
        None => ns.to_string(),
    };
    note(&format!("watching {scope}: {} keys now; changes follow (Ctrl-C stops)", known.len()));
    let wait_ms = WATCH_WAIT.as_millis().to_string();
    loop {
        let path = match index {
            Some(i) => with_query(
                &format!("/v1/kv/{}", encode(ns)),
                &[
                    ("watch", Some("true")),
                    ("index", Some(&i.to_string())),
                    ("prefix", prefix),
                    ("timeoutMs", Some(&wait_ms)),
                ],
            ),
            // No index from the cluster: plain polling.
            None => {
                tokio::time::sleep(WATCH_RETRY).await;
                list_path.clone()
            }
        };
        let reply = match ctx.api.call(Method::Get, &path, None::<&()>, WATCH_WAIT + ctx.api.attempt()).await {
            Ok(r) => r,
            Err(CtlError::Unreachable(e)) => {
                note(&format!("watch interrupted, retrying: {e}"));
                tokio::time::sleep(WATCH_RETRY).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let now = by_key(decode(&reply.body, "GET /v1/kv/{ns}?watch=true")?);
        for event in kv_changes(&known, &now) {
            print_kv_event(ctx, &event)?;
        }
        known = now;
        index = reply.index.map(|i| i.max(index.unwrap_or(0)));
    }
}

fn print_kv_event(ctx: &Ctx, event: &KvEvent) -> Result<()> {
    if ctx.out.json {
        let value = match event {
            KvEvent::Put(item) => json!({ "event": "put", "item": item }),
            KvEvent::Delete { namespace, key } => json!({ "event": "delete", "namespace": namespace, "key": key }),
        };
        return ctx.out.json_line(&value);
    }
    let line = match event {
        KvEvent::Put(i) => format!(
            "{} {} {} = {} (version {})",
            clock(now_secs()),
            ctx.out.paint("put   ", Paint::Green),
            i.key,
            i.value,
            i.version
        ),
        KvEvent::Delete { key, .. } => format!("{} {} {key}", clock(now_secs()), ctx.out.paint("delete", Paint::Red)),
    };
    ctx.out.line(&line)
}

/// `HH:MM:SSZ` (UTC) of a Unix-seconds time: watch lines say when they were seen.
pub fn clock(secs: u64) -> String {
    let s = secs % 86_400;
    format!("{:02}:{:02}:{:02}Z", s / 3600, s % 3600 / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use plum_types::KvType;

    use super::*;

    fn item(key: &str, value: &str, version: u64) -> KvItem {
        KvItem {
            namespace: "app".into(),
            key: key.into(),
            value: value.into(),
            kind: KvType::String,
            updated_at: 1,
            version,
            mod_index: version * 10,
        }
    }

    #[test]
    fn changes_between_listings() {
        let before = by_key(vec![item("a", "1", 1), item("b", "x", 3), item("c", "gone", 1)]);
        let after = by_key(vec![item("a", "1", 1), item("b", "y", 4), item("d", "new", 1)]);
        assert_eq!(
            kv_changes(&before, &after),
            vec![
                KvEvent::Put(item("b", "y", 4)),
                KvEvent::Put(item("d", "new", 1)),
                KvEvent::Delete { namespace: "app".into(), key: "c".into() },
            ]
        );
        assert!(kv_changes(&after, &after).is_empty());
    }

    #[test]
    fn clock_is_utc_time_of_day() {
        assert_eq!(clock(0), "00:00:00Z");
        assert_eq!(clock(86_400 + 3600 * 13 + 60 * 5 + 9), "13:05:09Z");
    }

    #[test]
    fn keys_are_escaped_in_paths() {
        assert_eq!(key_path("app", "a/b c"), "/v1/kv/app/key/a%2Fb%20c");
        assert_eq!(key_path("app", "keys"), "/v1/kv/app/key/keys");
    }
}
