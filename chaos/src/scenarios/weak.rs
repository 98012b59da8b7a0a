//! A weak network between the edges and the controllers: every agent → controller link and
//! every SDK client → controller link gets 200 ms ± 100 ms of latency and loss-like stalls
//! (a chunk held for a retransmission's time, 5 % of chunks) for a while. Raft links stay
//! clean: this is the fleet's network, not the controllers'. No node may be declared dead
//! (agents heartbeat well within their TTL), and SDK clients must keep being served.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{Env, Outcome};
use crate::proxy::Faults;
use crate::stats::{ms, summarize};

/// One stall: about a TCP retransmission timeout on a path with this latency.
const STALL_MS: u64 = 300;

pub struct WeakOptions {
    pub seconds: u64,
    pub latency_ms: u64,
    pub jitter_ms: u64,
    pub stall_prob: f64,
    pub clients: usize,
}

pub async fn run(env: &Env, opts: &WeakOptions) -> Result<Outcome> {
    let proxy = env.proxy()?;
    let proxied: Vec<String> = crate::target::setting("PLUM_PROXIED_CONTROLLERS")
        .context("no PLUM_PROXIED_CONTROLLERS: start the cluster with `scripts/cluster.sh up --proxied`")?
        .split(',')
        .map(str::to_string)
        .collect();
    let mut out = Outcome { name: "weak_network", bound: Duration::from_secs(opts.seconds), ..Outcome::default() };
    let kv = crate::target::sdk_kv(&proxied)?;
    let ns = format!("weak-{}", std::process::id());
    kv.put(&ns, "read-me", "x").await.context("seeding the key clients read")?;

    let before = crate::marks::marks(&env.urls).await;
    let faults = Faults {
        latency_ms: Some(opts.latency_ms),
        jitter_ms: Some(opts.jitter_ms),
        stall_prob: Some(opts.stall_prob),
        stall_ms: Some(STALL_MS),
        ..Faults::default()
    };
    let links = proxy.set(|name| name.starts_with('a') || name.starts_with("c-"), &faults).await?;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..opts.clients)
        .map(|c| {
            let (kv, ns, stop, errors) = (kv.clone(), ns.clone(), stop.clone(), errors.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let sent = Instant::now();
                    // Mostly reads, some writes, as a service's config client would.
                    let ok = if seq.is_multiple_of(5) {
                        kv.put(&ns, &format!("c{c}"), &seq.to_string()).await.is_ok()
                    } else {
                        kv.get(&ns, "read-me").await.is_ok_and(|v| v.is_some())
                    };
                    if ok {
                        latencies.push(sent.elapsed());
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(opts.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    proxy.heal_all().await?;
    let after = crate::marks::marks(&env.urls).await;

    let expired = before.expired_until(&after);
    match expired {
        Some(0) => {}
        Some(n) => out.violations.push(format!("{n} nodes declared dead on a slow network")),
        None => out.violations.push("no replica told its expiries before and after".into()),
    }
    out.client_errors = errors.load(Ordering::Relaxed);
    let ok = latencies.len();
    let s = summarize(latencies);
    let total = ok + out.client_errors;
    out.more = vec![
        ("links".into(), links.to_string()),
        ("sdk_ok".into(), ok.to_string()),
        ("sdk_success_pct".into(), format!("{:.2}", 100.0 * ok as f64 / total.max(1) as f64)),
        ("sdk_p50_ms".into(), format!("{:.0}", ms(s.p50))),
        ("sdk_p99_ms".into(), format!("{:.0}", ms(s.p99))),
        ("seconds".into(), format!("{:.0}", elapsed.as_secs_f64())),
        ("nodes_expired".into(), expired.map(|e| e.to_string()).unwrap_or_else(|| "unknown".into())),
        ("term".into(), format!("{}->{}", before.term, after.term)),
    ];
    if out.client_errors > 0 {
        out.violations.push(format!("{} SDK requests failed on a slow network", out.client_errors));
    }
    Ok(out)
}
