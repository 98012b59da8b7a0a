//! The SDKs under measurement (Rust in this process, Python and Java through `--external`):
//! cached discovery lookups on one core, uncached lookups' latency, and a leader kill as an SDK
//! user sees it (the longest stall of one call, and whether every write was applied exactly
//! once).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use plum_sdk::{Client, Options};
use plum_types::{EndpointSpec, RegisterRequest};

use crate::settle::{wait_caught_up, wait_settled};
use crate::stats::{ms, summarize};
use crate::target::replica_pid;

const SERVICE: &str = "sdk-bench";

fn client(urls: &[String], transport: Options) -> Client {
    crate::target::sdk_client(urls, transport).expect("token and CA settings")
}

/// One instance of the bench service with one endpoint on loopback.
fn bench_instance(instance_id: String, port: u32) -> RegisterRequest {
    let endpoint = EndpointSpec {
        service_name: SERVICE.into(),
        port,
        protocol: "http".into(),
        version: "1.0.0".into(),
        ..EndpointSpec::default()
    };
    RegisterRequest {
        instance_id,
        ip: Some("127.0.0.1".into()),
        endpoints: vec![endpoint],
        ..RegisterRequest::default()
    }
}

/// Registers `instances` endpoints of the bench service (a registrar keeps them alive while
/// the returned value lives).
async fn register(sdk: &Client, instances: usize) -> Result<plum_sdk::registration::Registrar> {
    let registrar = sdk.registrar(Duration::from_secs(10));
    let items = (0..instances).map(|i| bench_instance(format!("{SERVICE}-{i}"), 20_000 + i as u32)).collect();
    registrar.register(items).await.context("register the bench service")?;
    Ok(registrar)
}

/// Cached lookups on one thread (its own single-threaded runtime, which also runs the cache's
/// watch) for `seconds`; then uncached lookups, one at a time, for `seconds`.
pub async fn discovery(urls: &[String], seconds: u64, instances: usize) -> Result<String> {
    let sdk = client(urls, Options::default());
    let registrar = register(&sdk, instances).await?;
    let duration = Duration::from_secs(seconds);
    let thread_urls = urls.to_vec();
    let cached = std::thread::spawn(move || -> Result<(u64, Duration)> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let sdk = client(&thread_urls, Options::default());
            let discovery = sdk.discovery().clone();
            // The replica asked may not have applied the registrations yet: wait for the watch.
            let ready = Instant::now();
            while discovery.endpoints(SERVICE).await?.endpoints.len() != instances {
                if ready.elapsed() > Duration::from_secs(10) {
                    bail!("the cache never held the {instances} registered endpoints");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let started = Instant::now();
            let mut calls = 0u64;
            while started.elapsed() < duration {
                // Batches of lookups between clock reads; each is a full SDK call.
                for _ in 0..1000 {
                    let d = discovery.endpoints(SERVICE).await?;
                    calls += d.endpoints.len().min(1) as u64;
                }
                // Let the cache's watch run on this thread too.
                tokio::task::yield_now().await;
            }
            Ok((calls, started.elapsed()))
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("cached lookup thread panicked"))??;
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < duration {
        let t = Instant::now();
        let eps = sdk.discover_uncached(SERVICE).await?;
        latencies.push(t.elapsed());
        if eps.len() != instances {
            bail!("uncached lookup returned {} endpoints", eps.len());
        }
    }
    let watch = watch_latency(&sdk, &registrar, WATCH_TRIALS).await?;
    registrar.shutdown().await?;
    let (calls, elapsed) = cached;
    let s = summarize(latencies);
    let w = summarize(watch);
    Ok(format!(
        "sdk_discovery cached_calls_per_sec_one_thread={:.0} cached_calls={calls} uncached_calls={} uncached_p50_ms={:.3} uncached_p99_ms={:.3} uncached_max_ms={:.3} watch_p50_ms={:.1} watch_p99_ms={:.1} watch_max_ms={:.1} watch_trials={}",
        calls as f64 / elapsed.as_secs_f64(),
        s.count,
        ms(s.p50),
        ms(s.p99),
        ms(s.max),
        ms(w.p50),
        ms(w.p99),
        ms(w.max),
        w.count
    ))
}

/// What an external program's discovery run reported.
#[derive(Debug, PartialEq)]
pub struct ExternalDiscovery {
    pub cached_calls: u64,
    pub cached_elapsed: Duration,
    pub uncached: Vec<Duration>,
}

/// Reads an external program's discovery output (one `cached` line, `uncached` lines).
pub fn parse_discovery(stdout: &str) -> Result<ExternalDiscovery> {
    let mut cached = None;
    let mut uncached = Vec::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        match parse_line(line)? {
            WriterLine::Cached { calls, elapsed } => cached = Some((calls, elapsed)),
            WriterLine::Uncached(d) => uncached.push(d),
            WriterLine::Error(e) => bail!("the bench program: {e}"),
            other => bail!("unexpected in a discovery run: {other:?}"),
        }
    }
    let (cached_calls, cached_elapsed) = cached.context("no `cached` line")?;
    if cached_elapsed.is_zero() || uncached.is_empty() {
        bail!("an empty discovery run");
    }
    Ok(ExternalDiscovery { cached_calls, cached_elapsed, uncached })
}

/// The same measures as [`discovery`] (not the watch's) through another language's SDK: this
/// process registers the instances; `cmd discovery` runs with `PLUM_BENCH_SERVICE`,
/// `PLUM_BENCH_INSTANCES` and `PLUM_BENCH_SECONDS` set and reports what [`parse_discovery`] reads.
pub async fn discovery_external(urls: &[String], seconds: u64, instances: usize, cmd: &str) -> Result<String> {
    let sdk = client(urls, Options::default());
    let registrar = register(&sdk, instances).await?;
    let mut command = external_command(&format!("{cmd} discovery"), urls);
    command
        .env("PLUM_BENCH_SERVICE", SERVICE)
        .env("PLUM_BENCH_INSTANCES", instances.to_string())
        .env("PLUM_BENCH_SECONDS", seconds.to_string())
        .stdin(std::process::Stdio::null());
    let bound = Duration::from_secs(2 * seconds) + EXTERNAL_BOUND;
    let output = tokio::time::timeout(bound, command.output()).await.context("the bench program overran")??;
    registrar.shutdown().await?;
    if !output.status.success() {
        bail!("`{cmd} discovery` exited with {}", output.status);
    }
    let r = parse_discovery(&String::from_utf8_lossy(&output.stdout))?;
    let s = summarize(r.uncached);
    Ok(format!(
        "sdk_discovery cached_calls_per_sec_one_thread={:.0} cached_calls={} uncached_calls={} uncached_p50_ms={:.3} uncached_p99_ms={:.3} uncached_max_ms={:.3}",
        r.cached_calls as f64 / r.cached_elapsed.as_secs_f64(),
        r.cached_calls,
        s.count,
        ms(s.p50),
        ms(s.p99),
        ms(s.max),
    ))
}

const WATCH_TRIALS: usize = 20;
/// A change that has not reached the cache by then counts as this long.
const WATCH_BOUND: Duration = Duration::from_secs(10);

/// From sending a registration until the SDK's cache (kept by its watch, never asked again)
/// holds the new endpoint; then from sending a deregistration until it is gone.
async fn watch_latency(
    sdk: &Client,
    registrar: &plum_sdk::registration::Registrar,
    trials: usize,
) -> Result<Vec<Duration>> {
    let mut updates = sdk.discovery().subscribe(SERVICE).await?;
    let mut samples = Vec::new();
    for i in 0..trials {
        let id = format!("{SERVICE}-watch-{i}");
        let has = |s: &plum_sdk::discovery::Snapshot| s.endpoints.iter().any(|e| e.instance_id == id);
        let started = Instant::now();
        registrar.register(vec![bench_instance(id.clone(), 30_000 + i as u32)]).await?;
        let seen = tokio::time::timeout(WATCH_BOUND, updates.wait_for(|s| has(s))).await.is_ok_and(|r| r.is_ok());
        samples.push(if seen { started.elapsed() } else { WATCH_BOUND });
        let started = Instant::now();
        registrar.deregister(&id).await?;
        let gone = tokio::time::timeout(WATCH_BOUND, updates.wait_for(|s| !has(s))).await.is_ok_and(|r| r.is_ok());
        samples.push(if gone { started.elapsed() } else { WATCH_BOUND });
    }
    Ok(samples)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallTrial {
    /// The longest single write call that was in flight at or started after the kill.
    pub stall: Duration,
    /// Writes acknowledged whose version showed them applied more or less than once, plus one
    /// when a consistent read after the trial disagrees with the last acknowledged version.
    pub not_once: usize,
}

/// One write of the counter key as its writer saw it (whatever the writer's language).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// When the call started, nanoseconds since the Unix epoch (the clock all processes share).
    pub start_unix_ns: u64,
    /// How long it took (the writer's monotonic clock).
    pub took: Duration,
    /// The key's version the write's answer carried.
    pub version: u64,
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// The one judgement of a trial, for every language: each answered version must be the previous
/// plus one (a write applied twice, or not at all, breaks the sequence), the key's version read
/// consistently after the writer stopped must be the last one answered, and the stall is the
/// longest call that was in flight at or began after the kill.
pub fn judge(calls: &[Call], kill_at_unix_ns: u64, final_version: u64) -> StallTrial {
    let mut stall = Duration::ZERO;
    let mut not_once = 0;
    let mut expected = 1u64;
    for c in calls {
        if c.version != expected {
            not_once += 1;
            expected = c.version;
        }
        expected += 1;
        if c.start_unix_ns + c.took.as_nanos() as u64 >= kill_at_unix_ns {
            stall = stall.max(c.took);
        }
    }
    if calls.last().map_or(0, |c| c.version) != final_version {
        not_once += 1;
    }
    StallTrial { stall, not_once }
}

/// Who writes during a leader kill: the Rust SDK in this process, or an SDK user in another
/// language (`--external`: a child process speaking the line protocol of [`WriterLine`]).
enum Writer {
    Rust { sdk: Arc<Client>, running: Option<RustWriter> },
    External(Box<External>),
}

/// The in-process writer's stop flag and task.
type RustWriter = (Arc<AtomicBool>, tokio::task::JoinHandle<Result<Vec<Call>>>);

impl Writer {
    /// Starts writing `key` one write at a time; an external writer returns once its first
    /// write was acknowledged (its start-up is not the bench's business).
    async fn start(&mut self, key: &str) -> Result<()> {
        match self {
            Writer::Rust { sdk, running } => {
                let stop = Arc::new(AtomicBool::new(false));
                *running = Some((stop.clone(), tokio::spawn(write_counter(sdk.clone(), key.to_string(), stop))));
                Ok(())
            }
            Writer::External(e) => e.start(key).await,
        }
    }

    /// Stops after the call in flight; every call made since `start`.
    async fn stop(&mut self) -> Result<Vec<Call>> {
        match self {
            Writer::Rust { running, .. } => {
                let (stop, task) = running.take().context("writer not started")?;
                stop.store(true, Ordering::Relaxed);
                task.await.context("writer")?
            }
            Writer::External(e) => e.stop().await,
        }
    }
}

/// What an external bench program prints, one item a line (stdout):
/// `call <start_unix_ns> <took_ns> <version>` per write; `stopped` once it stopped after `stop`;
/// `cached <calls> <elapsed_ns>` and `uncached <took_ns>` for the discovery bench;
/// `error <message>` when a call failed outright.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriterLine {
    Call(Call),
    Stopped,
    Cached { calls: u64, elapsed: Duration },
    Uncached(Duration),
    Error(String),
}

pub fn parse_line(line: &str) -> Result<WriterLine> {
    let mut words = line.split_whitespace();
    let num = |w: Option<&str>| -> Result<u64> {
        w.context("missing field")?.parse::<u64>().with_context(|| format!("not a number in {line:?}"))
    };
    let parsed = match words.next() {
        Some("call") => WriterLine::Call(Call {
            start_unix_ns: num(words.next())?,
            took: Duration::from_nanos(num(words.next())?),
            version: num(words.next())?,
        }),
        Some("stopped") => WriterLine::Stopped,
        Some("cached") => {
            WriterLine::Cached { calls: num(words.next())?, elapsed: Duration::from_nanos(num(words.next())?) }
        }
        Some("uncached") => WriterLine::Uncached(Duration::from_nanos(num(words.next())?)),
        Some("error") => return Ok(WriterLine::Error(line["error".len()..].trim().to_string())),
        _ => bail!("unexpected line from the bench program: {line:?}"),
    };
    if words.next().is_some() {
        bail!("trailing fields in {line:?}");
    }
    Ok(parsed)
}

/// `sh -c "exec CMD"` with the cluster in its environment (`PLUM_CONTROLLERS`, and `PLUM_TOKEN`
/// when the cluster wants one), stdin and stdout piped, killed if dropped.
fn external_command(cmd: &str, urls: &[String]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c").arg(format!("exec {cmd}")).env("PLUM_CONTROLLERS", urls.join(",")).env_remove("PLUM_TOKEN_FILE");
    if let Some(t) = crate::target::token() {
        c.env("PLUM_TOKEN", t);
    }
    c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).kill_on_drop(true);
    c
}

struct External {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    calls: Vec<Call>,
}

/// How long an external writer may take to start and answer its first write, or to stop (its
/// writes have a 20 s deadline).
const EXTERNAL_BOUND: Duration = Duration::from_secs(60);

impl External {
    fn spawn(cmd: &str, urls: &[String]) -> Result<External> {
        let mut child = external_command(&format!("{cmd} writer"), urls).spawn().with_context(|| format!("`{cmd}`"))?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut reader = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(External { child, stdin, lines, calls: Vec::new() })
    }

    async fn send(&mut self, line: &str) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.context("write to the bench program")?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// The next line, parsed; an `error` line or the program's exit is an error.
    async fn next(&mut self) -> Result<WriterLine> {
        let line = tokio::time::timeout(EXTERNAL_BOUND, self.lines.recv())
            .await
            .context("the bench program went silent")?
            .context("the bench program exited")?;
        match parse_line(&line)? {
            WriterLine::Error(e) => bail!("the bench program: {e}"),
            other => Ok(other),
        }
    }

    async fn start(&mut self, key: &str) -> Result<()> {
        self.calls.clear();
        self.send(&format!("write {SERVICE} {key}")).await?;
        match self.next().await? {
            WriterLine::Call(c) => self.calls.push(c),
            other => bail!("expected a call, got {other:?}"),
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<Vec<Call>> {
        self.send("stop").await?;
        loop {
            match self.next().await? {
                WriterLine::Call(c) => self.calls.push(c),
                WriterLine::Stopped => return Ok(std::mem::take(&mut self.calls)),
                other => bail!("expected a call, got {other:?}"),
            }
        }
    }

    /// Closes its stdin (it exits) and waits for it.
    async fn finish(self) -> Result<()> {
        let External { mut child, stdin, .. } = self;
        drop(stdin);
        let status =
            tokio::time::timeout(Duration::from_secs(30), child.wait()).await.context("bench program exit")??;
        if !status.success() {
            bail!("the bench program exited with {status}");
        }
        Ok(())
    }
}

/// Kills the leader `trials` times while one SDK user writes a counter key one write at a time
/// (each write's answered version must be the previous plus one); restarts it and waits for it
/// to catch up before the next trial. `external`: the writer is that program (see
/// [`WriterLine`]), started once with `writer` appended, instead of the Rust SDK.
pub async fn leader_kill(
    urls: &[String],
    trials: usize,
    pid_dir: &std::path::Path,
    restart_cmd: &str,
    external: Option<&str>,
) -> Result<Vec<StallTrial>> {
    let http = crate::target::http_client(Duration::from_secs(2));
    let transport =
        Options { deadline: Duration::from_secs(20), attempt_timeout: Duration::from_secs(1), ..Options::default() };
    let sdk = Arc::new(client(urls, transport));
    let mut writer = match external {
        Some(cmd) => Writer::External(Box::new(External::spawn(cmd, urls)?)),
        None => Writer::Rust { sdk: sdk.clone(), running: None },
    };
    let kv = sdk.kv();
    let mut results = Vec::new();
    for trial in 0..trials {
        let leader = wait_settled(&http, urls).await?;
        let pid = replica_pid(pid_dir, leader)?;
        let key = format!("t{trial}-{}", rand::random::<u32>());
        writer.start(&key).await?;
        tokio::time::sleep(Duration::from_millis(300 + rand::random::<u64>() % 400)).await;
        // SAFETY: kill(2) on a pid from our own pid file, checked to be plum-controller.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let kill_at = unix_ns(SystemTime::now());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let calls = writer.stop().await?;
        let final_version = kv.get_consistent(SERVICE, &key).await?.map_or(0, |item| item.version);
        let trial_result = judge(&calls, kill_at, final_version);
        let cmd = restart_cmd.replace("{id}", &leader.to_string());
        let status = tokio::process::Command::new("sh").arg("-c").arg(&cmd).status().await?;
        if !status.success() {
            bail!("`{cmd}` failed: {status}");
        }
        wait_caught_up(&http, urls, leader).await?;
        println!(
            "trial={trial} killed={leader} longest_call_ms={:.0} not_applied_once={} writes={}",
            ms(trial_result.stall),
            trial_result.not_once,
            calls.len()
        );
        results.push(trial_result);
    }
    if let Writer::External(e) = writer {
        (*e).finish().await?;
    }
    Ok(results)
}

async fn write_counter(sdk: Arc<Client>, key: String, stop: Arc<AtomicBool>) -> Result<Vec<Call>> {
    let kv = sdk.kv();
    let mut calls = Vec::new();
    let mut expected = 1u64;
    while !stop.load(Ordering::Relaxed) {
        let start_unix_ns = unix_ns(SystemTime::now());
        let started = Instant::now();
        let written = kv.put(SERVICE, &key, &expected.to_string()).await.context("a write failed outright")?;
        calls.push(Call { start_unix_ns, took: started.elapsed(), version: written.version });
        expected = written.version + 1;
    }
    Ok(calls)
}

pub fn stall_line(results: &[StallTrial]) -> String {
    let s = summarize(results.iter().map(|r| r.stall).collect());
    let not_once: usize = results.iter().map(|r| r.not_once).sum();
    format!(
        "sdk_leader_kill_longest_call_ms p50={:.0} p99={:.0} max={:.0} trials={} not_applied_once={not_once}",
        ms(s.p50),
        ms(s.p99),
        ms(s.max),
        s.count
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(start_ms: u64, took_ms: u64, version: u64) -> Call {
        Call { start_unix_ns: start_ms * 1_000_000, took: Duration::from_millis(took_ms), version }
    }

    #[test]
    fn parses_each_line_kind() {
        assert_eq!(
            parse_line("call 1700000000000000000 2500000 7").unwrap(),
            WriterLine::Call(Call {
                start_unix_ns: 1_700_000_000_000_000_000,
                took: Duration::from_micros(2500),
                version: 7
            })
        );
        assert_eq!(parse_line("stopped").unwrap(), WriterLine::Stopped);
        assert_eq!(
            parse_line("cached 12 5000000000").unwrap(),
            WriterLine::Cached { calls: 12, elapsed: Duration::from_secs(5) }
        );
        assert_eq!(parse_line("uncached 84000").unwrap(), WriterLine::Uncached(Duration::from_micros(84)));
        assert_eq!(parse_line("error boom: no leader").unwrap(), WriterLine::Error("boom: no leader".into()));
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in ["", "call 1 2", "call 1 2 x", "call 1 2 3 4", "cached -1 5", "hello", "uncached"] {
            assert!(parse_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn discovery_output() {
        let r = parse_discovery("cached 10 1000000000\nuncached 1000\n\nuncached 3000\n").unwrap();
        assert_eq!(
            r,
            ExternalDiscovery {
                cached_calls: 10,
                cached_elapsed: Duration::from_secs(1),
                uncached: vec![Duration::from_micros(1), Duration::from_micros(3)]
            }
        );
        assert!(parse_discovery("uncached 1000\n").is_err());
        assert!(parse_discovery("cached 10 1000000000\n").is_err());
        assert!(parse_discovery("cached 10 1000000000\nuncached 1\nerror lost\n").is_err());
        assert!(parse_discovery("cached 10 1000000000\nuncached 1\nstopped\n").is_err());
    }

    #[test]
    fn judge_counts_stalls_from_the_kill_on() {
        // Kill at 100 ms: the call 90..95 ended before it, 95..600 was in flight, 600..610 after.
        let calls = [call(90, 5, 1), call(95, 505, 2), call(600, 10, 3)];
        assert_eq!(judge(&calls, 100_000_000, 3), StallTrial { stall: Duration::from_millis(505), not_once: 0 });
        // A call ending exactly at the kill counts.
        assert_eq!(judge(&calls[..1], 95_000_000, 1).stall, Duration::from_millis(5));
        assert_eq!(judge(&calls[..1], 95_000_001, 1).stall, Duration::ZERO);
    }

    #[test]
    fn judge_counts_writes_not_applied_once() {
        // Version 3 skipped (a write applied twice), then the sequence resumes from 4.
        let calls = [call(0, 1, 1), call(1, 1, 2), call(2, 1, 4), call(3, 1, 5)];
        assert_eq!(judge(&calls, 0, 5).not_once, 1);
        // The consistent read after the trial disagrees with the last answer.
        assert_eq!(judge(&calls[..2], 0, 3).not_once, 1);
        // A first write that did not create the key.
        assert_eq!(judge(&[call(0, 1, 2)], 0, 2).not_once, 1);
        assert_eq!(judge(&[], 0, 0).not_once, 0);
    }
}
