//! `/ui`: the web console, served by every replica from files compiled into the binary
//! (`registry/ui/`: plain HTML, CSS and JavaScript modules, no build step).
//!
//! The page holds no data: it calls the same API as every client, with a token the operator
//! types in, so its files need none (`auth::policy` lists these routes as public). Only the
//! names below are served; a request names one of them exactly or gets a 404, so no path can
//! reach anything else.

use axum::Router;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::ApiError;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// FNV-1a of the body, computed at compile time: the `ETag`.
    hash: u64,
}

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../../ui/", $name)),
            hash: fnv1a(include_bytes!(concat!("../../ui/", $name))),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file of the console; the first is the page.
static ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("cluster.js", JS),
    asset!("nodes.js", JS),
    asset!("services.js", JS),
    asset!("deployments.js", JS),
    asset!("kv.js", JS),
    asset!("topology.js", JS),
    asset!("style.css", CSS),
];

/// Scripts, styles and API calls from this origin only; no inline code, no frames, no forms
/// that navigate (the token can never end up in a URL).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes (`GET /ui`, `/ui/`, `/ui/{file}`), for the API router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/ui", get(index)).route("/ui/", get(index)).route("/ui/{file}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    serve(&ASSETS[0], &headers)
}

async fn file(path: Result<Path<String>, PathRejection>, headers: HeaderMap) -> Response {
    match path.ok().and_then(|Path(name)| find(&name)) {
        Some(asset) => serve(asset, &headers),
        None => ApiError::NotFound("no such console file".into()).into_response(),
    }
}

/// The asset with exactly this name (after percent-decoding): never a path to follow.
fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", asset.hash);
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| t == etag || t == "*"));
    let mut resp = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let hs = resp.headers_mut();
    // Always revalidated (cheap: a 304 by ETag), so a replica upgrade shows at the next load.
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        hs.insert(header::ETAG, v);
    }
    hs.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    hs.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    hs.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get_ui(uri: &str, if_none_match: Option<&str>) -> Response {
        let mut req = Request::get(uri);
        if let Some(tag) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        routes::<()>().oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }

    fn content_type(resp: &Response) -> &str {
        resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    #[tokio::test]
    async fn ui_page_and_assets_have_their_types_and_are_revalidated() {
        for (uri, want) in [("/ui", HTML), ("/ui/", HTML), ("/ui/app.js", JS), ("/ui/style.css", CSS)] {
            let resp = get_ui(uri, None).await;
            assert_eq!(resp.status(), StatusCode::OK, "{uri}");
            assert_eq!(content_type(&resp), want, "{uri}");
            assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-cache", "{uri}");
            assert_eq!(resp.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{uri}");
        }
        let first = get_ui("/ui/app.js", None).await;
        let tag = first.headers()[header::ETAG].to_str().unwrap().to_string();
        let again = get_ui("/ui/app.js", Some(&tag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(get_ui("/ui/app.js", Some("\"other\"")).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn ui_unknown_or_escaping_names_are_404_json() {
        for uri in ["/ui/nope.js", "/ui/%2e%2e%2fCargo.toml", "/ui/..%2F..%2FCargo.toml", "/ui/%2e%2e", "/ui/app.js%00"]
        {
            let resp = get_ui(uri, None).await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{uri}");
            assert!(content_type(&resp).starts_with("application/json"), "{uri}");
            let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(body["error"].is_string(), "{uri}");
        }
        assert!(find("../ui/app.js").is_none() && find("./app.js").is_none() && find("").is_none());
    }

    /// Every file the page and the modules name is one that is served, and every served file is
    /// used: a renamed module cannot break the console unnoticed.
    #[test]
    fn ui_files_named_by_the_page_and_modules_are_all_embedded() {
        let mut named = std::collections::BTreeSet::from(["index.html".to_string()]);
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.body).unwrap();
            for (open, close) in [("\"/ui/", '"'), ("'./", '\'')] {
                for part in text.split(open).skip(1) {
                    named.insert(part.split(close).next().unwrap().to_string());
                }
            }
        }
        let served: std::collections::BTreeSet<String> = ASSETS.iter().map(|a| a.name.to_string()).collect();
        assert_eq!(named, served);
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.body).unwrap();
            // No markup built from strings; the token stays in sessionStorage.
            for banned in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "localStorage"] {
                assert!(!text.contains(banned), "{} uses {banned}", asset.name);
            }
        }
    }
}
