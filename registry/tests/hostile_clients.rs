//! Clients that try to exhaust a replica: headers that never finish (slowloris), bodies that
//! drip, headers too large, too many connections from one address. Each is cut off with a clear
//! answer while other clients keep being served. One in-process replica with tight limits.

use std::time::{Duration, Instant};

use plum_registry::config::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_TIMEOUT_MS: u64 = 1000;
const BODY_TIMEOUT_MS: u64 = 1000;
const PER_CLIENT: usize = 8;

mod common;

use common::Replica;

async fn start() -> Replica {
    let replica = common::start(Args {
        header_timeout_ms: Some(HEADER_TIMEOUT_MS),
        body_timeout_ms: Some(BODY_TIMEOUT_MS),
        max_connections_per_client: Some(PER_CLIENT),
        ..Args::default()
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while put(&replica, "ready").await != Some(200) {
        assert!(Instant::now() < deadline, "the replica never accepted a write");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    replica
}

/// A well-behaved client's write, on a fresh connection.
async fn put(r: &Replica, key: &str) -> Option<u16> {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
    let url = format!("{}/v1/kv/app/{key}", r.base());
    Some(http.put(url).json(&serde_json::json!({"value": "v"})).send().await.ok()?.status().as_u16())
}

/// Reads until the peer closes (or `limit` passes): what it answered, and when it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into(), Some(start.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    (String::from_utf8_lossy(&got).into(), None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_that_never_finish_are_cut_off_while_others_are_served() {
    let r = start().await;
    let mut slow = TcpStream::connect(r.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // Drip a header byte every 200 ms: always sending, never done.
    let drip = async {
        for _ in 0..100 {
            if slow.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let started = Instant::now();
    let served = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        put(&r, "meanwhile").await
    };
    let ((), served) = tokio::join!(drip, served);
    assert_eq!(served, Some(200), "others are served while a slow client drips");
    let closed_after = started.elapsed();
    assert!(closed_after < Duration::from_secs(10), "the dripping connection was closed after {closed_after:?}");
    assert!(closed_after >= Duration::from_millis(HEADER_TIMEOUT_MS), "not before the header timeout");
    r.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_drips_gets_408_and_changes_nothing() {
    let r = start().await;
    let mut stream = TcpStream::connect(r.addr).await.unwrap();
    let head =
        "PUT /v1/kv/app/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"{\"value\":").await.unwrap();
    let (answer, _) = async {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let _ = stream.write_all(b" ").await;
        }
        read_until_closed(&mut stream, Duration::from_secs(10)).await
    }
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\""), "a JSON error: {answer}");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let got = http.get(format!("http://{}/v1/kv/app/slow", r.addr)).send().await.unwrap().status();
    assert_eq!(got, 404, "nothing was written");
    r.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_too_large_are_refused() {
    let r = start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{}/v1/nodes", r.addr);
    // Over our limits (32 KiB, 64 headers): a JSON error that says which.
    let big = http.get(&url).header("x-filler", "x".repeat(40 * 1024)).send().await.unwrap();
    assert_eq!(big.status(), 431);
    let body: serde_json::Value = big.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("bytes of request line and headers"), "{body}");
    let many = (0..100).fold(http.get(&url), |req, i| req.header(format!("x-h{i}"), "1"));
    let many = many.send().await.unwrap();
    assert_eq!(many.status(), 431, "too many headers");
    let body: serde_json::Value = many.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("headers: at most 64"), "{body}");
    // Far over them, hyper stops reading (a bare 431).
    let huge = http.get(&url).header("x-filler", "x".repeat(100 * 1024)).send().await.unwrap();
    assert_eq!(huge.status(), 431);
    assert_eq!(put(&r, "after").await, Some(200));
    r.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_a_bounded_number_of_connections() {
    let r = start().await;
    // Give the connections of `start` time to close.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut held = Vec::new();
    for _ in 0..PER_CLIENT {
        held.push(TcpStream::connect(r.addr).await.unwrap());
    }
    let mut extra = TcpStream::connect(r.addr).await.unwrap();
    let (answer, closed) = read_until_closed(&mut extra, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");
    assert!(closed.is_some(), "and closed");
    // A held connection still works; once some close, new ones are admitted again.
    let first = &mut held[0];
    first.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let (answer, _) = read_until_closed(first, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    held.clear();
    let deadline = Instant::now() + Duration::from_secs(10);
    while put(&r, "again").await != Some(200) {
        assert!(Instant::now() < deadline, "connections were not given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_in_flight_limit_get_429_at_once_and_watches_do_not_count() {
    let r =
        common::start(Args { max_in_flight: Some(1), body_timeout_ms: Some(BODY_TIMEOUT_MS), ..Args::default() }).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while put(&r, "ready").await != Some(200) {
        assert!(Instant::now() < deadline, "the replica never accepted a write");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A watch waits without taking the one place.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let watch = http.get(format!("{}/v1/kv/app?watch=true&index=999999&timeoutMs=3000", r.base())).send();
    let watch = tokio::spawn(watch);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(put(&r, "beside-a-watch").await, Some(200), "a watch does not count");
    // A request whose body drips holds the one place while it is read.
    let mut slow = TcpStream::connect(r.addr).await.unwrap();
    let head = "PUT /v1/kv/app/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{";
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let resp = http
        .put(format!("{}/v1/kv/app/other", r.base()))
        .json(&serde_json::json!({"value": "v"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(started.elapsed() < Duration::from_millis(500), "refused at once, not queued");
    assert_eq!(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["retryable"], serde_json::json!(true), "{body}");
    // The slow body times out (408) and gives the place back.
    let (answer, _) = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(put(&r, "after").await, Some(200));
    assert!(watch.await.unwrap().is_ok_and(|w| w.status() == 200));
    r.close().await;
}
