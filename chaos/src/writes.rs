//! Acknowledged writes under a fault. Writers put unique keys (value = key), either as raw
//! requests through every replica in turn with a short timeout (what the cluster does, unhidden)
//! or through the Rust SDK (what a user sees: its retries, redirects and deadline), or as raw
//! requests to etcd's members (to compare, [`crate::etcd`]); they record
//! which writes were acknowledged and when the first write sent after the fault was. Afterwards every acknowledged key must still be
//! readable through a linearizable read: a missing one is an acknowledged write lost.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// One raw write's usual bound: a stalled replica must not hold a writer for long.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Acks {
    keys: BTreeSet<String>,
    fault_at: Option<Instant>,
    first_ack_after_fault: Option<Instant>,
}

/// Writers running against the cluster until [`Writes::stop`].
pub struct Writes {
    acks: Arc<Mutex<Acks>>,
    errors: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the writers did.
pub struct Tally {
    pub acked: BTreeSet<String>,
    /// Writes not acknowledged (refused, timed out, connection failed).
    pub errors: usize,
}

impl Writes {
    /// Starts `writers` raw writers putting keys `{prefix}w{n}-{seq}` into namespace `ns`, each
    /// write bounded by `timeout` (a write that stalls on a silent replica holds its writer
    /// that long: it bounds how finely recovery is measured).
    pub fn start(
        http: &reqwest::Client,
        urls: &[String],
        ns: &str,
        prefix: &str,
        writers: usize,
        timeout: Duration,
    ) -> Writes {
        Writes::spawn(Via::Raw { http: http.clone(), urls: urls.to_vec(), timeout }, ns, prefix, writers)
    }

    /// The same against etcd members (`urls`: their client URLs), through its v3 JSON gateway:
    /// key `{ns}/{prefix}w{n}-{seq}`, its value the key without `{ns}/`. Each write is bounded
    /// by [`WRITE_TIMEOUT`], as Plum's are in the failover scenario it is compared with.
    pub fn start_etcd(http: &reqwest::Client, urls: &[String], ns: &str, prefix: &str, writers: usize) -> Writes {
        let via = Via::Etcd { http: http.clone(), urls: urls.to_vec(), timeout: WRITE_TIMEOUT };
        Writes::spawn(via, ns, prefix, writers)
    }

    /// The same through the SDK: an error is a request the SDK itself gave up on.
    pub fn start_sdk(kv: &plum_sdk::kv::Kv, ns: &str, prefix: &str, writers: usize) -> Writes {
        Writes::spawn(Via::Sdk(kv.clone()), ns, prefix, writers)
    }

    fn spawn(via: Via, ns: &str, prefix: &str, writers: usize) -> Writes {
        let (acks, errors, stop) = (Arc::default(), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let tasks = (0..writers)
            .map(|w| {
                let writer =
                    Writer { via: via.clone(), ns: ns.to_string(), prefix: format!("{prefix}w{w}-"), start: w };
                tokio::spawn(writer.run(Arc::clone(&acks), Arc::clone(&errors), Arc::clone(&stop)))
            })
            .collect();
        Writes { acks, errors, stop, tasks }
    }

    /// Marks now as the moment of the fault.
    pub async fn fault(&self) -> Instant {
        let now = Instant::now();
        self.acks.lock().await.fault_at = Some(now);
        now
    }

    /// Waits (up to `bound`) for the first acknowledgement of a write sent after the fault;
    /// `None` if none came.
    pub async fn recovery(&self, bound: Duration) -> Option<Duration> {
        let deadline = Instant::now() + bound;
        loop {
            {
                let a = self.acks.lock().await;
                if let (Some(fault), Some(acked)) = (a.fault_at, a.first_ack_after_fault) {
                    return Some(acked.duration_since(fault));
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub async fn stop(mut self) -> Result<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.tasks) {
            t.await.context("writer task")?;
        }
        let acked = std::mem::take(&mut self.acks.lock().await.keys);
        Ok(Tally { acked, errors: self.errors.load(Ordering::Relaxed) })
    }
}

/// Writers dropped without [`Writes::stop`] (a trial that failed or ran out of time) stop
/// after their current write instead of writing on.
impl Drop for Writes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[derive(Clone)]
enum Via {
    Raw { http: reqwest::Client, urls: Vec<String>, timeout: Duration },
    Sdk(plum_sdk::kv::Kv),
    Etcd { http: reqwest::Client, urls: Vec<String>, timeout: Duration },
}

struct Writer {
    via: Via,
    ns: String,
    prefix: String,
    start: usize,
}

impl Writer {
    async fn run(self, acks: Arc<Mutex<Acks>>, errors: Arc<AtomicUsize>, stop: Arc<AtomicBool>) {
        let mut seq = 0u64;
        let mut at = self.start;
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            let key = format!("{}{seq}", self.prefix);
            let sent = Instant::now();
            let ok = match &self.via {
                Via::Raw { http, urls, timeout } => {
                    let url = format!("{}/v1/kv/{}/{key}", urls[at % urls.len()], self.ns);
                    acknowledged(http.put(url).json(&json!({ "value": key })), *timeout).await
                }
                Via::Etcd { http, urls, timeout } => {
                    let put =
                        crate::etcd::gateway::put(http, &urls[at % urls.len()], &format!("{}/{key}", self.ns), &key);
                    acknowledged(put, *timeout).await
                }
                Via::Sdk(kv) => match kv.put(&self.ns, &key, &key).await {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(key, error = %e, "an SDK write failed");
                        false
                    }
                },
            };
            if ok {
                let acked = Instant::now();
                let mut a = acks.lock().await;
                a.keys.insert(key);
                if a.fault_at.is_some_and(|f| sent > f) && a.first_ack_after_fault.is_none_or(|t| acked < t) {
                    a.first_ack_after_fault = Some(acked);
                }
            } else {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            // Round-robin over every replica; a dead one simply fails and the next is tried.
            at += 1;
        }
    }
}

/// Whether a raw write was answered `200` within `timeout`.
async fn acknowledged(request: reqwest::RequestBuilder, timeout: Duration) -> bool {
    request.timeout(timeout).send().await.is_ok_and(|r| r.status() == 200)
}

/// How many of `acked` are missing from namespace `ns` (keys under `prefix`), read
/// linearizably from the first replica that answers.
pub async fn lost(
    http: &reqwest::Client,
    urls: &[String],
    ns: &str,
    prefix: &str,
    acked: &BTreeSet<String>,
) -> Result<usize> {
    Ok(missing(acked, &read_keys(http, urls, ns, prefix).await?))
}

/// How many of `acked` are not in `found` (a sample of them logged).
pub fn missing(acked: &BTreeSet<String>, found: &BTreeSet<String>) -> usize {
    let missing: Vec<&String> = acked.difference(found).collect();
    if !missing.is_empty() {
        tracing::error!(missing = missing.len(), sample = ?missing.iter().take(5).collect::<Vec<_>>(), "acknowledged writes lost");
    }
    missing.len()
}

/// Keys under `prefix` whose value is the key, read linearizably.
async fn read_keys(http: &reqwest::Client, urls: &[String], ns: &str, prefix: &str) -> Result<BTreeSet<String>> {
    for url in urls {
        let Ok(resp) = http
            .get(format!("{url}/v1/kv/{ns}?prefix={prefix}&consistent=true"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        else {
            continue;
        };
        if !resp.status().is_success() {
            continue;
        }
        let items: Vec<Value> = resp.json().await.context("kv list")?;
        return Ok(items
            .iter()
            .filter(|i| i["key"] == i["value"])
            .filter_map(|i| i["key"].as_str().map(str::to_string))
            .collect());
    }
    bail!("no replica answered a consistent read")
}
