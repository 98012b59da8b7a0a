//! gzip on the wire for the public API, negotiated per request: a response is compressed only
//! when the client sends `Accept-Encoding: gzip`; a request body sent with
//! `Content-Encoding: gzip` is inflated before any handler (and the body limit) sees it.

use axum::Json;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use plum_types::ErrorBody;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::decompression::RequestDecompressionLayer;

/// An answer that fits one TCP segment gains no round trip from gzip, and each costs a
/// compressor: a profile of 50 clients reading discovery (about 1 KB answers) spent a fifth
/// of the replica's CPU in deflate with the old 256-byte threshold.
const MIN_COMPRESSED: u16 = 1400;

/// Wraps every route of `router` (and its fallbacks) with the gzip layers.
pub fn gzip<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    // A custom predicate replaces tower-http's default, so it keeps the default's exclusions:
    // above all server-sent events, which a compressor would hold back until its buffer fills.
    // Long polls (`watch=true`) answer with one whole JSON body, which compresses as usual.
    let worth_it = SizeAbove::new(MIN_COMPRESSED)
        .and(NotForContentType::SSE)
        .and(NotForContentType::GRPC)
        .and(NotForContentType::IMAGES);
    router
        .layer(RequestDecompressionLayer::new())
        .layer(middleware::map_response(errors_as_json))
        // The fastest level: on a weak link the first factor of compression is what counts, and
        // the CPU is the controllers' to spend on consensus.
        .layer(
            CompressionLayer::new()
                .no_br()
                .no_deflate()
                .no_zstd()
                .quality(CompressionLevel::Fastest)
                .compress_when(worth_it),
        )
}

/// Every error of this API is a JSON object. Two kinds are made outside our handlers: the
/// decompression layer's empty `415` for an encoding it cannot read, and axum's plain-text `400`
/// when an extractor refuses a request (a path segment that is not UTF-8, say).
async fn errors_as_json(resp: Response) -> Response {
    let status = resp.status();
    if status == StatusCode::UNSUPPORTED_MEDIA_TYPE && !resp.headers().contains_key(header::CONTENT_TYPE) {
        let accepted = resp.headers().get(header::ACCEPT_ENCODING).cloned();
        let body = ErrorBody::new("unsupported Content-Encoding: send the body as gzip or uncompressed");
        let mut json = (status, Json(body)).into_response();
        if let Some(v) = accepted {
            json.headers_mut().insert(header::ACCEPT_ENCODING, v);
        }
        return json;
    }
    let plain = resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if !status.is_client_error() || !plain {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let mut json = (status, Json(ErrorBody::new(String::from_utf8_lossy(&text).trim()))).into_response();
    for name in [header::ALLOW, header::ACCEPT_ENCODING] {
        if let Some(v) = parts.headers.get(&name) {
            json.headers_mut().insert(name, v.clone());
        }
    }
    json
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;

    use axum::body::Bytes;
    use axum::extract::DefaultBodyLimit;
    use axum::response::sse::{Event, Sse};
    use axum::routing::{get, post};
    use futures::StreamExt;

    use super::*;

    fn big_json() -> serde_json::Value {
        let items: Vec<serde_json::Value> = (0..200)
            .map(|i| serde_json::json!({"serviceName": "web", "instanceId": format!("i-{i}"), "port": 8000 + i}))
            .collect();
        serde_json::Value::Array(items)
    }

    /// A server on loopback with the layers, as `api::router` builds them.
    async fn serve() -> String {
        let sse = || async {
            // One event, then an open stream: a buffering compressor would never let it out.
            let events = futures::stream::once(async { Ok::<_, std::convert::Infallible>(Event::default().data("1")) })
                .chain(futures::stream::pending());
            Sse::new(events)
        };
        let app = gzip(
            Router::new()
                .route("/big", get(|| async { Json(big_json()) }))
                .route("/tiny", get(|| async { "ok" }))
                .route("/sse", get(sse))
                .route("/echo", post(|body: Bytes| async move { body }))
                .layer(DefaultBodyLimit::max(64 * 1024)),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn gzipped(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn client() -> reqwest::Client {
        // No automatic decompression (the SDK turns on reqwest's gzip feature for the workspace): the
        // tests look at the bytes as sent.
        reqwest::Client::builder().no_proxy().no_gzip().timeout(Duration::from_secs(5)).build().unwrap()
    }

    #[tokio::test]
    async fn responses_are_gzipped_only_when_asked_and_worth_it() {
        let base = serve().await;
        let http = client();
        let plain = http.get(format!("{base}/big")).send().await.unwrap();
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let plain = plain.bytes().await.unwrap();
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&plain).unwrap(), big_json());

        let zipped = http.get(format!("{base}/big")).header(header::ACCEPT_ENCODING, "gzip").send().await.unwrap();
        assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
        let zipped = zipped.bytes().await.unwrap();
        assert!(zipped.len() < plain.len() / 4, "{} vs {} bytes", zipped.len(), plain.len());
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(&zipped[..]).read_to_end(&mut inflated).unwrap();
        assert_eq!(inflated, plain);

        let tiny = http.get(format!("{base}/tiny")).header(header::ACCEPT_ENCODING, "gzip").send().await.unwrap();
        assert!(tiny.headers().get(header::CONTENT_ENCODING).is_none(), "tiny answers stay plain");
        assert_eq!(tiny.text().await.unwrap(), "ok");
        let refused =
            http.get(format!("{base}/big")).header(header::ACCEPT_ENCODING, "gzip;q=0, identity").send().await.unwrap();
        assert!(refused.headers().get(header::CONTENT_ENCODING).is_none());
    }

    #[tokio::test]
    async fn server_sent_events_are_never_compressed_and_arrive_at_once() {
        let base = serve().await;
        let mut resp =
            client().get(format!("{base}/sse")).header(header::ACCEPT_ENCODING, "gzip").send().await.unwrap();
        assert!(resp.headers().get(header::CONTENT_ENCODING).is_none());
        let first = tokio::time::timeout(Duration::from_secs(2), resp.chunk()).await.expect("event held back");
        assert!(String::from_utf8_lossy(&first.unwrap().unwrap()).contains("data: 1"));
    }

    #[tokio::test]
    async fn gzipped_request_bodies_are_inflated_within_the_body_limit() {
        let base = serve().await;
        let http = client();
        let body = br#"{"hello": "world"}"#;
        let sent = http
            .post(format!("{base}/echo"))
            .header(header::CONTENT_ENCODING, "gzip")
            .body(gzipped(body))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), 200);
        assert_eq!(sent.bytes().await.unwrap(), &body[..]);
        // A small gzip that inflates beyond the limit is refused like a big body.
        let bomb = gzipped(&vec![b' '; 1024 * 1024]);
        assert!(bomb.len() < 64 * 1024);
        let sent = http.post(format!("{base}/echo")).header(header::CONTENT_ENCODING, "gzip").body(bomb).send().await;
        assert_eq!(sent.unwrap().status(), 413);
        // Not gzip at all, or an encoding we do not read: 4xx with a JSON body.
        let sent =
            http.post(format!("{base}/echo")).header(header::CONTENT_ENCODING, "gzip").body("plain").send().await;
        assert_eq!(sent.unwrap().status(), 400);
        let sent =
            http.post(format!("{base}/echo")).header(header::CONTENT_ENCODING, "br").body("x").send().await.unwrap();
        assert_eq!(sent.status(), 415);
        let body: ErrorBody = sent.json().await.unwrap();
        assert!(body.error.contains("Content-Encoding"), "{}", body.error);
    }
}
