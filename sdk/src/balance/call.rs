//! One balanced HTTP call: pick, send with the deadline, retry once elsewhere on a retryable
//! failure, report every outcome to outlier detection.

use std::error::Error as StdError;
use std::fmt;
use std::time::Instant;

use plum_types::Endpoint;

use super::Balancer;

/// The first attempt and one retry.
const MAX_ATTEMPTS: u32 = 2;

/// Why one attempt failed. `endpoint` is `ip:port`.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("{endpoint}: cannot connect: {}", Chain(.error))]
    Connect { endpoint: String, error: reqwest::Error },
    #[error("{endpoint}: timed out: {}", Chain(.error))]
    Timeout { endpoint: String, error: reqwest::Error },
    /// 502, 503 or 504 (other statuses are answers, returned as responses).
    #[error("{endpoint}: HTTP {status}")]
    Status { endpoint: String, status: u16 },
    /// The request failed after it may have reached the endpoint: not retried.
    #[error("{endpoint}: {}", Chain(.error))]
    Transport { endpoint: String, error: reqwest::Error },
    /// The request closure built an invalid request (bad URL, header...): not retried.
    #[error("{endpoint}: invalid request: {}", Chain(.error))]
    Build { endpoint: String, error: reqwest::Error },
}

impl AttemptError {
    /// The endpoint (`ip:port`) the attempt went to.
    pub fn endpoint(&self) -> &str {
        match self {
            AttemptError::Connect { endpoint, .. }
            | AttemptError::Timeout { endpoint, .. }
            | AttemptError::Status { endpoint, .. }
            | AttemptError::Transport { endpoint, .. }
            | AttemptError::Build { endpoint, .. } => endpoint,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no endpoints to call")]
    NoEndpoints,
    /// Every attempt failed (or the first failed in a way that is not retried).
    #[error("{attempts} attempt(s) failed; last: {last}")]
    AllFailed { attempts: u32, last: AttemptError },
    #[error("deadline passed after {attempts} attempt(s){}", LastSuffix(.last))]
    Deadline { attempts: u32, last: Option<AttemptError> },
}

/// Sends the request `request` builds for a picked endpoint, with the time left until `deadline`
/// as its timeout (up to the end of the response body). On a connect error, a timeout before the
/// deadline or a 502/503/504 it retries once on another endpoint. Other statuses, 4xx and 500
/// included, are returned as responses; every 5xx, connect error and timeout counts as a failure
/// for outlier detection, anything else as a success.
///
/// `request` is called once per attempt; the request is executed with `http`. Retries resend
/// the request, so use this for idempotent ones. The request counts as in flight until the
/// response headers arrive.
pub async fn call<F>(
    http: &reqwest::Client,
    balancer: &Balancer,
    endpoints: &[Endpoint],
    request: F,
    deadline: Instant,
) -> Result<reqwest::Response, CallError>
where
    F: Fn(&Endpoint) -> reqwest::RequestBuilder,
{
    let mut attempts = 0;
    let mut last = None;
    let mut previous: Option<&Endpoint> = None;
    while attempts < MAX_ATTEMPTS {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(CallError::Deadline { attempts, last });
        }
        let picked = match previous {
            None => balancer.pick(endpoints),
            Some(previous) => balancer.pick_other(endpoints, previous),
        };
        let Some(picked) = picked else { break };
        attempts += 1;
        let endpoint = picked.endpoint();
        let req = match request(endpoint).timeout(remaining).build() {
            Ok(req) => req,
            Err(error) => {
                return Err(CallError::AllFailed {
                    attempts,
                    last: AttemptError::Build { endpoint: key(endpoint), error },
                });
            }
        };
        let error = match http.execute(req).await {
            Ok(resp) => {
                let status = resp.status();
                if status.is_server_error() {
                    picked.failure();
                } else {
                    picked.success();
                }
                if !matches!(status.as_u16(), 502..=504) {
                    return Ok(resp);
                }
                AttemptError::Status { endpoint: key(endpoint), status: status.as_u16() }
            }
            Err(error) if error.is_connect() => {
                picked.failure();
                AttemptError::Connect { endpoint: key(endpoint), error }
            }
            Err(error) if error.is_timeout() => {
                picked.failure();
                let error = AttemptError::Timeout { endpoint: key(endpoint), error };
                if Instant::now() >= deadline {
                    return Err(CallError::Deadline { attempts, last: Some(error) });
                }
                error
            }
            Err(error) => {
                picked.failure();
                let last = AttemptError::Transport { endpoint: key(endpoint), error };
                return Err(CallError::AllFailed { attempts, last });
            }
        };
        tracing::debug!(attempt = attempts, %error, "balanced call attempt failed");
        last = Some(error);
        previous = Some(endpoint);
    }
    match last {
        Some(last) => Err(CallError::AllFailed { attempts, last }),
        None => Err(CallError::NoEndpoints),
    }
}

/// `http://ip:port` for an endpoint (brackets around IPv6 addresses), to build request URLs.
pub fn base_url(endpoint: &Endpoint) -> String {
    if endpoint.ip.contains(':') {
        format!("http://[{}]:{}", endpoint.ip, endpoint.port)
    } else {
        format!("http://{}:{}", endpoint.ip, endpoint.port)
    }
}

fn key(endpoint: &Endpoint) -> String {
    format!("{}:{}", endpoint.ip, endpoint.port)
}

/// An error and its sources, `: `-separated: reqwest's own message hides the cause.
struct Chain<'a>(&'a (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

struct LastSuffix<'a>(&'a Option<AttemptError>);

impl fmt::Display for LastSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(last) => write!(f, "; last: {last}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;

    use super::*;
    use crate::balance::Strategy;
    use crate::outlier::{ManualClock, OutlierConfig};

    fn ep(addr: SocketAddr) -> Endpoint {
        Endpoint {
            service_name: "svc".into(),
            instance_id: addr.to_string(),
            node_id: "n1".into(),
            ip: addr.ip().to_string(),
            port: addr.port(),
            protocol: "http".into(),
            version: "1".into(),
            labels: BTreeMap::new(),
            healthy: true,
            last_seen: 0,
        }
    }

    struct Server {
        addr: SocketAddr,
        hits: Arc<AtomicUsize>,
    }

    impl Server {
        fn hits(&self) -> usize {
            self.hits.load(Ordering::SeqCst)
        }
    }

    /// A loopback server answering `status` after `delay`, counting requests.
    async fn serve(status: StatusCode, delay: Duration) -> Server {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = Router::new().route(
            "/",
            get(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    (status, "hello")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { addr, hits }
    }

    /// A loopback address nothing listens on.
    async fn closed() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    fn balancer(strategy: Strategy) -> Balancer {
        // A clock that never moves: ejections last for the whole test.
        Balancer::with_outlier(strategy, OutlierConfig::default(), Arc::new(ManualClock::new()))
    }

    fn in_secs(secs: u64) -> Instant {
        Instant::now() + Duration::from_secs(secs)
    }

    async fn get_root(
        http: &reqwest::Client,
        b: &Balancer,
        eps: &[Endpoint],
        deadline: Instant,
    ) -> Result<reqwest::Response, CallError> {
        call(http, b, eps, |e| http.get(format!("{}/", base_url(e))), deadline).await
    }

    #[tokio::test]
    async fn balance_call_retries_a_503_elsewhere_and_ejects_it() {
        let bad = serve(StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO).await;
        let good = serve(StatusCode::OK, Duration::ZERO).await;
        let eps = vec![ep(bad.addr), ep(good.addr)];
        let (http, b) = (client(), balancer(Strategy::RoundRobin));
        for _ in 0..10 {
            let resp = get_root(&http, &b, &eps, in_secs(5)).await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.text().await.unwrap(), "hello");
        }
        // Round robin sent calls 1-3 to the bad one first; the third failure ejected it.
        assert_eq!(bad.hits(), 3);
        assert_eq!(good.hits(), 10);
        assert!(b.is_ejected(&eps[0]));
        assert!(!b.is_ejected(&eps[1]));
        assert!(eps.iter().all(|e| b.in_flight(e) == 0));
    }

    #[tokio::test]
    async fn balance_call_retries_a_closed_port_and_ejects_it() {
        let good = serve(StatusCode::OK, Duration::ZERO).await;
        let eps = vec![ep(closed().await), ep(good.addr)];
        let (http, b) = (client(), balancer(Strategy::PowerOfTwo));
        for _ in 0..60 {
            let resp = get_root(&http, &b, &eps, in_secs(5)).await.unwrap();
            assert_eq!(resp.status(), 200);
        }
        assert_eq!(good.hits(), 60);
        assert!(b.is_ejected(&eps[0]));
        assert!(!b.is_ejected(&eps[1]));
    }

    #[tokio::test]
    async fn balance_call_returns_other_statuses_but_counts_5xx() {
        let broken = serve(StatusCode::INTERNAL_SERVER_ERROR, Duration::ZERO).await;
        let good = serve(StatusCode::OK, Duration::ZERO).await;
        let eps = vec![ep(broken.addr), ep(good.addr)];
        let (http, b) = (client(), balancer(Strategy::RoundRobin));
        let mut statuses = Vec::new();
        for _ in 0..10 {
            statuses.push(get_root(&http, &b, &eps, in_secs(5)).await.unwrap().status().as_u16());
        }
        // 500 is an answer, not retried; the third one ejects the endpoint.
        assert_eq!(statuses, [500, 200, 500, 200, 500, 200, 200, 200, 200, 200]);
        assert_eq!(broken.hits(), 3);
        assert!(b.is_ejected(&eps[0]));
    }

    #[tokio::test]
    async fn balance_call_all_failing_reports_the_last_error_and_keeps_serving() {
        let a = serve(StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO).await;
        let c = serve(StatusCode::BAD_GATEWAY, Duration::ZERO).await;
        let eps = vec![ep(a.addr), ep(c.addr)];
        let (http, b) = (client(), balancer(Strategy::RoundRobin));
        for _ in 0..10 {
            match get_root(&http, &b, &eps, in_secs(5)).await {
                Err(CallError::AllFailed { attempts: 2, last: AttemptError::Status { status, .. } }) => {
                    assert!(status == 503 || status == 502)
                }
                other => panic!("{other:?}"),
            }
        }
        // Both failed every time, but at most half the set is ejected: both still get calls.
        assert_eq!(eps.iter().filter(|e| b.is_ejected(e)).count(), 1);
        assert_eq!(a.hits() + c.hits(), 20);
        let (before_a, before_c) = (a.hits(), c.hits());
        let _ = get_root(&http, &b, &eps, in_secs(5)).await;
        assert_eq!((a.hits() - before_a, c.hits() - before_c), (1, 1));
    }

    #[tokio::test]
    async fn balance_call_single_endpoint_has_nowhere_to_retry() {
        let only = serve(StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO).await;
        let eps = vec![ep(only.addr)];
        let (http, b) = (client(), balancer(Strategy::PowerOfTwo));
        let err = get_root(&http, &b, &eps, in_secs(5)).await.unwrap_err();
        assert!(matches!(err, CallError::AllFailed { attempts: 1, last: AttemptError::Status { status: 503, .. } }));
        assert!(err.to_string().contains("HTTP 503"), "{err}");
    }

    #[tokio::test]
    async fn balance_call_without_endpoints() {
        let (http, b) = (client(), balancer(Strategy::Random));
        assert!(matches!(get_root(&http, &b, &[], in_secs(5)).await, Err(CallError::NoEndpoints)));
    }

    #[tokio::test]
    async fn balance_call_connect_errors_name_the_cause() {
        let eps = vec![ep(closed().await), ep(closed().await)];
        let (http, b) = (client(), balancer(Strategy::Random));
        let err = get_root(&http, &b, &eps, in_secs(5)).await.unwrap_err();
        assert!(matches!(err, CallError::AllFailed { attempts: 2, last: AttemptError::Connect { .. } }), "{err:?}");
        assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
    }

    #[tokio::test]
    async fn balance_call_stops_at_the_deadline() {
        let a = serve(StatusCode::OK, Duration::from_secs(30)).await;
        let c = serve(StatusCode::OK, Duration::from_secs(30)).await;
        let eps = vec![ep(a.addr), ep(c.addr)];
        let (http, b) = (client(), balancer(Strategy::PowerOfTwo));
        let started = Instant::now();
        let err = get_root(&http, &b, &eps, started + Duration::from_millis(300)).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err, CallError::Deadline { attempts: 1, last: Some(AttemptError::Timeout { .. }) }),
            "{err:?}"
        );
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
        assert!(err.to_string().starts_with("deadline passed after 1 attempt(s); last: "), "{err}");

        let err = get_root(&http, &b, &eps, Instant::now()).await.unwrap_err();
        assert!(matches!(err, CallError::Deadline { attempts: 0, last: None }), "{err:?}");
        assert_eq!(a.hits() + c.hits(), 1);
    }

    #[tokio::test]
    async fn balance_call_retries_a_timeout_before_the_deadline() {
        let slow = serve(StatusCode::OK, Duration::from_secs(30)).await;
        let fast = serve(StatusCode::OK, Duration::ZERO).await;
        let eps = vec![ep(slow.addr), ep(fast.addr)];
        // The client's own read timeout fires long before the call's deadline.
        let http = reqwest::Client::builder().no_proxy().read_timeout(Duration::from_millis(200)).build().unwrap();
        let b = balancer(Strategy::RoundRobin);
        let started = Instant::now();
        let resp = get_root(&http, &b, &eps, in_secs(10)).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!((slow.hits(), fast.hits()), (1, 1));
    }

    #[tokio::test]
    async fn balance_call_cancelled_releases_the_in_flight_count() {
        let slow = serve(StatusCode::OK, Duration::from_secs(30)).await;
        let eps = vec![ep(slow.addr)];
        let (http, b) = (client(), balancer(Strategy::PowerOfTwo));
        let fut = get_root(&http, &b, &eps, in_secs(60));
        fn assert_send<T: Send>(_: &T) {}
        assert_send(&fut);
        let mut fut = Box::pin(fut);
        tokio::select! {
            _ = &mut fut => panic!("the server answers after 30 s"),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        assert_eq!(b.in_flight(&eps[0]), 1);
        drop(fut);
        assert_eq!(b.in_flight(&eps[0]), 0);
    }

    #[test]
    fn balance_base_url_brackets_ipv6() {
        let mut e = ep("127.0.0.1:8080".parse().unwrap());
        assert_eq!(base_url(&e), "http://127.0.0.1:8080");
        e.ip = "::1".into();
        assert_eq!(base_url(&e), "http://[::1]:8080");
    }
}
