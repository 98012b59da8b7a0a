//! Lenient request parsing: JSON bodies whatever the content type, and query strings that
//! some clients send without escaping.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body parsed regardless of `Content-Type`; bad JSON is a 400 with the parser's reason.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else if crate::serve::deadline::is_deadline(&e) {
                ApiError::BodyTimeout(e.body_text())
            } else {
                ApiError::bad(format!("cannot read body: {e}"))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad("request body is empty; expected a JSON object"));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
    }
}

/// Query parameters: split on `&` and the first `=`, percent-decoded where that works and kept
/// as sent where it does not. `+` stays `+` (unescaped clients mean it literally).
#[derive(Debug, Default)]
pub struct Query(pub HashMap<String, String>);

impl Query {
    pub fn parse(raw: &str) -> Query {
        let mut map = HashMap::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(decode(k), decode(v));
        }
        Query(map)
    }

    /// The parameter, if present and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "yes"))
    }

    pub fn number(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::bad(format!("query parameter `{key}` must be a non-negative integer")))
            })
            .transpose()
    }
}

fn decode(s: &str) -> String {
    match percent_encoding::percent_decode_str(s).decode_utf8() {
        Ok(d) => d.into_owned(),
        Err(_) => s.to_string(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(Query::parse(parts.uri.query().unwrap_or("")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescaped_and_escaped_queries_both_parse() {
        let q = Query::parse("service=my svc&version=1.0+b&protocol=&x=%E4%BD%A0&bad=%zz&flag");
        assert_eq!(q.get("service"), Some("my svc"));
        assert_eq!(q.get("version"), Some("1.0+b"));
        assert_eq!(q.get("protocol"), None);
        assert_eq!(q.get("x"), Some("你"));
        assert_eq!(q.get("bad"), Some("%zz"));
        assert!(q.0.contains_key("flag"));
    }

    #[test]
    fn numbers_are_checked() {
        assert_eq!(Query::parse("limit=3").number("limit").unwrap(), Some(3));
        assert!(Query::parse("limit=-1").number("limit").is_err());
        assert_eq!(Query::parse("").number("limit").unwrap(), None);
    }
}
