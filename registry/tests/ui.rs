//! The web console at `/ui`, on a replica run in-process with client authentication on: the
//! page and its files need no token (the API still does), unknown names are JSON 404s like every
//! other error, and no path, however written, reaches anything outside the embedded files.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use plum_registry::config::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

struct Answer {
    status: u16,
    /// Header lines, lower-cased.
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
    }
}

/// A request with the path exactly as written: an HTTP client would resolve `..` and `%2e%2e`
/// before sending, which is what this test must not let happen.
async fn raw_get(addr: SocketAddr, path: &str) -> std::io::Result<Answer> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes)).await??;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok(Answer { status, head: head.to_ascii_lowercase(), body: body.to_string() })
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    raw_get(addr, path).await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_is_served_without_a_token_and_no_path_escapes_it() {
    let replica = common::start_authenticated(Args::default()).await;
    let addr = replica.addr;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !raw_get(addr, "/healthz").await.is_ok_and(|a| a.status == 200) {
        assert!(Instant::now() < deadline, "the replica did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(addr, "/v1/nodes").await.status, 401, "the API needs a token");

    for path in ["/ui", "/ui/"] {
        let page = get(addr, path).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"), "{path}");
        assert_eq!(page.header("cache-control"), Some("no-cache"), "{path}");
        assert!(page.body.starts_with("<!doctype html>"), "{path}");
        assert!(page.header("content-security-policy").is_some_and(|p| p.contains("script-src 'self'")), "{path}");
    }
    for (path, kind) in [("/ui/app.js", "text/javascript; charset=utf-8"), ("/ui/style.css", "text/css; charset=utf-8")]
    {
        let file = get(addr, path).await;
        assert_eq!(file.status, 200, "{path}");
        assert_eq!(file.header("content-type"), Some(kind), "{path}");
        assert_eq!(file.header("cache-control"), Some("no-cache"), "{path}");
    }

    for path in [
        "/ui/nope.js",
        "/ui/../x",
        "/ui/%2e%2e/x",
        "/ui/../Cargo.toml",
        "/ui/../../Cargo.toml",
        "/ui/%2e%2e%2fCargo.toml",
        "/ui/..%2F..%2FCargo.toml",
        "/ui/.%2e/.%2e/registry/Cargo.toml",
        "/ui/%2e%2e",
        "/ui//etc/passwd",
        "/ui/app.js/..",
    ] {
        let answer = get(addr, path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert!(answer.header("content-type").is_some_and(|t| t.starts_with("application/json")), "{path}");
        let body: serde_json::Value =
            serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", answer.body));
        assert!(body["error"].is_string(), "{path}");
        for leaked in ["[package]", "root:", "<!doctype"] {
            assert!(!answer.body.contains(leaked), "{path}: {leaked}");
        }
    }
    replica.close().await;
}
