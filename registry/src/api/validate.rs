//! Input limits and checks: bad input is answered with a 400 and changes nothing.

use std::collections::BTreeMap;

use base64::Engine;
use plum_types::KvType;

use super::error::ApiError;

pub use crate::state::limits::{
    MAX_BATCH, MAX_ENDPOINTS, MAX_ID, MAX_KV_VALUE, MAX_LABEL_KEY, MAX_LABEL_VALUE, MAX_LABELS, MAX_SHORT,
};
use crate::state::limits::{check_name, check_text};

/// A name: non-empty, bounded, printable (no control characters, so no NUL in row keys).
pub fn name(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    check_name(field, value, max).map_err(ApiError::BadRequest)
}

/// Optional text: bounded and printable.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    check_text(field, value, max).map_err(ApiError::BadRequest)
}

pub fn labels(field: &str, labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::bad(format!("`{field}` has more than {MAX_LABELS} entries")));
    }
    for (k, v) in labels {
        name(&format!("{field} key"), k, MAX_LABEL_KEY)?;
        text(&format!("{field}.{k}"), v, MAX_LABEL_VALUE)?;
    }
    Ok(())
}

pub fn port(field: &str, port: u32) -> Result<u16, ApiError> {
    match u16::try_from(port) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ApiError::bad(format!("`{field}` must be a port between 1 and 65535"))),
    }
}

/// Checks a KV value against its declared type.
pub fn kv_value(value: &str, kind: KvType) -> Result<(), ApiError> {
    if value.len() > MAX_KV_VALUE {
        return Err(ApiError::bad(format!("`value` is longer than {MAX_KV_VALUE} bytes")));
    }
    let ok = match kind {
        KvType::String => true,
        KvType::Int => value.trim().parse::<i64>().is_ok(),
        KvType::Double => value.trim().parse::<f64>().is_ok(),
        KvType::Bool => matches!(value.trim(), "true" | "false"),
        KvType::Bytes => base64::engine::general_purpose::STANDARD.decode(value).is_ok(),
    };
    if ok { Ok(()) } else { Err(ApiError::bad(format!("`value` is not a valid {}", kind.as_str()))) }
}

pub fn kv_type(raw: &str) -> Result<KvType, ApiError> {
    KvType::parse(raw)
        .ok_or_else(|| ApiError::bad(format!("unknown type `{raw}`: use string, int, double, bool or bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values() {
        assert!(name("nodeId", "", 10).is_err());
        assert!(name("nodeId", "a\0b", 10).is_err());
        assert!(name("nodeId", "abcdefghijk", 10).is_err());
        assert!(name("nodeId", "node-1", 10).is_ok());
        assert!(port("port", 0).is_err());
        assert!(port("port", 70000).is_err());
        assert_eq!(port("port", 8080).unwrap(), 8080);
        assert!(kv_value("12", KvType::Int).is_ok());
        assert!(kv_value("1.5", KvType::Int).is_err());
        assert!(kv_value("1.5", KvType::Double).is_ok());
        assert!(kv_value("yes", KvType::Bool).is_err());
        assert!(kv_value("aGVsbG8=", KvType::Bytes).is_ok());
        assert!(kv_value("***", KvType::Bytes).is_err());
        assert!(kv_type("float").is_err());
        assert_eq!(kv_type("").unwrap(), KvType::String);
    }
}
