//! Discovery through a local cache kept fresh by a watch, not by a TTL: the first lookup of a
//! service fetches it and starts a background long poll (`GET /v1/discovery?watch=true&index=N`)
//! that replaces the cached endpoints whenever the cluster's answer changes. Lookups are served
//! from memory. When the cluster cannot be reached the last known endpoints are still served,
//! marked stale, up to a configurable age; past it a lookup fails rather than hand out
//! endpoints nobody has vouched for in a long time.
//!
//! What a watch answer may do to the cache (the rules every Plum SDK shares, checked by the
//! conformance suite in `sdk/conformance/`; see [`merge`]):
//! - an answer whose index is below the cached one comes from a lagging replica and is older
//!   than what we hold: it is ignored, the cache never goes back in time;
//! - an empty answer never wipes a non-empty cache by itself: the removal is confirmed first by
//!   a linearizable read (`consistent=true`), and only that read's answer is applied;
//! - a watch request gives up after one round over the replicas, so an outage marks the cache
//!   stale at once (the watch loop retries with its own backoff).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use plum_types::{Endpoint, VersionFilter};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::controllers::{Controllers, Request, query};
use crate::error::ClientError;

#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    /// How long the server holds one watch request open when nothing changes.
    pub watch_wait: Duration,
    /// Serve the last known endpoints for at most this long after the cluster was last heard
    /// from (`None`: for ever).
    pub max_staleness: Option<Duration>,
    /// The service this process serves, if it serves one: sent with lookups (`clientService`)
    /// so the cluster's topology shows which services it depends on (observed edges).
    pub client_service: Option<String>,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            watch_wait: Duration::from_secs(10),
            max_staleness: Some(Duration::from_secs(300)),
            client_service: None,
        }
    }
}

/// The cached answer for one service.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub endpoints: Arc<[Endpoint]>,
    /// The service's change index on the cluster (resume point of the watch).
    pub index: u64,
    /// When the cluster last confirmed this answer.
    pub confirmed: Instant,
    /// The last attempt to reach the cluster failed.
    pub contact_lost: bool,
}

/// What a lookup returns: the endpoints, and whether they may be out of date.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub endpoints: Arc<[Endpoint]>,
    /// True when the cluster could not confirm them lately (it is unreachable).
    pub stale: bool,
    /// Since the cluster last confirmed them.
    pub age: Duration,
}

/// Filters applied to the cached endpoints of a service.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Exact version or a semver range (`^1.2`, `>=1.0, <2.0`).
    pub version: Option<VersionFilter>,
    pub protocol: Option<String>,
    /// Every one of these labels, with these values.
    pub labels: BTreeMap<String, String>,
}

impl Query {
    pub fn matches(&self, e: &Endpoint) -> bool {
        self.version.as_ref().is_none_or(|v| v.matches(&e.version))
            && self.protocol.as_ref().is_none_or(|p| *p == e.protocol)
            && self.labels.iter().all(|(k, v)| e.labels.get(k) == Some(v))
    }
}

struct Watched {
    snapshot: watch::Sender<Snapshot>,
    task: JoinHandle<()>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The discovery cache. Cheap to share (`Arc`); every service it was asked about is watched
/// until the cache is dropped.
pub struct Discovery {
    c: Arc<Controllers>,
    options: DiscoveryOptions,
    services: RwLock<HashMap<String, Arc<Watched>>>,
}

impl Discovery {
    pub fn new(c: Arc<Controllers>, options: DiscoveryOptions) -> Arc<Discovery> {
        Arc::new(Discovery { c, options, services: RwLock::new(HashMap::new()) })
    }

    /// Every cached endpoint of `service` (fetched and watched from the first call on).
    pub async fn endpoints(self: &Arc<Self>, service: &str) -> Result<Discovered, ClientError> {
        let snapshot = match self.cached(service) {
            Some(s) => s,
            None => self.start(service).await?,
        };
        self.judge(service, &snapshot)
    }

    /// The endpoints of `service` that pass `query`.
    pub async fn find(self: &Arc<Self>, service: &str, query: &Query) -> Result<Discovered, ClientError> {
        let all = self.endpoints(service).await?;
        let endpoints: Arc<[Endpoint]> = all.endpoints.iter().filter(|e| query.matches(e)).cloned().collect();
        Ok(Discovered { endpoints, ..all })
    }

    /// A receiver that sees every change of the service's cached answer.
    pub async fn subscribe(self: &Arc<Self>, service: &str) -> Result<watch::Receiver<Snapshot>, ClientError> {
        if self.cached(service).is_none() {
            self.start(service).await?;
        }
        let services = self.services.read().unwrap_or_else(|p| p.into_inner());
        let watched = services.get(service).ok_or_else(|| ClientError::Config("watch ended".into()))?;
        Ok(watched.snapshot.subscribe())
    }

    /// From memory only: `None` when the service was never looked up.
    pub fn cached(&self, service: &str) -> Option<Snapshot> {
        let services = self.services.read().unwrap_or_else(|p| p.into_inner());
        services.get(service).map(|w| w.snapshot.borrow().clone())
    }

    fn judge(&self, service: &str, s: &Snapshot) -> Result<Discovered, ClientError> {
        let age = s.confirmed.elapsed();
        // A long poll answers at least every `watch_wait`; silence well beyond it means the
        // replica asked is not answering even if no error was seen yet (black-holed).
        let stale = s.contact_lost || age > self.options.watch_wait * 2 + Duration::from_secs(1);
        if stale && self.options.max_staleness.is_some_and(|max| age > max) {
            return Err(ClientError::Unreachable(format!(
                "the cluster has not confirmed the endpoints of `{service}` for {} s (more than the maximum staleness)",
                age.as_secs()
            )));
        }
        Ok(Discovered { endpoints: s.endpoints.clone(), stale, age })
    }

    /// Fetches `service` once and starts its watch.
    async fn start(self: &Arc<Self>, service: &str) -> Result<Snapshot, ClientError> {
        let client = self.options.client_service.as_deref();
        let (endpoints, index) = fetch(&self.c, service, client, Fetch::Once).await?;
        let snapshot = Snapshot {
            endpoints: endpoints.into(),
            index: index.unwrap_or(0),
            confirmed: Instant::now(),
            contact_lost: false,
        };
        let mut services = self.services.write().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = services.get(service) {
            // Another caller started it meanwhile.
            return Ok(w.snapshot.borrow().clone());
        }
        let (tx, _) = watch::channel(snapshot.clone());
        let task = tokio::spawn(keep_fresh(Arc::downgrade(self), service.to_string(), tx.clone()));
        services.insert(service.to_string(), Arc::new(Watched { snapshot: tx, task }));
        Ok(snapshot)
    }
}

/// The kinds of discovery request.
#[derive(Debug, Clone, Copy)]
enum Fetch {
    /// The first fetch of a service.
    Once,
    /// A long poll that answers once the service's answer changed after `after` (or after
    /// `wait`). One round over the replicas at most: the watch loop retries on its own, and
    /// hears of an outage at once (`discovery-stale-if-error`).
    Watch { after: u64, wait: Duration },
    /// A linearizable read (`consistent=true`): confirms an empty watch answer before it may
    /// wipe the cache (`discovery-empty-answer-keeps-cache`).
    Consistent,
}

/// One discovery request: the endpoints and the `x-plum-index` of the answer, if it had one.
/// `client`: the service this process serves (`clientService`).
async fn fetch(
    c: &Controllers,
    service: &str,
    client: Option<&str>,
    kind: Fetch,
) -> Result<(Vec<Endpoint>, Option<u64>), ClientError> {
    let mut pairs: Vec<(&str, &str)> = vec![("service", service)];
    pairs.extend(client.map(|c| ("clientService", c)));
    let (index, ms);
    let req = match kind {
        Fetch::Once => Request::get(format!("/v1/discovery?{}", query(&pairs))),
        Fetch::Consistent => {
            pairs.push(("consistent", "true"));
            Request::get(format!("/v1/discovery?{}", query(&pairs)))
        }
        Fetch::Watch { after, wait } => {
            (index, ms) = (after.to_string(), wait.as_millis().to_string());
            pairs.extend([("watch", "true"), ("index", index.as_str()), ("timeoutMs", ms.as_str())]);
            Request::get(format!("/v1/discovery?{}", query(&pairs))).max_rounds(1)
        }
    };
    let req_wait = match kind {
        Fetch::Watch { wait, .. } => wait,
        _ => Duration::ZERO,
    };
    let req = req.attempt_timeout(req_wait + Duration::from_secs(3)).deadline(req_wait + Duration::from_secs(6));
    let answer = c.send::<Vec<Endpoint>>(req).await?;
    Ok((answer.body, answer.index))
}

/// What a watch answer does to the cached snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Merge {
    /// Apply it ([`apply`]).
    Apply,
    /// Its index is below the cached one: a lagging replica's older answer. The cache never
    /// goes back in time (`discovery-index-backwards`).
    Older,
    /// Empty over a non-empty cache: an empty push (a replica that lost its view, a bug, an
    /// intermediary) must not wipe the cache without a confirmed removal. Confirm it with a
    /// linearizable read first (`discovery-empty-answer-keeps-cache`).
    Confirm,
}

/// Decides what a watch answer (`endpoints` at `index`) does to `s`.
fn merge(s: &Snapshot, endpoints: &[Endpoint], index: Option<u64>) -> Merge {
    if index.is_some_and(|i| i < s.index) {
        Merge::Older
    } else if endpoints.is_empty() && !s.endpoints.is_empty() {
        Merge::Confirm
    } else {
        Merge::Apply
    }
}

/// Makes `endpoints` at `index` the cached answer, confirmed now.
fn apply(s: &mut Snapshot, endpoints: Vec<Endpoint>, index: Option<u64>) {
    if *s.endpoints != *endpoints {
        s.endpoints = endpoints.into();
    }
    s.index = index.unwrap_or(0).max(s.index);
    s.confirmed = Instant::now();
    s.contact_lost = false;
}

/// The watch loop of one service: long polls from the last index; on failure marks the cache
/// as out of contact and retries with backoff. Ends when the cache is dropped.
async fn keep_fresh(cache: Weak<Discovery>, service: String, tx: watch::Sender<Snapshot>) {
    let backoff = Backoff { base: Duration::from_millis(50), max: Duration::from_secs(2) };
    let mut failures = 0;
    let mut refused = false;
    loop {
        let Some(d) = cache.upgrade() else { return };
        let (c, wait, client) = (d.c.clone(), d.options.watch_wait, d.options.client_service.clone());
        drop(d);
        let after = tx.borrow().index;
        // What to apply (`None`: nothing), and whether to pause before the next poll (the
        // answer was an empty or an older one: such answers may come at once, do not spin on
        // them); or why the cluster could not be heard.
        let outcome = async {
            let (endpoints, index) = fetch(&c, &service, client.as_deref(), Fetch::Watch { after, wait }).await?;
            let verdict = merge(&tx.borrow(), &endpoints, index);
            Ok::<_, ClientError>(match verdict {
                Merge::Apply => (Some((endpoints, index)), false),
                Merge::Older => (None, true),
                Merge::Confirm => {
                    // Only the linearizable read's answer is applied (unless it is older too).
                    let (endpoints, index) = fetch(&c, &service, client.as_deref(), Fetch::Consistent).await?;
                    let verdict = merge(&tx.borrow(), &endpoints, index);
                    ((verdict != Merge::Older).then_some((endpoints, index)), true)
                }
            })
        }
        .await;
        match outcome {
            Ok((applied, pause)) => {
                failures = 0;
                refused = false;
                if let Some((endpoints, index)) = applied {
                    tx.send_modify(|s| apply(s, endpoints, index));
                }
                if pause {
                    tokio::time::sleep(backoff.delay(0)).await;
                }
            }
            Err(e) => {
                // A refused token is no outage and stays refused until replaced: say so once.
                if e.is_auth() && !refused {
                    tracing::warn!(service = %service, error = %e, "discovery watch refused; serving the cached endpoints");
                } else {
                    tracing::debug!(service = %service, error = %e, "discovery watch failed; serving the cached endpoints");
                }
                refused = e.is_auth();
                tx.send_if_modified(|s| !std::mem::replace(&mut s.contact_lost, true));
                tokio::time::sleep(backoff.delay(failures)).await;
                failures = failures.saturating_add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(version: &str, protocol: &str, zone: &str) -> Endpoint {
        Endpoint {
            service_name: "s".into(),
            instance_id: "i".into(),
            node_id: "n".into(),
            ip: "127.0.0.1".into(),
            port: 1,
            protocol: protocol.into(),
            version: version.into(),
            labels: BTreeMap::from([("zone".to_string(), zone.to_string())]),
            healthy: true,
            last_seen: 0,
        }
    }

    #[test]
    fn queries_filter_by_range_protocol_and_labels() {
        let q = Query {
            version: Some(VersionFilter::parse("^1.2").unwrap()),
            protocol: Some("http".into()),
            labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
        };
        assert!(q.matches(&ep("1.4.0", "http", "a")));
        assert!(!q.matches(&ep("2.0.0", "http", "a")));
        assert!(!q.matches(&ep("1.4.0", "grpc", "a")));
        assert!(!q.matches(&ep("1.4.0", "http", "b")));
        assert!(Query::default().matches(&ep("x", "y", "z")));
    }

    #[test]
    fn staleness_is_reported_and_bounded() {
        let c = Arc::new(Controllers::new(vec!["http://127.0.0.1:9".into()]));
        let options = DiscoveryOptions {
            watch_wait: Duration::from_secs(1),
            max_staleness: Some(Duration::from_secs(5)),
            client_service: None,
        };
        let d = Discovery { c, options, services: RwLock::new(HashMap::new()) };
        let fresh = Snapshot {
            endpoints: vec![ep("1", "http", "a")].into(),
            index: 3,
            confirmed: Instant::now(),
            contact_lost: false,
        };
        assert!(!d.judge("s", &fresh).unwrap().stale);
        let lost = Snapshot { contact_lost: true, ..fresh.clone() };
        assert!(d.judge("s", &lost).unwrap().stale, "served, marked stale");
        let old = Snapshot { confirmed: Instant::now() - Duration::from_secs(6), ..lost };
        assert!(d.judge("s", &old).is_err(), "past the maximum staleness");
        let silent = Snapshot { confirmed: Instant::now() - Duration::from_secs(4), ..fresh };
        assert!(d.judge("s", &silent).unwrap().stale, "no answer for two watch periods");
    }

    #[test]
    fn answers_never_take_the_cache_back_in_time_nor_wipe_it_unconfirmed() {
        let two = vec![ep("1", "http", "a"), ep("1", "http", "b")];
        let s = Snapshot { endpoints: two.clone().into(), index: 20, confirmed: Instant::now(), contact_lost: true };
        let one = vec![ep("1", "http", "a")];
        assert_eq!(merge(&s, &one, Some(15)), Merge::Older, "a lagging replica");
        assert_eq!(merge(&s, &[], Some(15)), Merge::Older);
        assert_eq!(merge(&s, &[], Some(20)), Merge::Confirm, "an empty push at the same index");
        assert_eq!(merge(&s, &[], Some(21)), Merge::Confirm, "even at a higher one");
        assert_eq!(merge(&s, &one, Some(20)), Merge::Apply);
        assert_eq!(merge(&s, &one, None), Merge::Apply, "no index: not known to be older");
        let empty = Snapshot { endpoints: Vec::new().into(), ..s.clone() };
        assert_eq!(merge(&empty, &[], Some(20)), Merge::Apply, "nothing to wipe");

        let mut applied = s.clone();
        apply(&mut applied, one.clone(), Some(21));
        assert_eq!((&*applied.endpoints, applied.index, applied.contact_lost), (&one[..], 21, false));
        apply(&mut applied, Vec::new(), None);
        assert_eq!((applied.endpoints.len(), applied.index), (0, 21), "the index never goes down");
    }
}
