//! Binary bodies between replicas: MessagePack with field names (compact, and tolerant of
//! openraft's wire structs that default missing fields).

use super::peer_auth::PeerAuth;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub const CONTENT_TYPE: &str = "application/msgpack";

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("decode: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

/// Nesting (arrays, maps) a message from another replica may have. The deepest real one (an
/// append carrying a deployment's spec or a batch of registrations) has about 13 levels. A body
/// nested a few hundred deep (`Op::Batch` in `Op::Batch` ...) overflowed the 2 MiB stack of the
/// task decoding it in a debug build before rmp-serde's own limit (1024) applied.
const MAX_DEPTH: usize = 64;

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    de.set_max_depth(MAX_DEPTH);
    Ok(T::deserialize(&mut de)?)
}

/// A MessagePack response body.
pub struct Binary<T>(pub T);

impl<T: Serialize> IntoResponse for Binary<T> {
    fn into_response(self) -> Response {
        match encode(&self.0) {
            Ok(bytes) => {
                let mut resp = Bytes::from(bytes).into_response();
                resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
                resp
            }
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
}

/// Why a call to another replica failed: never sent (safe to retry elsewhere) or maybe delivered.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("{0}")]
    Other(String),
}

/// POSTs `body` as MessagePack to `url` and decodes the MessagePack answer. Used for Raft RPCs
/// and for the replicas' internal calls alike.
pub async fn post<Req: Serialize, Resp: DeserializeOwned>(
    http: &reqwest::Client,
    auth: &PeerAuth,
    url: &str,
    body: &Req,
    timeout: std::time::Duration,
    from: Option<u64>,
) -> Result<Resp, PeerError> {
    let bytes = encode(body).map_err(|e| PeerError::Other(e.to_string()))?;
    // `http://host:port/path` -> `/path`: what the receiving replica sees and checks.
    let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap_or_default();
    let signature = auth.sign("POST", &path, &bytes);
    let mut req = http.post(url).header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE).body(bytes).timeout(timeout);
    if let Some(signature) = signature {
        req = req.header(super::peer_auth::HEADER, signature);
    }
    if let Some(from) = from {
        req = req.header(plum_types::headers::FORWARDED, from.to_string());
    }
    // A call made while serving a request (a forwarded write, a read index) continues its trace.
    if let Some(trace) = crate::trace::outgoing() {
        req = req.header(plum_types::traceparent::HEADER, trace.to_string());
    }
    let resp = req.send().await.map_err(|e| {
        if e.is_connect() { PeerError::Connect(format!("{url}: {e}")) } else { PeerError::Other(format!("{url}: {e}")) }
    })?;
    let status = resp.status();
    let answer = resp.bytes().await.map_err(|e| PeerError::Other(format!("{url}: {e}")))?;
    if !status.is_success() {
        return Err(PeerError::Other(format!("{url}: HTTP {status}: {}", String::from_utf8_lossy(&answer))));
    }
    decode(&answer).map_err(|e| PeerError::Other(format!("{url}: {e}")))
}
