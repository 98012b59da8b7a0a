//! Where the cluster is: API addresses and, for scenarios that kill replicas, their PIDs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Controller URLs from an explicit list, `PLUM_CONTROLLERS`, or `.plum/cluster.env`.
pub fn controllers(explicit: Option<&str>, env_file: &Path) -> Result<Vec<String>> {
    let list = match explicit {
        Some(l) => l.to_string(),
        None => match std::env::var("PLUM_CONTROLLERS") {
            Ok(l) => l,
            Err(_) => {
                let text = std::fs::read_to_string(env_file).with_context(|| {
                    format!("no PLUM_CONTROLLERS and cannot read {}; run scripts/cluster.sh up", env_file.display())
                })?;
                text.lines()
                    .find_map(|l| l.strip_prefix("PLUM_CONTROLLERS="))
                    .map(str::to_string)
                    .context("cluster.env has no PLUM_CONTROLLERS line")?
            }
        },
    };
    let urls: Vec<String> =
        list.split(',').map(|s| s.trim().trim_end_matches('/').to_string()).filter(|s| !s.is_empty()).collect();
    if urls.is_empty() {
        bail!("empty controller list");
    }
    Ok(urls)
}

/// How this process reaches the cluster: the token every request sends, and the CA file of a
/// cluster that speaks TLS (`use_access`).
#[derive(Debug, Default)]
pub struct Access {
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
}

static ACCESS: std::sync::OnceLock<Access> = std::sync::OnceLock::new();

/// A file setting: the environment variable `name`, else the `name=` line of `.plum/cluster.env`
/// (`scripts/cluster.sh up` records the admin token's file and the CA's there).
fn file_setting(name: &str, env_file: &Path) -> Option<PathBuf> {
    std::env::var_os(name).map(PathBuf::from).or_else(|| {
        let text = std::fs::read_to_string(env_file).ok()?;
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix('=')).map(PathBuf::from)
    })
}

/// The token (`PLUM_TOKEN`, else the file `PLUM_TOKEN_FILE` names, read as the SDK reads it)
/// and CA file (`PLUM_CA_FILE`).
pub fn find_access(env_file: &Path) -> Result<Access> {
    use plum_sdk::config::{CA_FILE_ENV, TOKEN_FILE_ENV, read_token_file, token_from_env};
    let token = match token_from_env()? {
        Some(t) => Some(t),
        None => file_setting(TOKEN_FILE_ENV, env_file).map(|f| read_token_file(&f)).transpose()?,
    };
    Ok(Access { token, ca_file: file_setting(CA_FILE_ENV, env_file) })
}

/// Sets what `http_client` and `sdk_options` use; the first call wins.
pub fn use_access(access: Access) {
    let _ = ACCESS.set(access);
}

fn access() -> &'static Access {
    ACCESS.get_or_init(Access::default)
}

/// The token set by `use_access`, if any.
pub fn token() -> Option<&'static str> {
    access().token.as_deref()
}

/// SDK transport options carrying the token and CA.
pub fn sdk_options(mut options: plum_sdk::Options) -> Result<plum_sdk::Options> {
    if let Some(t) = token() {
        options = options.with_token(t);
    }
    if let Some(ca) = &access().ca_file {
        options = options.with_ca_file(ca)?;
    }
    Ok(options)
}

/// Simulated hosts: a fleet is many machines, and a controller caps connections per client
/// address; host `i` sends from its own loopback address (127.1.x.y: all of 127/8 is local).
pub fn host_client(timeout: Duration, host: usize) -> reqwest::Client {
    let local = std::net::Ipv4Addr::new(127, 1, (host / 250) as u8, (host % 250 + 1) as u8);
    client_builder(timeout).local_address(std::net::IpAddr::V4(local)).build().expect("HTTP client builds")
}

pub fn http_client(timeout: Duration) -> reqwest::Client {
    client_builder(timeout).build().expect("HTTP client builds with static settings")
}

fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(value) = token().and_then(|t| reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = &access().ca_file {
        builder = plum_sdk::tls::with_ca(builder, ca).expect("the CA file given in PLUM_CA_FILE");
    }
    builder
        .default_headers(headers)
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(128)
        .timeout(timeout)
}

/// `GET path` decoded from the first replica that answers with that shape.
pub async fn get_first<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    urls: &[String],
    path: &str,
    timeout: Duration,
) -> Option<T> {
    for url in urls {
        if let Ok(resp) = http.get(format!("{url}{path}")).timeout(timeout).send().await
            && let Ok(v) = resp.json::<T>().await
        {
            return Some(v);
        }
    }
    None
}

/// `GET /v1/cluster` from the first replica that answers.
pub async fn cluster_status(http: &reqwest::Client, urls: &[String]) -> Option<Value> {
    get_first(http, urls, "/v1/cluster", Duration::from_millis(800)).await
}

/// The PID of a replica started by `scripts/cluster.sh`, checked to really be a controller.
pub fn replica_pid(pid_dir: &Path, id: u64) -> Result<i32> {
    let file: PathBuf = pid_dir.join(format!("{id}.pid"));
    let pid: i32 = std::fs::read_to_string(&file)
        .with_context(|| format!("read {}", file.display()))?
        .trim()
        .parse()
        .with_context(|| format!("bad pid in {}", file.display()))?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains("plum-controller") {
        bail!("pid {pid} from {} is not a running plum-controller", file.display());
    }
    Ok(pid)
}

/// The cluster's own marks before and after a load run: its term (a change means an election
/// happened) and each replica's count of expired nodes.
#[derive(Debug, Default, Clone)]
pub struct Marks {
    pub term: u64,
    pub nodes_expired: std::collections::BTreeMap<u64, u64>,
}

pub async fn marks(urls: &[String]) -> Marks {
    let http = http_client(Duration::from_secs(2));
    let mut m = Marks::default();
    for url in urls {
        if let Ok(resp) = http.get(format!("{url}/v1/cluster")).send().await
            && let Ok(status) = resp.json::<plum_types::ClusterStatus>().await
        {
            m.term = m.term.max(status.term);
            m.nodes_expired.insert(status.replica_id, status.nodes_expired);
        }
    }
    m
}

impl Marks {
    /// `term_start=.. term_end=.. nodes_expired=..`: expiries counted on a replica that answered
    /// both times (every replica applies every expiry).
    pub fn line(&self, after: &Marks) -> String {
        let expired = self
            .nodes_expired
            .iter()
            .filter_map(|(id, before)| after.nodes_expired.get(id).and_then(|a| a.checked_sub(*before)))
            .max();
        let expired = expired.map(|e| e.to_string()).unwrap_or_else(|| "unknown".into());
        format!("term_start={} term_end={} nodes_expired={expired}", self.term, after.term)
    }
}
