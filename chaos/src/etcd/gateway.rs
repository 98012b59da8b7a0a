//! etcd 3.4's v3 JSON gateway (served on every client URL): `POST /v3/kv/put`,
//! `/v3/kv/range` and `/v3/maintenance/status`. Keys and values travel as base64; 64-bit
//! integers as decimal strings; fields at their zero value are left out of replies.

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::EtcdError;

pub const PUT_PATH: &str = "/v3/kv/put";
pub const RANGE_PATH: &str = "/v3/kv/range";
pub const STATUS_PATH: &str = "/v3/maintenance/status";

/// How long a status or read request may take.
const ASK_TIMEOUT: Duration = Duration::from_millis(800);
/// Keys per page of a range read.
const PAGE: u64 = 1000;
/// Pages a range read goes through at the most.
const MAX_PAGES: usize = 10_000;

/// Standard base64 with padding, as the gateway writes `bytes` fields.
pub fn base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard base64 (the gateway pads; unpadded input is accepted too).
pub fn from_base64(text: &str) -> Result<Vec<u8>, EtcdError> {
    let lenient = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    lenient.decode(text).map_err(|_| EtcdError::Base64(text.chars().take(80).collect()))
}

/// The body of a put.
pub fn put_body(key: &str, value: &str) -> Value {
    json!({ "key": base64(key.as_bytes()), "value": base64(value.as_bytes()) })
}

/// A put of `key` = `value` to the member at `url`; answered `200` when committed.
pub fn put(http: &reqwest::Client, url: &str, key: &str, value: &str) -> reqwest::RequestBuilder {
    http.post(format!("{url}{PUT_PATH}")).json(&put_body(key, value))
}

/// What a member says of itself and its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub member_id: u64,
    /// The leader's member id; 0 when it knows none.
    pub leader: u64,
    pub raft_term: u64,
    /// Its commit index.
    pub raft_index: u64,
    pub applied_index: u64,
}

/// A 64-bit field at the first of `paths` that is present: a decimal string or a number.
fn uint(reply: &Value, paths: &[&[&str]]) -> Option<u64> {
    paths.iter().find_map(|path| {
        let v = path.iter().try_fold(reply, |v, name| v.get(name))?;
        v.as_u64().or_else(|| v.as_str()?.parse().ok())
    })
}

/// Reads a `/v3/maintenance/status` reply (header fields in snake case, the others in camel
/// case in 3.4; either is accepted). Only the member id must be there.
pub fn parse_status(reply: &Value) -> Option<Status> {
    let zero = |paths: &[&[&str]]| uint(reply, paths).unwrap_or(0);
    Some(Status {
        member_id: uint(reply, &[&["header", "member_id"], &["header", "memberId"]])?,
        leader: zero(&[&["leader"]]),
        raft_term: zero(&[&["raftTerm"], &["raft_term"], &["header", "raft_term"]]),
        raft_index: zero(&[&["raftIndex"], &["raft_index"]]),
        applied_index: zero(&[&["raftAppliedIndex"], &["raft_applied_index"]]),
    })
}

/// `POST path` with `body` to `url`, its JSON reply.
async fn ask(http: &reqwest::Client, url: &str, path: &str, body: &Value) -> Result<Value, EtcdError> {
    let transport = |source| EtcdError::Transport { url: url.to_string(), source };
    let resp = http.post(format!("{url}{path}")).json(body).timeout(ASK_TIMEOUT).send().await.map_err(transport)?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(transport)?;
    if status != 200 {
        return Err(EtcdError::Refused { url: url.to_string(), status, body: text.chars().take(200).collect() });
    }
    serde_json::from_str(&text).map_err(|e| EtcdError::Reply { url: url.to_string(), reason: e.to_string() })
}

/// The status of the member at `url`.
pub async fn status(http: &reqwest::Client, url: &str) -> Result<Status, EtcdError> {
    let reply = ask(http, url, STATUS_PATH, &json!({})).await?;
    parse_status(&reply)
        .ok_or_else(|| EtcdError::Reply { url: url.to_string(), reason: format!("no member id in {reply}") })
}

/// The first key after every key that starts with `prefix` (etcd's `range_end` of a prefix).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: to the end of the keyspace.
    vec![0]
}

/// One page of a range read: keys from `from` (inclusive) up to `end`, linearizable.
pub fn range_body(from: &[u8], end: &[u8]) -> Value {
    json!({ "key": base64(from), "range_end": base64(end), "limit": PAGE.to_string() })
}

/// Key-value pairs, as bytes.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// One page of a range reply: its key-value pairs and whether more follow.
pub fn parse_range(reply: &Value) -> Result<(Pairs, bool), EtcdError> {
    let field = |kv: &Value, name| from_base64(kv.get(name).and_then(Value::as_str).unwrap_or_default());
    let kvs = reply.get("kvs").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let pairs = kvs.iter().map(|kv| Ok((field(kv, "key")?, field(kv, "value")?))).collect::<Result<_, EtcdError>>()?;
    Ok((pairs, reply.get("more").and_then(Value::as_bool).unwrap_or(false)))
}

/// Every key-value pair under `prefix`, read linearizably from the member at `url`, page by page.
async fn read_prefix(http: &reqwest::Client, url: &str, prefix: &[u8]) -> Result<Pairs, EtcdError> {
    let end = prefix_end(prefix);
    let (mut from, mut all) = (prefix.to_vec(), Vec::new());
    for _ in 0..MAX_PAGES {
        let (page, more) = parse_range(&ask(http, url, RANGE_PATH, &range_body(&from, &end)).await?)?;
        let next = page.last().map(|(k, _)| [k.as_slice(), &[0]].concat());
        all.extend(page);
        match next {
            Some(next) if more => from = next,
            _ => return Ok(all),
        }
    }
    Err(EtcdError::Reply { url: url.to_string(), reason: format!("more than {MAX_PAGES} pages under a prefix") })
}

/// The keys `k` under `{ns}/{prefix}` whose value is `k` without `{ns}/` (what
/// [`crate::writes::Writes::start_etcd`] writes), from the first member that answers.
pub async fn written_keys(
    http: &reqwest::Client,
    urls: &[String],
    ns: &str,
    prefix: &str,
) -> Result<BTreeSet<String>, EtcdError> {
    let ns_prefix = format!("{ns}/");
    for url in urls {
        let Ok(pairs) = read_prefix(http, url, format!("{ns_prefix}{prefix}").as_bytes()).await else { continue };
        return Ok(pairs
            .into_iter()
            .filter_map(|(k, v)| String::from_utf8(k).ok().zip(String::from_utf8(v).ok()))
            .filter_map(|(k, v)| (k.strip_prefix(&ns_prefix) == Some(v.as_str())).then_some(v))
            .collect());
    }
    Err(EtcdError::NoRead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_the_standard() {
        for (plain, coded) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")]
        {
            assert_eq!(base64(plain.as_bytes()), coded);
            assert_eq!(from_base64(coded).unwrap(), plain.as_bytes());
        }
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(from_base64(&base64(&bytes)).unwrap(), bytes);
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
        assert_eq!(from_base64("Zm8").unwrap(), b"fo", "padding is optional");
        for bad in ["Z", "Zm9v!", "Zg===", "Zm9=v"] {
            assert!(matches!(from_base64(bad), Err(EtcdError::Base64(_))), "{bad}");
        }
    }

    #[test]
    fn a_put_body_is_base64_key_and_value() {
        assert_eq!(put_body("foo", "bar"), json!({"key": "Zm9v", "value": "YmFy"}));
    }

    /// Replies of etcd 3.4.23 (`curl -X POST .../v3/maintenance/status -d '{}'`).
    #[test]
    fn status_replies_are_read() {
        let leader: Value = serde_json::from_str(
            r#"{"header":{"cluster_id":"6001611773266757492","member_id":"13049071153751544597","revision":"1",
            "raft_term":"2"},"version":"3.4.23","dbSize":"20480","leader":"13049071153751544597","raftIndex":"4",
            "raftTerm":"2","raftAppliedIndex":"4","dbSizeInUse":"16384"}"#,
        )
        .unwrap();
        let s = parse_status(&leader).unwrap();
        assert_eq!(
            s,
            Status {
                member_id: 13049071153751544597,
                leader: 13049071153751544597,
                raft_term: 2,
                raft_index: 4,
                applied_index: 4
            }
        );
        // Without a leader the field is left out (zero), as is any other zero field.
        let orphan = json!({"header": {"member_id": "7", "raft_term": "3"}, "raftIndex": "9", "raftTerm": "3"});
        assert_eq!(
            parse_status(&orphan),
            Some(Status { member_id: 7, leader: 0, raft_term: 3, raft_index: 9, applied_index: 0 })
        );
        assert_eq!(parse_status(&json!({"error": "etcdserver: request timed out"})), None);
    }

    #[test]
    fn prefixes_end_where_etcd_expects() {
        assert_eq!(prefix_end(b"chaos-1/t0-"), b"chaos-1/t0.");
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b");
        assert_eq!(prefix_end(&[0xff, 0xff]), vec![0]);
        assert_eq!(range_body(b"a", b"b"), json!({"key": "YQ==", "range_end": "Yg==", "limit": "1000"}));
    }

    #[test]
    fn range_replies_are_read() {
        let page = json!({"header": {}, "kvs": [
            {"key": "Zm9v", "create_revision": "2", "mod_revision": "2", "version": "1", "value": "YmFy"},
            {"key": "Zm9w", "version": "1"}
        ], "more": true, "count": "3"});
        let (pairs, more) = parse_range(&page).unwrap();
        assert_eq!(pairs, vec![(b"foo".to_vec(), b"bar".to_vec()), (b"fop".to_vec(), vec![])]);
        assert!(more);
        assert_eq!(parse_range(&json!({"header": {}})).unwrap(), (vec![], false));
        assert!(parse_range(&json!({"kvs": [{"key": "!!"}]})).is_err());
    }
}
