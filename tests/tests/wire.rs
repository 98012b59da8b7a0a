//! Weak networks: gzip negotiated on the wire (both ways) and batch registration/heartbeats
//! (docs/API.md, "Weak networks"). Bodies are measured as they cross the socket: requests
//! are written by hand on a TCP stream, so no client library decompresses anything.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use plum_tests::TestCluster;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GENEROUS: Duration = Duration::from_secs(30);

/// A response as it came off the socket: the body de-chunked but not decompressed.
struct Wire {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Wire {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

fn split_head(raw: &[u8]) -> Option<(u16, HashMap<String, String>, usize)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((status, headers, end + 4))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).expect("chunk size");
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// One request on a fresh connection, read to the end.
async fn send_raw(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Wire {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(req.as_bytes()).await.expect("send head");
    stream.write_all(body).await.expect("send body");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("answer within 10 s")
        .expect("read");
    let (status, headers, body_at) = split_head(&raw).expect("an HTTP response");
    let body = &raw[body_at..];
    let body = if headers.get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Wire { status, headers, body }
}

async fn get_raw(addr: &str, path: &str, accept_encoding: Option<&str>) -> Wire {
    let headers: Vec<(&str, &str)> = accept_encoding.map(|e| ("Accept-Encoding", e)).into_iter().collect();
    send_raw(addr, "GET", path, &headers, b"").await
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out).expect("a gzip body");
    out
}

#[tokio::test]
async fn gzip_is_negotiated_both_ways() {
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_leader(GENEROUS).await;
    let follower = cluster.ids().into_iter().find(|&id| id != leader).expect("a follower");
    let addr = cluster.addr(follower);

    // A KV list big enough to be worth compressing, written with a gzip-compressed body.
    let items: Vec<Value> = (0..200)
        .map(|i| json!({"key": format!("key-{i:03}"), "value": format!("some configuration value number {i}")}))
        .collect();
    let batch = serde_json::to_vec(&json!({ "items": items })).unwrap();
    let zipped = gzip(&batch);
    assert!(zipped.len() < batch.len());
    let headers = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")];
    let sent = send_raw(&addr, "POST", "/v1/kv/wire/batch", &headers, &zipped).await;
    assert_eq!(sent.status, 200, "{}", String::from_utf8_lossy(&sent.body));
    let answer: Value = serde_json::from_slice(&sent.body).expect("plain JSON: the client did not ask for gzip");
    assert_eq!(answer["count"], json!(200));

    // The same answer, plain and gzip-compressed: fewer bytes on the wire, same JSON.
    let path = "/v1/kv/wire?consistent=true";
    let plain = get_raw(&addr, path, None).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None, "no Accept-Encoding: no compression");
    let plain_json: Value = serde_json::from_slice(&plain.body).expect("plain JSON");
    assert_eq!(plain_json.as_array().map(Vec::len), Some(200));

    let zipped = get_raw(&addr, path, Some("gzip")).await;
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert!(zipped.header("vary").is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")));
    assert!(
        zipped.body.len() * 3 < plain.body.len(),
        "gzip: {} bytes on the wire, plain: {}",
        zipped.body.len(),
        plain.body.len()
    );
    let inflated: Value = serde_json::from_slice(&gunzip(&zipped.body)).expect("JSON inside the gzip");
    assert_eq!(inflated, plain_json);

    // A client that declines compression gets plain JSON.
    let declined = get_raw(&addr, path, Some("identity")).await;
    assert_eq!(declined.header("content-encoding"), None);
    assert_eq!(serde_json::from_slice::<Value>(&declined.body).expect("plain JSON"), plain_json);

    // A single write with a gzip body, then a body that claims gzip but is not: a JSON 400.
    let put = gzip(br#"{"value": "zipped"}"#);
    let sent = send_raw(&addr, "PUT", "/v1/kv/wire/single", &[("Content-Encoding", "gzip")], &put).await;
    assert_eq!(sent.status, 200, "{}", String::from_utf8_lossy(&sent.body));
    assert_eq!(cluster.get_kv(leader, "wire", "single").await.as_deref(), Some("zipped"));
    let sent = send_raw(&addr, "PUT", "/v1/kv/wire/broken", &[("Content-Encoding", "gzip")], b"{\"value\":1}").await;
    assert_eq!(sent.status, 400);
    assert!(serde_json::from_slice::<Value>(&sent.body).expect("JSON error")["error"].is_string());
    let sent = send_raw(&addr, "POST", "/v1/deployments", &[("Content-Encoding", "gzip")], b"{}").await;
    assert_eq!(sent.status, 400, "a route a follower passes to the leader reads the body the same way");
    assert!(serde_json::from_slice::<Value>(&sent.body).expect("JSON error")["error"].is_string());
    let sent = send_raw(&addr, "PUT", "/v1/kv/wire/broken", &[("Content-Encoding", "br")], b"x").await;
    assert_eq!(sent.status, 415);
    assert!(serde_json::from_slice::<Value>(&sent.body).expect("JSON error")["error"].is_string());

    // Tiny answers and the health probe stay plain.
    let health = get_raw(&addr, "/healthz", Some("gzip")).await;
    assert_eq!((health.status, health.header("content-encoding"), &health.body[..]), (200, None, &b"ok"[..]));

    // Server-sent events are never compressed, and the first one arrives at once.
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let req = format!("GET /v1/stream?nodeId=n1 HTTP/1.1\r\nHost: {addr}\r\nAccept-Encoding: gzip\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let started = Instant::now();
    let first_event = tokio::time::timeout(Duration::from_secs(3), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "stream closed");
            raw.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&raw).contains("event: assignments") {
                return;
            }
        }
    })
    .await;
    assert!(first_event.is_ok(), "no event within 3 s: {}", String::from_utf8_lossy(&raw));
    let (status, headers, _) = split_head(&raw).expect("response head");
    assert_eq!(status, 200);
    assert_eq!(headers.get("content-type").map(String::as_str), Some("text/event-stream"));
    assert_eq!(headers.get("content-encoding"), None, "events are not compressed");
    assert!(started.elapsed() < Duration::from_secs(3));
}

fn endpoint_ports(endpoints: &Value) -> Vec<u64> {
    let mut ports: Vec<u64> = endpoints.as_array().expect("a list").iter().filter_map(|e| e["port"].as_u64()).collect();
    ports.sort();
    ports
}

#[tokio::test]
async fn batch_register_and_heartbeat() {
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_leader(GENEROUS).await;
    let follower = cluster.ids().into_iter().find(|&id| id != leader).expect("a follower");
    let discover = async |service: &str| -> Value {
        cluster.get_json(leader, &format!("/v1/discovery?service={service}&consistent=true")).await.expect("discovery")
    };
    let item = |id: &str, port: u16| {
        json!({"instanceId": id, "nodeId": "n1", "ip": "10.0.0.1", "ttlMs": 1000,
               "endpoints": [{"serviceName": "batched", "port": port, "protocol": "http"}]})
    };

    // Three registrations in one call, sent to a follower.
    let body = json!({"items": [item("b1", 9001), item("b2", 9002), item("b3", 9003)]});
    let (s, answer) = cluster.call(follower, Method::POST, "/v1/services/register/batch", Some(body)).await.unwrap();
    assert_eq!((s, answer), (200, json!({"count": 3, "heartbeatIntervalMs": 250})), "a quarter of the 1 s TTL");
    assert_eq!(endpoint_ports(&discover("batched").await), vec![9001, 9002, 9003]);

    // One heartbeat batch: a renewal, a health change, an instance nobody registered.
    let beat = json!({"items": [
        {"instanceId": "b1"},
        {"instanceId": "b2", "health": [{"serviceName": "batched", "port": 9002, "healthy": false}]},
        {"instanceId": "never-registered"},
    ]});
    let (s, answer) = cluster.call(follower, Method::POST, "/v1/services/heartbeat/batch", Some(beat)).await.unwrap();
    assert_eq!((s, answer), (200, json!({"count": 2, "unknown": ["never-registered"], "heartbeatIntervalMs": 250})));
    assert_eq!(endpoint_ports(&discover("batched").await), vec![9001, 9003], "b2 reported itself unhealthy");

    // Batched renewals keep b1 and b2 alive (1 s TTL) for three seconds; b3, silent, expires.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let beat = json!({"items": [{"instanceId": "b1"}, {"instanceId": "b2"}]});
        let (s, answer) =
            cluster.call(follower, Method::POST, "/v1/services/heartbeat/batch", Some(beat)).await.unwrap();
        assert_eq!((s, &answer), (200, &json!({"count": 2, "unknown": [], "heartbeatIntervalMs": 250})));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(endpoint_ports(&discover("batched").await), vec![9001], "b1 renewed; b2 unhealthy; b3 expired");

    // One bad item refuses the whole batch, names the item, and registers nothing.
    let bad = json!({"items": [item("b4", 9004), {"instanceId": "b5", "ip": "10.0.0.1",
                                "endpoints": [{"serviceName": "batched", "port": 0}]}]});
    let (s, answer) = cluster.call(follower, Method::POST, "/v1/services/register/batch", Some(bad)).await.unwrap();
    assert_eq!(s, 400, "{answer}");
    assert!(answer["error"].as_str().is_some_and(|e| e.starts_with("items[1]:")), "{answer}");
    assert_eq!(answer["detail"]["index"], json!(1));
    assert_eq!(endpoint_ports(&discover("batched").await), vec![9001], "b4 was not registered");
    let bad = json!({"items": [{"instanceId": "b1"}, {"instanceId": ""}]});
    let (s, answer) = cluster.call(follower, Method::POST, "/v1/services/heartbeat/batch", Some(bad)).await.unwrap();
    assert_eq!((s, &answer["detail"]["index"]), (400, &json!(1)), "{answer}");

    // Batches are bounded.
    let many: Vec<Value> = (0..1001).map(|i| json!({"instanceId": format!("x{i}")})).collect();
    let (s, answer) = cluster
        .call(leader, Method::POST, "/v1/services/heartbeat/batch", Some(json!({ "items": many })))
        .await
        .unwrap();
    assert_eq!(s, 400);
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("at most 1000")), "{answer}");

    // The weak-network combination: a gzip-compressed batch.
    let body = serde_json::to_vec(&json!({"items": [item("b6", 9006), item("b7", 9007)]})).unwrap();
    let sent = send_raw(
        &cluster.addr(follower),
        "POST",
        "/v1/services/register/batch",
        &[("Content-Encoding", "gzip")],
        &gzip(&body),
    )
    .await;
    assert_eq!(sent.status, 200, "{}", String::from_utf8_lossy(&sent.body));
    assert_eq!(endpoint_ports(&discover("batched").await), vec![9001, 9006, 9007]);
}
