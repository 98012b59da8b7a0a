//! The fault proxy on loopback: bytes pass unchanged, each fault does what it says on a live
//! connection, heals restore traffic, the control API answers errors in JSON, and the CLI drives
//! a real `plum-faultproxy serve` process.
//!
//! Timing bounds are generous (a noisy 2-core machine): a delay is asserted as at least what was
//! set and less than that plus a second; "nothing arrives" is watched for `QUIET`; anything that
//! must happen gets `WAIT`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use plum_chaos::proxy::{ClientError, ControlClient, Direction, Faults, LinkSpec, Proxy, Shaping, control};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

/// Bound on anything that must happen.
const WAIT: Duration = Duration::from_secs(5);
/// How long we watch for bytes that must not arrive.
const QUIET: Duration = Duration::from_millis(800);

/// A proxy with its control API on a free loopback port; the API stops when this drops.
struct Lab {
    proxy: Proxy,
    client: ControlClient,
    control: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn lab() -> Lab {
    let proxy = Proxy::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(control::serve(listener, proxy.clone(), async {
        let _ = stopped.await;
    }));
    let client = ControlClient::new(&control.to_string()).unwrap();
    Lab { proxy, client, control, _stop: stop }
}

impl Lab {
    /// Adds a link on a free port to `upstream`; returns where to connect.
    async fn link(&self, name: &str, upstream: SocketAddr) -> SocketAddr {
        let spec = LinkSpec { listen: "127.0.0.1:0".parse().unwrap(), upstream, faults: None };
        self.client.add(name, &spec).await.unwrap().listen
    }

    async fn set(&self, name: &str, faults: Faults) {
        self.client.set_faults(name, &faults).await.unwrap();
    }
}

/// An echo server; counts the connections it accepted.
async fn echo_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                    let _ = w.shutdown().await;
                }
            });
        }
    });
    (addr, accepted)
}

/// A server that hands each accepted connection to the test, to watch both directions apart.
async fn handover_server() -> (SocketAddr, mpsc::UnboundedReceiver<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            if tx.send(stream).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = timeout(WAIT, TcpStream::connect(addr)).await.expect("connect timed out").unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

async fn read_exactly(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    timeout(WAIT, stream.read_exact(&mut buf)).await.expect("bytes did not arrive in time").unwrap();
    buf
}

/// Writes `msg` and reads it back (through an echo server); returns how long that took.
async fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> Duration {
    let start = Instant::now();
    stream.write_all(msg).await.unwrap();
    let mut buf = vec![0u8; msg.len()];
    timeout(Duration::from_secs(10), stream.read_exact(&mut buf)).await.expect("no echo in 10 s").unwrap();
    assert_eq!(buf, msg);
    start.elapsed()
}

/// Asserts that nothing arrives on `stream` for `QUIET`.
async fn assert_silent(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    match timeout(QUIET, stream.read(&mut buf)).await {
        Err(_) => {}
        Ok(Ok(n)) => panic!("{what}: expected silence, read {n} bytes: {:?}", &buf[..n]),
        Ok(Err(e)) => panic!("{what}: expected silence, read failed: {e}"),
    }
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8).collect()
}

#[tokio::test]
async fn bytes_pass_unchanged_both_ways() {
    let lab = lab().await;
    let (echo, _) = echo_server().await;
    let listen = lab.link("echo", echo).await;

    // 4 MiB each way at once, then EOF passed on and answered with EOF.
    let data = pattern(4 << 20, 7);
    let mut stream = connect(listen).await;
    let (mut r, mut w) = stream.split();
    let send = async {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut got = Vec::new();
    let recv = r.read_to_end(&mut got);
    let (_, read) = timeout(Duration::from_secs(60), async { tokio::join!(send, recv) }).await.expect("transfer hung");
    read.unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "echoed bytes differ");

    // A server that only talks after the client's EOF: half-close crosses the proxy, and a
    // large answer comes back whole.
    let (upstream, mut accepted) = handover_server().await;
    let listen = lab.link("half", upstream).await;
    let mut client = connect(listen).await;
    client.write_all(b"request").await.unwrap();
    client.shutdown().await.unwrap();
    let mut server = timeout(WAIT, accepted.recv()).await.unwrap().unwrap();
    let mut request = Vec::new();
    timeout(WAIT, server.read_to_end(&mut request)).await.expect("client EOF did not cross").unwrap();
    assert_eq!(request, b"request");
    let answer = pattern(3 << 20, 99);
    let reply = answer.clone();
    let writer = tokio::spawn(async move {
        server.write_all(&reply).await.unwrap();
        server.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    timeout(Duration::from_secs(60), client.read_to_end(&mut got)).await.expect("answer hung").unwrap();
    writer.await.unwrap();
    assert!(got == answer, "answer differs ({} of {} bytes)", got.len(), answer.len());

    let info = lab.client.get("echo").await.unwrap();
    assert_eq!(info.connections.total, 1);
}

#[tokio::test]
async fn latency_adds_about_the_set_delay() {
    let lab = lab().await;
    let (echo, _) = echo_server().await;
    let listen = lab.link("slow", echo).await;
    let mut stream = connect(listen).await;

    lab.set("slow", Faults { latency_ms: Some(300), ..Faults::none() }).await;
    let rtt = round_trip(&mut stream, b"ping").await;
    // Both directions delay: at least twice the latency.
    assert!(rtt >= Duration::from_millis(600), "round trip {rtt:?} < 2 x 300 ms");
    assert!(rtt < Duration::from_millis(1_600), "round trip {rtt:?} far above 2 x 300 ms");

    // Only the answers are late.
    let down = Faults { downstream: Some(Shaping { latency_ms: Some(400), ..Shaping::default() }), ..Faults::none() };
    lab.set("slow", down).await;
    let rtt = round_trip(&mut stream, b"pong").await;
    assert!(rtt >= Duration::from_millis(400), "round trip {rtt:?} < 400 ms");
    assert!(rtt < Duration::from_millis(1_400), "round trip {rtt:?} far above 400 ms");

    // Jitter keeps bytes in order: many small writes come back as written.
    lab.set("slow", Faults { latency_ms: Some(50), jitter_ms: Some(45), ..Faults::none() }).await;
    let mut sent = Vec::new();
    for i in 0..50u8 {
        let piece = [i; 3];
        stream.write_all(&piece).await.unwrap();
        sent.extend_from_slice(&piece);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(read_exactly(&mut stream, sent.len()).await, sent);
}

#[tokio::test]
async fn fault_changes_reach_an_open_connection() {
    let lab = lab().await;
    let (echo, _) = echo_server().await;
    let listen = lab.link("live", echo).await;
    let mut stream = connect(listen).await;

    let fast = round_trip(&mut stream, b"before").await;
    assert!(fast < Duration::from_millis(1_000), "unfaulted round trip took {fast:?}");

    lab.set("live", Faults { latency_ms: Some(600), ..Faults::none() }).await;
    let slow = round_trip(&mut stream, b"during").await;
    assert!(slow >= Duration::from_millis(1_200), "latency set on an open connection not applied: {slow:?}");

    // A heal also releases a chunk already waiting out a long latency.
    lab.set("live", Faults { latency_ms: Some(60_000), ..Faults::none() }).await;
    stream.write_all(b"stuck").await.unwrap();
    assert_silent(&mut stream, "under 60 s latency").await;
    let healed_at = Instant::now();
    lab.client.heal("live").await.unwrap();
    assert_eq!(read_exactly(&mut stream, 5).await, b"stuck");
    assert!(healed_at.elapsed() < Duration::from_millis(1_000), "heal took {:?}", healed_at.elapsed());
    let after = round_trip(&mut stream, b"after").await;
    assert!(after < Duration::from_millis(1_000), "healed round trip took {after:?}");
}

#[tokio::test]
async fn bandwidth_limit_bounds_throughput() {
    let lab = lab().await;
    let (echo, _) = echo_server().await;
    let listen = lab.link("thin", echo).await;
    // 100 kB/s upstream only: 200 kB take about 2 s, however fast the echo answers.
    let thin = Faults { upstream: Some(Shaping { bandwidth_kbps: Some(100), ..Shaping::default() }), ..Faults::none() };
    lab.set("thin", thin).await;

    let data = pattern(200_000, 3);
    let mut stream = connect(listen).await;
    let start = Instant::now();
    let (mut r, mut w) = stream.split();
    let send = w.write_all(&data);
    let mut got = vec![0u8; data.len()];
    let recv = r.read_exact(&mut got);
    let (sent, read) = timeout(Duration::from_secs(30), async { tokio::join!(send, recv) }).await.expect("hung");
    sent.unwrap();
    read.unwrap();
    let took = start.elapsed();
    assert!(got == data, "bytes changed under the rate limit");
    assert!(took >= Duration::from_millis(1_800), "200 kB at 100 kB/s took only {took:?}");
    assert!(took < Duration::from_secs(6), "200 kB at 100 kB/s took {took:?}");
}

#[tokio::test]
async fn black_hole_answers_nothing_until_healed() {
    let lab = lab().await;
    let (echo, accepted) = echo_server().await;
    let listen = lab.link("hole", echo).await;
    let mut open = connect(listen).await;
    round_trip(&mut open, b"hello").await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    lab.set("hole", Faults { blackhole: true, ..Faults::none() }).await;
    open.write_all(b"ping").await.unwrap();
    assert_silent(&mut open, "open connection in a black hole").await;
    // A new connection is accepted and kept, but the upstream never sees it.
    let mut fresh = connect(listen).await;
    fresh.write_all(b"knock").await.unwrap();
    assert_silent(&mut fresh, "new connection in a black hole").await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "the upstream saw a connection through the black hole");
    assert_eq!(lab.client.get("hole").await.unwrap().connections.active, 2);

    lab.client.heal_all().await.unwrap();
    // What was held arrives, in order, then new traffic flows on every connection.
    assert_eq!(read_exactly(&mut open, 4).await, b"ping");
    assert_eq!(read_exactly(&mut fresh, 5).await, b"knock");
    round_trip(&mut open, b"again").await;
    let mut third = connect(listen).await;
    round_trip(&mut third, b"new").await;
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn one_way_cut_drops_only_that_direction() {
    let lab = lab().await;
    let (upstream, mut accepted) = handover_server().await;
    let listen = lab.link("cut", upstream).await;
    let mut client = connect(listen).await;
    let mut server = timeout(WAIT, accepted.recv()).await.unwrap().unwrap();
    client.write_all(b"hi").await.unwrap();
    assert_eq!(read_exactly(&mut server, 2).await, b"hi");

    lab.set("cut", Faults { cut: Some(Direction::Upstream), ..Faults::none() }).await;
    client.write_all(b"up").await.unwrap();
    assert_silent(&mut server, "server under an upstream cut").await;
    server.write_all(b"down").await.unwrap();
    assert_eq!(read_exactly(&mut client, 4).await, b"down", "downstream must still flow");

    lab.set("cut", Faults { cut: Some(Direction::Downstream), ..Faults::none() }).await;
    // The upstream bytes held by the first cut now cross; the other direction stops.
    assert_eq!(read_exactly(&mut server, 2).await, b"up");
    server.write_all(b"down2").await.unwrap();
    assert_silent(&mut client, "client under a downstream cut").await;
    client.write_all(b"up2").await.unwrap();
    assert_eq!(read_exactly(&mut server, 3).await, b"up2", "upstream must still flow");

    lab.client.heal("cut").await.unwrap();
    assert_eq!(read_exactly(&mut client, 5).await, b"down2");
}

#[tokio::test]
async fn reset_closes_both_sides_abruptly() {
    let lab = lab().await;
    let (upstream, mut accepted) = handover_server().await;
    let listen = lab.link("rst", upstream).await;
    let mut client = connect(listen).await;
    let mut server = timeout(WAIT, accepted.recv()).await.unwrap().unwrap();

    lab.set("rst", Faults { reset_prob: Some(1.0), ..Faults::none() }).await;
    client.write_all(b"doomed").await.unwrap();
    let mut buf = [0u8; 16];
    let read = timeout(WAIT, client.read(&mut buf)).await.expect("client still open after a reset");
    match read {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("expected a reset, read Ok({n})"),
    }
    let read = timeout(WAIT, server.read(&mut buf)).await.expect("server still open after a reset");
    assert!(matches!(read, Err(_) | Ok(0)), "server read {read:?}");

    let info = lab.client.get("rst").await.unwrap();
    assert_eq!(info.connections.resets, 1);
    assert_eq!(info.connections.active, 0);
}

#[tokio::test]
async fn refuse_resets_new_connections_only() {
    let lab = lab().await;
    let (echo, accepted) = echo_server().await;
    let listen = lab.link("dead", echo).await;
    let mut open = connect(listen).await;
    round_trip(&mut open, b"x").await;

    lab.set("dead", Faults { refuse: true, ..Faults::none() }).await;
    let mut refused = connect(listen).await;
    let mut buf = [0u8; 8];
    let read = timeout(WAIT, refused.read(&mut buf)).await.expect("refused connection left open");
    assert!(matches!(read, Err(_) | Ok(0)), "refused connection read {read:?}");
    round_trip(&mut open, b"still").await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(lab.client.get("dead").await.unwrap().connections.refused, 1);
}

#[tokio::test]
async fn links_are_added_listed_and_removed() {
    let lab = lab().await;
    let (echo, _) = echo_server().await;
    let listen = lab.link("a", echo).await;
    let mut stream = connect(listen).await;
    round_trip(&mut stream, b"x").await;

    let faults = Faults { latency_ms: Some(5), cut: Some(Direction::Downstream), ..Faults::none() };
    lab.set("a", faults.clone()).await;
    let links = lab.client.list().await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].name, "a");
    assert_eq!(links[0].listen, listen);
    assert_eq!(links[0].upstream, echo);
    assert_eq!(links[0].faults, faults);
    assert_eq!(links[0].connections.active, 1);
    assert!(lab.proxy.heal_all()[0].faults.is_none());

    // Removal closes the listener and the open connection.
    lab.client.remove("a").await.unwrap();
    let mut buf = [0u8; 8];
    let read = timeout(WAIT, stream.read(&mut buf)).await.expect("connection survived its link");
    assert!(matches!(read, Err(_) | Ok(0)), "read {read:?}");
    assert!(TcpStream::connect(listen).await.is_err(), "listener survived its link");
    assert!(lab.client.list().await.unwrap().is_empty());
    match lab.client.remove("a").await {
        Err(ClientError::Api { status, .. }) => assert_eq!(status, StatusCode::NOT_FOUND),
        other => panic!("second remove: {other:?}"),
    }
}

#[tokio::test]
async fn control_api_errors_are_4xx_json() {
    let lab = lab().await;
    let (echo, _) = echo_server().await;
    lab.link("a", echo).await;
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", lab.control);
    let http = reqwest::Client::new();
    let json = "application/json";
    let link_body = |listen: String| format!(r#"{{"listen":"{listen}","upstream":"{echo}"}}"#);

    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            "unknown link",
            http.put(format!("{base}/links/zz/faults")).header("content-type", json).body("{}"),
            StatusCode::NOT_FOUND,
            "zz",
        ),
        ("heal unknown", http.delete(format!("{base}/links/zz/faults")), StatusCode::NOT_FOUND, "zz"),
        ("remove unknown", http.delete(format!("{base}/links/zz")), StatusCode::NOT_FOUND, "zz"),
        (
            "broken JSON",
            http.put(format!("{base}/links/a/faults")).header("content-type", json).body("{"),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            "no content type",
            http.put(format!("{base}/links/a/faults")).body("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "",
        ),
        (
            "unknown fault",
            http.put(format!("{base}/links/a/faults")).header("content-type", json).body(r#"{"latency":5}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "latency",
        ),
        (
            "bad probability",
            http.put(format!("{base}/links/a/faults"))
                .header("content-type", json)
                .body(r#"{"stall_prob":2,"stall_ms":5}"#),
            StatusCode::BAD_REQUEST,
            "stall_prob",
        ),
        (
            "bad direction",
            http.put(format!("{base}/links/a/faults")).header("content-type", json).body(r#"{"cut":"both"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "cut",
        ),
        (
            "bad name",
            http.put(format!("{base}/links/a%20b")).header("content-type", json).body(link_body("127.0.0.1:0".into())),
            StatusCode::BAD_REQUEST,
            "name",
        ),
        (
            "duplicate",
            http.put(format!("{base}/links/a")).header("content-type", json).body(link_body("127.0.0.1:0".into())),
            StatusCode::CONFLICT,
            "exists",
        ),
        (
            "port in use",
            http.put(format!("{base}/links/b"))
                .header("content-type", json)
                .body(link_body(taken.local_addr().unwrap().to_string())),
            StatusCode::CONFLICT,
            "listen",
        ),
        (
            "bad address",
            http.put(format!("{base}/links/b"))
                .header("content-type", json)
                .body(r#"{"listen":"nowhere","upstream":"127.0.0.1:1"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
        ),
        ("no such endpoint", http.get(format!("{base}/nope")), StatusCode::NOT_FOUND, ""),
        ("wrong method", http.post(format!("{base}/links")), StatusCode::METHOD_NOT_ALLOWED, ""),
    ];
    for (what, request, want, mentions) in cases {
        let answer = timeout(WAIT, request.send()).await.expect(what).expect(what);
        let status = answer.status();
        let body: serde_json::Value =
            answer.json().await.unwrap_or_else(|e| panic!("{what}: error body is not JSON: {e}"));
        assert_eq!(status, want, "{what}: {body}");
        let error = body["error"].as_str().unwrap_or_else(|| panic!("{what}: no error field in {body}"));
        assert!(error.contains(mentions), "{what}: {error:?} should mention {mentions:?}");
    }
    // Nothing above changed the one good link.
    let links = lab.client.list().await.unwrap();
    assert_eq!(links.len(), 1);
    assert!(links[0].faults.is_none());
}

/// Runs the CLI and returns its stdout; panics on failure.
async fn cli(control: &str, args: &[&str]) -> String {
    let out = timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_plum-faultproxy"))
            .arg("--control")
            .arg(control)
            .args(args)
            .env("PLUM_LOG", "warn")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("CLI hung")
    .unwrap();
    assert!(out.status.success(), "plum-faultproxy {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn cli_serves_and_drives_links() {
    let (echo, _) = echo_server().await;
    // A free port for the control API; the tiny race with other binds is acceptable here.
    let control = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_plum-faultproxy"))
        .args(["--control", &control, "serve", "--link", &format!("db=127.0.0.1:0,{echo}")])
        .env("PLUM_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = ControlClient::new(&control).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let links = loop {
        if let Ok(links) = client.list().await {
            break links;
        }
        assert!(Instant::now() < deadline, "plum-faultproxy serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(links.len(), 1);
    let listen = links[0].listen;
    let mut stream = connect(listen).await;
    round_trip(&mut stream, b"through the binary").await;

    let out =
        cli(&control, &["set", "db", "--latency-ms", "250", "--direction", "downstream", "--cut", "upstream"]).await;
    assert!(out.contains("db"), "{out}");
    let info = client.get("db").await.unwrap();
    assert_eq!(info.faults.downstream.and_then(|d| d.latency_ms), Some(250));
    assert_eq!(info.faults.latency_ms, None);
    assert_eq!(info.faults.cut, Some(Direction::Upstream));

    cli(&control, &["heal"]).await;
    assert!(client.get("db").await.unwrap().faults.is_none());
    let listed: serde_json::Value = serde_json::from_str(&cli(&control, &["list", "--json"]).await).unwrap();
    assert_eq!(listed[0]["name"], "db");
    cli(&control, &["add", "other", "127.0.0.1:0", &echo.to_string()]).await;
    cli(&control, &["remove", "db"]).await;
    let names: Vec<String> = client.list().await.unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["other"]);

    server.kill().await.unwrap();
}
