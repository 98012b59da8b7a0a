//! The Rust SDK against a real 3-replica cluster: exactly-once writes across a leader kill, a
//! black-holed replica, stale discovery while the cluster is down, and watch latency.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plum_sdk::client::ClientOptions;
use plum_sdk::discovery::{DiscoveryOptions, Query};
use plum_sdk::{Client, Controllers, Options};
use plum_tests::{TestCluster, wait_until};
use plum_types::{EndpointSpec, RegisterRequest};

fn client(cluster: &TestCluster, options: ClientOptions) -> Client {
    let urls: Vec<String> = cluster.ids().into_iter().map(|id| cluster.url(id)).collect();
    Client::over(Arc::new(Controllers::with_options(urls, options.transport.clone())), options)
}

fn instance(id: &str, service: &str, port: u32) -> RegisterRequest {
    RegisterRequest {
        instance_id: id.into(),
        node_id: None,
        ip: Some("127.0.0.1".into()),
        endpoints: vec![EndpointSpec {
            service_name: service.into(),
            port,
            protocol: "http".into(),
            version: "1.2.0".into(),
            ..EndpointSpec::default()
        }],
        ttl_ms: None,
        replace: false,
        upstreams: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_writes_are_applied_exactly_once_across_a_leader_kill() {
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let options = ClientOptions {
        transport: Options {
            deadline: Duration::from_secs(15),
            attempt_timeout: Duration::from_secs(1),
            ..Options::default()
        },
        ..ClientOptions::default()
    };
    let sdk = client(&cluster, options);
    let kv = sdk.kv();
    kv.put("t", "warm", "x").await.expect("first write");
    // A stream of writes, one at a time, in the background; the leader dies while they flow
    // (a write may be in flight at that moment: its outcome is unknown, and the SDK resends it
    // with the same request id).
    let writes = 60;
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (kv, acked) = (kv.clone(), acked.clone());
        tokio::spawn(async move {
            for i in 1..=writes {
                let w = kv.put("t", "counter", &i.to_string()).await.unwrap_or_else(|e| panic!("write {i}: {e}"));
                assert_eq!(w.version, i as u64, "write {i} applied once, after every earlier one exactly once");
                kv.put("t", &format!("k{i}"), "v").await.unwrap_or_else(|e| panic!("write k{i}: {e}"));
                acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    wait_until(Duration::from_secs(30), "a third of the writes", || async {
        acked.load(std::sync::atomic::Ordering::SeqCst) >= writes / 3
    })
    .await;
    cluster.kill(leader);
    tokio::time::timeout(Duration::from_secs(60), writer).await.expect("writes finish").expect("writer");
    assert_eq!(acked.load(std::sync::atomic::Ordering::SeqCst), writes);
    let item = kv.get("t", "counter").await.expect("read").expect("present");
    assert_eq!((item.value.as_str(), item.version), (writes.to_string().as_str(), writes as u64));
    for i in 1..=writes {
        let k = kv.get("t", &format!("k{i}")).await.expect("read").expect("present");
        assert_eq!(k.version, 1, "k{i} written exactly once");
    }
    assert_ne!(sdk.controllers().leader_url(), Some(cluster.url(leader)), "the SDK learned the new leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_replica_does_not_stall_calls_past_their_deadline() {
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).expect("a follower");
    // The follower first in the client's list, so it is the first replica asked.
    let mut urls = vec![cluster.url(follower)];
    urls.extend(cluster.ids().into_iter().filter(|id| *id != follower).map(|id| cluster.url(id)));
    let deadline = Duration::from_secs(3);
    let options = Options { deadline, attempt_timeout: Duration::from_millis(400), ..Options::default() };
    let sdk = Client::over(Arc::new(Controllers::with_options(urls, options)), ClientOptions::default());
    sdk.kv().put("bh", "before", "x").await.expect("write before");
    cluster.pause(follower);
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let started = Instant::now();
        sdk.kv().put("bh", &format!("k{i}"), "v").await.unwrap_or_else(|e| panic!("write {i}: {e}"));
        let item = sdk.kv().get("bh", &format!("k{i}")).await.unwrap_or_else(|e| panic!("read {i}: {e}"));
        assert!(item.is_some());
        slowest = slowest.max(started.elapsed());
    }
    cluster.resume(follower);
    assert!(slowest < deadline * 2, "a write and a read took {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_watch_delivers_changes_and_serves_stale_endpoints_when_the_cluster_is_down() {
    let mut cluster = TestCluster::start(3, &[]);
    cluster.wait_leader(Duration::from_secs(20)).await;
    let options = ClientOptions {
        transport: Options {
            deadline: Duration::from_secs(3),
            attempt_timeout: Duration::from_millis(500),
            ..Options::default()
        },
        discovery: DiscoveryOptions {
            watch_wait: Duration::from_secs(2),
            max_staleness: Some(Duration::from_secs(120)),
            client_service: None,
        },
    };
    let sdk = client(&cluster, options);
    let registrar = sdk.registrar(Duration::from_secs(5));
    registrar.register(vec![instance("web-1", "web", 8001)]).await.expect("register");
    let first = sdk.discover("web", &Query::default()).await.expect("discover");
    assert_eq!(first.endpoints.len(), 1);
    assert!(!first.stale);

    // A change reaches the cache through the watch, without asking again.
    let registered = Instant::now();
    registrar.register(vec![instance("web-2", "web", 8002)]).await.expect("register another");
    wait_until(Duration::from_secs(10), "the watch brings the second endpoint", || async {
        sdk.discovery().cached("web").is_some_and(|s| s.endpoints.len() == 2)
    })
    .await;
    let latency = registered.elapsed();
    assert!(latency < Duration::from_secs(5), "watch latency {latency:?}");

    // Range filter on the cache.
    let range = Query { version: Some(plum_types::VersionFilter::parse("^1.0").unwrap()), ..Query::default() };
    assert_eq!(sdk.discover("web", &range).await.unwrap().endpoints.len(), 2);
    let none = Query { version: Some(plum_types::VersionFilter::parse(">=2").unwrap()), ..Query::default() };
    assert!(sdk.discover("web", &none).await.unwrap().endpoints.is_empty());

    // The whole cluster stops: the last known endpoints are still served, marked stale.
    for id in cluster.ids() {
        cluster.kill(id);
    }
    wait_until(Duration::from_secs(20), "the cache notices the cluster is gone", || async {
        sdk.discover("web", &Query::default()).await.is_ok_and(|d| d.stale)
    })
    .await;
    let stale = sdk.discover("web", &Query::default()).await.expect("stale endpoints are served");
    let ports: BTreeMap<u16, bool> = stale.endpoints.iter().map(|e| (e.port, e.healthy)).collect();
    assert_eq!(ports, BTreeMap::from([(8001, true), (8002, true)]));
    assert!(sdk.discover_uncached("web").await.is_err(), "an uncached lookup fails: nobody answers");
    std::mem::forget(registrar); // its deregistration would only fail against a stopped cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrar_registers_again_what_the_cluster_forgot_and_deregisters_on_shutdown() {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_leader(Duration::from_secs(20)).await;
    let sdk = client(&cluster, ClientOptions::default());
    // The cluster bounds a TTL (at least 500 ms here) and advises the interval for the TTL in
    // force: a quarter of it, not of what was asked.
    let eager = sdk.registrar(Duration::from_millis(100));
    assert_eq!(eager.interval(), Duration::from_millis(50), "before any answer: a quarter of 100 ms, at least 50");
    eager.register(vec![instance("eager-1", "eager", 9002)]).await.expect("register");
    assert_eq!(eager.interval(), Duration::from_millis(125), "advised by the cluster for its 500 ms TTL");
    eager.shutdown().await.expect("shutdown");

    let registrar = sdk.registrar(Duration::from_millis(1000));
    registrar.register(vec![instance("svc-1", "svc", 9001)]).await.expect("register");
    let forget = format!("{}/v1/services?instanceId=svc-1", cluster.url(1));
    // An operator (or a retention sweep) removes it behind the registrar's back.
    cluster.http.delete(&forget).send().await.expect("deregister");
    wait_until(Duration::from_secs(10), "the registrar registers it again", || async {
        sdk.discover_uncached("svc").await.is_ok_and(|eps| eps.len() == 1)
    })
    .await;
    registrar.shutdown().await.expect("shutdown");
    let eps = sdk.discover_uncached("svc").await.expect("discover");
    assert!(eps.is_empty(), "deregistered on shutdown: {eps:?}");
}

/// Reads server-sent events from `resp` until one of type `endpoints` arrives (bounded).
async fn next_endpoints_event(resp: &mut reqwest::Response, buffer: &mut String) -> (u64, serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let field =
                |name: &str| event.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).map(str::to_string);
            if field("event:").as_deref() == Some("endpoints") {
                let id = field("id:").and_then(|i| i.parse().ok()).expect("event id");
                let data = serde_json::from_str(&field("data:").expect("data")).expect("json data");
                return (id, data);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, resp.chunk()).await.expect("an event in time").expect("stream open");
        buffer.push_str(&String::from_utf8_lossy(&chunk.expect("stream not closed")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_stream_sends_changes_and_resumes_from_the_last_event_id() {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_leader(Duration::from_secs(20)).await;
    let sdk = client(&cluster, ClientOptions::default());
    let registrar = sdk.registrar(Duration::from_secs(5));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut stream = http.get(format!("{}/v1/discovery/stream?service=api", cluster.url(2))).send().await.unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    registrar.register(vec![instance("api-1", "api", 7001)]).await.expect("register");
    let (first, data) = next_endpoints_event(&mut stream, &mut buffer).await;
    assert_eq!(data["service"], "api");
    assert_eq!(data["endpoints"].as_array().map(Vec::len), Some(1));
    drop(stream);

    // Disconnected: a change happens meanwhile; the resumed stream (another replica) sends it.
    registrar.register(vec![instance("api-2", "api", 7002)]).await.expect("register another");
    let url = format!("{}/v1/discovery/stream?service=api&index={first}", cluster.url(3));
    let mut resumed = http.get(url).send().await.unwrap();
    let mut buffer = String::new();
    let (second, data) = next_endpoints_event(&mut resumed, &mut buffer).await;
    assert!(second > first);
    assert_eq!(data["endpoints"].as_array().map(Vec::len), Some(2), "{data}");
    registrar.shutdown().await.expect("shutdown");
}
