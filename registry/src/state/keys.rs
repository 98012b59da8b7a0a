//! Row keys of the data column family. Prefixes keep record kinds apart; namespaces and keys
//! never contain NUL (validated at the API), so NUL separates them.

pub(crate) const NODE: &[u8] = b"n/";
pub(crate) const INSTANCE: &[u8] = b"i/";
pub(crate) const KV: &[u8] = b"k/";
pub(crate) const KV_DELETED: &[u8] = b"d/";
pub(crate) const REQUEST: &[u8] = b"r/";
pub(crate) const DEPLOYMENT: &[u8] = b"D/";
pub(crate) const ASSIGNMENT: &[u8] = b"A/";
/// One row: the log index of the last change to where instances are assigned.
pub(crate) const PLACEMENT_INDEX: &[u8] = b"P/";
/// Client tokens (hashes only), by token id.
pub(crate) const TOKEN: &[u8] = b"T/";
/// One row, present once the bootstrap admin token was recorded (it is never recorded again,
/// also after it is revoked).
pub(crate) const TOKENS_BOOTSTRAPPED: &[u8] = b"B/";
/// One row, present while rescheduling is paused.
pub(crate) const RESCHEDULE_PAUSE: &[u8] = b"S/";
/// Recent versions of KV keys, by namespace, key and the write's log index.
pub(crate) const KV_HISTORY: &[u8] = b"H/";
/// Observed dependencies: client service, then the service it discovered; the value is when.
pub(crate) const OBSERVED: &[u8] = b"O/";

fn key(prefix: &[u8], parts: &[&str]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p.as_bytes());
    }
    k
}

pub(crate) fn node(id: &str) -> Vec<u8> {
    key(NODE, &[id])
}

pub(crate) fn instance(id: &str) -> Vec<u8> {
    key(INSTANCE, &[id])
}

pub(crate) fn kv(ns: &str, k: &str) -> Vec<u8> {
    key(KV, &[ns, k])
}

pub(crate) fn request(id: &str) -> Vec<u8> {
    key(REQUEST, &[id])
}

pub(crate) fn deployment(id: &str) -> Vec<u8> {
    key(DEPLOYMENT, &[id])
}

pub(crate) fn assignment(id: &str) -> Vec<u8> {
    key(ASSIGNMENT, &[id])
}

pub(crate) fn token(id: &str) -> Vec<u8> {
    key(TOKEN, &[id])
}

/// The index is zero-padded so a key's versions sort by it.
pub(crate) fn kv_history(ns: &str, k: &str, mod_index: u64) -> Vec<u8> {
    key(KV_HISTORY, &[ns, k, &format!("{mod_index:020}")])
}

/// Splits a KV history row key's rest into namespace and key (the index is in the row).
pub(crate) fn split_kv_history(rest: &[u8]) -> Option<(String, String)> {
    let last = rest.iter().rposition(|b| *b == 0)?;
    split_kv(&rest[..last])
}

pub(crate) fn observed(from: &str, to: &str) -> Vec<u8> {
    key(OBSERVED, &[from, to])
}

pub(crate) fn kv_deleted(ns: &str) -> Vec<u8> {
    key(KV_DELETED, &[ns])
}

/// Splits a KV row key's rest (after the prefix) into namespace and key.
pub(crate) fn split_kv(rest: &[u8]) -> Option<(String, String)> {
    let sep = rest.iter().position(|b| *b == 0)?;
    let ns = std::str::from_utf8(&rest[..sep]).ok()?;
    let k = std::str::from_utf8(&rest[sep + 1..]).ok()?;
    Some((ns.to_string(), k.to_string()))
}
