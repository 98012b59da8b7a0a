//! Span export over OTLP/HTTP (feature `otlp`): a real `plum-controller` process with
//! `--otlp-endpoint` pointing at a fake collector in this test, which records what is POSTed to
//! `/v1/traces` and decodes it with the OTLP protobuf types.
//!
//! `cargo test -p plum-registry --features otlp --test otlp`
#![cfg(feature = "otlp")]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

/// What the fake collector received: (content type, body) per POST.
type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

/// A collector that answers every POST to /v1/traces with 200 and keeps the body.
async fn collector() -> (SocketAddr, Received) {
    let received = Received::default();
    async fn traces(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        received.lock().unwrap().push((content_type, body));
        StatusCode::OK
    }
    let app = axum::Router::new().route("/v1/traces", axum::routing::post(traces)).with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, received)
}

/// A collector that accepts connections and never answers.
async fn black_hole() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    addr
}

struct Replica {
    child: Child,
    base: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    /// Starts replica 1 of a one-replica cluster exporting to `collector`, JSON logs with request
    /// spans, and waits until it takes writes.
    async fn start(collector: SocketAddr) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let listen = format!("127.0.0.1:{port}");
        let log = dir.path().join("replica.log");
        let child = Command::new(env!("CARGO_BIN_EXE_plum-controller"))
            .args(["--id", "1", "--listen", &listen, "--peers", &format!("1={listen}")])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--insecure-no-peer-auth", "--insecure-no-client-auth", "--log-format", "json"])
            .args(["--otlp-endpoint", &format!("http://{collector}")])
            .env("PLUM_LOG", "info,plum::http=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn plum-controller");
        let replica = Replica { child, base: format!("http://{listen}"), log, _dir: dir };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let put = http.put(format!("{}/v1/kv/warmup/k", replica.base)).body(r#"{"value": "v"}"#).send().await;
            if put.is_ok_and(|r| r.status().is_success()) {
                return replica;
            }
            assert!(Instant::now() < deadline, "replica took no write within 30 s: {}", replica.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the time until it exited (at most `within`).
    fn stop(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        while started.elapsed() < within {
            if self.child.try_wait().unwrap().is_some() {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("replica still running {within:?} after SIGTERM: {}", self.logs());
    }
}

/// One field of a protobuf message: a number (varint, fixed) or bytes (length-delimited).
#[derive(Debug, Clone, Copy)]
enum Field<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, rest) = b.split_at(n);
    *b = rest;
    head
}

fn varint(b: &mut &[u8]) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = take(b, 1)[0];
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            break;
        }
    }
    v
}

/// A message's fields in order: (number, value).
fn fields(mut b: &[u8]) -> Vec<(u64, Field<'_>)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        let value = match key & 7 {
            0 => Field::Int(varint(&mut b)),
            1 => Field::Int(u64::from_le_bytes(take(&mut b, 8).try_into().unwrap())),
            2 => {
                let len = varint(&mut b) as usize;
                Field::Bytes(take(&mut b, len))
            }
            5 => Field::Int(u64::from(u32::from_le_bytes(take(&mut b, 4).try_into().unwrap()))),
            wire => panic!("wire type {wire}"),
        };
        out.push((key >> 3, value));
    }
    out
}

fn bytes_of(b: &[u8], number: u64) -> impl Iterator<Item = &[u8]> {
    fields(b).into_iter().filter_map(move |(n, f)| match f {
        Field::Bytes(x) if n == number => Some(x),
        _ => None,
    })
}

fn first_bytes(b: &[u8], number: u64) -> Vec<u8> {
    bytes_of(b, number).next().map(<[u8]>::to_vec).unwrap_or_default()
}

/// `KeyValue { key 1, value 2: AnyValue { string 1, bool 2, int 3 } }`s, values as text.
fn key_values(b: &[u8], number: u64) -> Attributes {
    bytes_of(b, number)
        .map(|kv| {
            let key = String::from_utf8(first_bytes(kv, 1)).unwrap();
            let value = match fields(&first_bytes(kv, 2)).first() {
                Some((1, Field::Bytes(s))) => String::from_utf8(s.to_vec()).unwrap(),
                Some((2 | 3, Field::Int(i))) => (*i as i64).to_string(),
                other => format!("{other:?}"),
            };
            (key, value)
        })
        .collect()
}

/// (key, value as text) pairs.
type Attributes = Vec<(String, String)>;

#[derive(Debug)]
struct Span {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    attributes: Attributes,
}

impl Span {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// `ExportTraceServiceRequest { resource_spans 1: ResourceSpans { resource 1: Resource
/// { attributes 1 }, scope_spans 2: ScopeSpans { spans 2: Span { trace_id 1, span_id 2,
/// parent_span_id 4, name 5, attributes 9 } } } }` → (resource attributes, spans) per
/// resource.
fn decode(body: &[u8]) -> Vec<(Attributes, Vec<Span>)> {
    bytes_of(body, 1)
        .map(|resource_spans| {
            let resource = key_values(&first_bytes(resource_spans, 1), 1);
            let spans = bytes_of(resource_spans, 2)
                .flat_map(|scope_spans| bytes_of(scope_spans, 2).collect::<Vec<_>>())
                .map(|span| Span {
                    trace_id: hex(&first_bytes(span, 1)),
                    span_id: hex(&first_bytes(span, 2)),
                    parent_span_id: hex(&first_bytes(span, 4)),
                    name: String::from_utf8(first_bytes(span, 5)).unwrap(),
                    attributes: key_values(span, 9),
                })
                .collect();
            (resource, spans)
        })
        .collect()
}

fn attribute<'a>(attributes: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_traceparent_is_exported_in_that_trace_under_its_parent() {
    let (addr, received) = collector().await;
    let mut replica = Replica::start(addr).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let put = reqwest::Client::new()
        .put(format!("{}/v1/kv/app/color", replica.base))
        .header("traceparent", format!("00-{trace_id}-{parent_id}-01"))
        .body(r#"{"value": "blue"}"#)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    // Shutdown flushes what is queued (the batch delay is 1 s: it may have left already).
    replica.stop(Duration::from_secs(20));

    let bodies = received.lock().unwrap().clone();
    assert!(!bodies.is_empty(), "the collector received nothing: {}", replica.logs());
    let mut spans = Vec::new();
    for (content_type, body) in &bodies {
        assert_eq!(content_type, "application/x-protobuf");
        for (resource, in_resource) in decode(body) {
            assert_eq!(attribute(&resource, "service.name"), Some("plum-controller"));
            assert_eq!(attribute(&resource, "service.instance.id"), Some("1"));
            spans.extend(in_resource);
        }
    }
    let ours: Vec<_> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let request = ours
        .iter()
        .find(|s| s.name == "request")
        .unwrap_or_else(|| panic!("no request span in trace {trace_id}: {spans:#?}"));
    assert_eq!(request.parent_span_id, parent_id, "the caller's span is the parent");
    assert_eq!(request.attribute("route"), Some("/v1/kv/{ns}/{key}"));
    assert_eq!(request.attribute("method"), Some("PUT"));
    assert_eq!(request.attribute("status"), Some("200"));
    assert_eq!(request.attribute("trace_id"), Some(trace_id));
    // Its proposal is its child, in the same trace.
    let propose = ours.iter().find(|s| s.name == "propose").expect("the write's propose span");
    assert_eq!(propose.parent_span_id, request.span_id);
    // The log names the exported ids: `request_id` is the exported span's id.
    let logs = replica.logs();
    let line = logs
        .lines()
        .find(|l| l.contains(trace_id) && l.contains("request done"))
        .unwrap_or_else(|| panic!("no request line of trace {trace_id}: {logs}"));
    assert!(line.contains(&format!("\"request_id\":\"{}\"", request.span_id)), "{line}");
    // The warm-up requests came without a traceparent: each is a trace of its own, exported.
    assert!(spans.iter().any(|s| s.name == "request" && s.parent_span_id.is_empty()), "{spans:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_slows_no_request_and_shutdown_stays_bounded() {
    let mut replica = Replica::start(black_hole().await).await;
    let http = reqwest::Client::new();
    // Long enough for the first export to start (1 s batch delay) and hang.
    let until = Instant::now() + Duration::from_millis(2500);
    let mut slowest = Duration::ZERO;
    let mut sent = 0;
    while Instant::now() < until {
        let started = Instant::now();
        let put =
            http.put(format!("{}/v1/kv/app/k{sent}", replica.base)).body(r#"{"value": "v"}"#).send().await.unwrap();
        assert!(put.status().is_success(), "{}", put.status());
        slowest = slowest.max(started.elapsed());
        sent += 1;
    }
    assert!(slowest < Duration::from_secs(1), "slowest write {slowest:?} of {sent}");
    // One export hangs for its 3 s timeout, the flush waits at most 5 s: well within 20 s.
    let took = replica.stop(Duration::from_secs(20));
    assert!(took < Duration::from_secs(15), "shutdown took {took:?}");
    let logs = replica.logs();
    assert!(logs.contains("span export"), "no word of the failed export: {logs}");
}
