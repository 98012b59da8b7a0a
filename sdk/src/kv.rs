//! Config KV: get, put, delete, list by prefix, compare-and-set, and watches resumable from an
//! index. Every write carries a generated `requestId`, which makes it idempotent on the server
//! (a retry within its window is answered as the first time), so the transport may resend it
//! after an unknown outcome: each write is applied exactly once.

use std::sync::Arc;
use std::time::Duration;

use plum_types::{KvItem, KvPutRequest, KvType, KvWritten};
use reqwest::Method;

use crate::controllers::{Controllers, Request, query};
use crate::error::ClientError;

/// How long one watch request waits on the server before answering unchanged, unless
/// [`KvWatch::with_wait`] says otherwise.
pub const WATCH_WAIT: Duration = Duration::from_secs(25);

#[derive(Clone)]
pub struct Kv {
    c: Arc<Controllers>,
}

/// A fresh id for one logical write (the same for all its retries).
pub fn request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// `/v1/kv/{ns}/key/{key}` with both parts escaped (keys may hold `/`, spaces, anything).
fn key_path(ns: &str, key: &str) -> String {
    let mut url = url::Url::parse("http://x/v1/kv").expect("static URL");
    url.path_segments_mut().expect("http URL has segments").push(ns).push("key").push(key);
    url.path().to_string()
}

fn ns_path(ns: &str) -> String {
    let mut url = url::Url::parse("http://x/v1/kv").expect("static URL");
    url.path_segments_mut().expect("http URL has segments").push(ns);
    url.path().to_string()
}

impl Kv {
    pub fn new(c: Arc<Controllers>) -> Kv {
        Kv { c }
    }

    /// Reads from the replica asked, which may lag the leader by a moment (fast, and served by
    /// any replica while the others are down).
    pub async fn get(&self, ns: &str, key: &str) -> Result<Option<KvItem>, ClientError> {
        self.get_from(key_path(ns, key)).await
    }

    /// A linearizable read: it sees every write acknowledged before it started (the replica
    /// confirms with the leader first, so it needs a leader).
    pub async fn get_consistent(&self, ns: &str, key: &str) -> Result<Option<KvItem>, ClientError> {
        self.get_from(format!("{}?{}", key_path(ns, key), query(&[("consistent", "true")]))).await
    }

    async fn get_from(&self, path: String) -> Result<Option<KvItem>, ClientError> {
        match self.c.send::<KvItem>(Request::get(path)).await {
            Ok(a) => Ok(Some(a.body)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a string value.
    pub async fn put(&self, ns: &str, key: &str, value: &str) -> Result<KvWritten, ClientError> {
        self.put_typed(ns, key, value, KvType::String, None).await
    }

    /// Writes `value` as `kind`; with `expect_version`, only if the key is at that version (0:
    /// absent), else a `409` ([`ClientError::is_conflict`]).
    pub async fn put_typed(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        kind: KvType,
        expect_version: Option<u64>,
    ) -> Result<KvWritten, ClientError> {
        let body = KvPutRequest {
            value: Some(value.to_string()),
            kind: kind.as_str().to_string(),
            expect_version,
            request_id: Some(request_id()),
        };
        let req = Request::write(Method::PUT, key_path(ns, key), Some(&body), true)?;
        Ok(self.c.send(req).await?.body)
    }

    /// Compare-and-set: writes only if the key is at `expect_version` (0: absent).
    pub async fn compare_and_set(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        expect_version: u64,
    ) -> Result<KvWritten, ClientError> {
        self.put_typed(ns, key, value, KvType::String, Some(expect_version)).await
    }

    /// Deletes the key (done also when it was absent: deleting is idempotent).
    pub async fn delete(&self, ns: &str, key: &str) -> Result<(), ClientError> {
        let req = Request::write::<()>(Method::DELETE, key_path(ns, key), None, true)?;
        self.c.send_text(req).await.map(|_| ())
    }

    /// Keys of `ns` starting with `prefix`, sorted by key.
    pub async fn list(&self, ns: &str, prefix: &str) -> Result<Vec<KvItem>, ClientError> {
        let path = format!("{}?{}", ns_path(ns), query(&[("prefix", prefix)]));
        Ok(self.c.send(Request::get(path)).await?.body)
    }

    /// A watch on `ns`/`prefix` that reports changes after `from_index` (0: report the current
    /// items first).
    pub fn watch(&self, ns: &str, prefix: &str, from_index: u64) -> KvWatch {
        KvWatch {
            kv: self.clone(),
            ns: ns.to_string(),
            prefix: prefix.to_string(),
            index: from_index,
            wait: WATCH_WAIT,
        }
    }
}

/// Changes under a namespace/prefix, one answer at a time. Resumable: [`KvWatch::index`] is
/// where it stands; a new watch from that index misses nothing.
pub struct KvWatch {
    kv: Kv,
    ns: String,
    prefix: String,
    index: u64,
    /// How long each watch request waits on the server.
    wait: Duration,
}

/// The items under the watched prefix after a change, and the change's index.
#[derive(Debug, Clone)]
pub struct KvChange {
    pub index: u64,
    pub items: Vec<KvItem>,
}

impl KvWatch {
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Each watch request waits at most `wait` on the server (default [`WATCH_WAIT`]). Shorter
    /// waits notice a silently dead connection sooner, at the cost of more requests.
    pub fn with_wait(mut self, wait: Duration) -> KvWatch {
        self.wait = wait.max(Duration::from_millis(1));
        self
    }

    /// Waits for the next change (long polls of 25 s by default, renewed until one comes;
    /// moves to another replica if the one asked fails). An answer at or below the watch's
    /// index is no change: the watch keeps its index and polls again.
    pub async fn next(&mut self) -> Result<KvChange, ClientError> {
        loop {
            let timeout = self.wait.as_millis().to_string();
            let index = self.index.to_string();
            let q = query(&[("prefix", &self.prefix), ("watch", "true"), ("index", &index), ("timeoutMs", &timeout)]);
            let req = Request::get(format!("{}?{q}", ns_path(&self.ns)))
                .attempt_timeout(self.wait + Duration::from_secs(5))
                .deadline((self.wait * 3).max(self.wait + Duration::from_secs(5)));
            let answer = self.kv.c.send::<Vec<KvItem>>(req).await?;
            let changed = answer.index.unwrap_or(0);
            if changed > self.index {
                self.index = changed;
                return Ok(KvChange { index: changed, items: answer.body });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_escape_namespaces_and_keys() {
        assert_eq!(key_path("app", "db/url"), "/v1/kv/app/key/db%2Furl");
        assert_eq!(key_path("a b", "keys"), "/v1/kv/a%20b/key/keys");
        assert_eq!(ns_path("app"), "/v1/kv/app");
        assert_eq!(query(&[("prefix", "a&b")]), "prefix=a%26b");
    }

    #[test]
    fn request_ids_differ() {
        assert_ne!(request_id(), request_id());
        assert_eq!(request_id().len(), 32);
    }
}
