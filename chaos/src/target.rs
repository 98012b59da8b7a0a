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
    let urls = url_list(&list);
    if urls.is_empty() {
        bail!("empty controller list");
    }
    Ok(urls)
}

/// Comma-separated URLs, each trimmed and without a trailing `/`; empty items dropped.
pub fn url_list(list: &str) -> Vec<String> {
    list.split(',').map(|s| s.trim().trim_end_matches('/').to_string()).filter(|s| !s.is_empty()).collect()
}

/// How this process reaches the cluster: the token every request sends, and the CA file of a
/// cluster that speaks TLS (`use_access`).
#[derive(Debug, Default)]
pub struct Access {
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// Where `scripts/cluster.sh` keeps the replicas' PID files, when it runs this cluster.
    pub pid_dir: Option<PathBuf>,
    /// `.plum/cluster.env`, for other settings `scripts/cluster.sh up` records ([`setting`]).
    pub env_file: Option<PathBuf>,
}

static ACCESS: std::sync::OnceLock<Access> = std::sync::OnceLock::new();

/// The environment variable `name`, else the `name=` line of `.plum/cluster.env` (`scripts/cluster.sh
/// up` records the admin token's file, the CA's and the fault proxy's address there).
fn setting_in(name: &str, env_file: &Path) -> Option<String> {
    std::env::var(name).ok().or_else(|| {
        let text = std::fs::read_to_string(env_file).ok()?;
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix('=')).map(str::to_string)
    })
}

fn file_setting(name: &str, env_file: &Path) -> Option<PathBuf> {
    setting_in(name, env_file).map(PathBuf::from)
}

/// A setting of the cluster `use_access` was given (environment first, then its cluster.env).
pub fn setting(name: &str) -> Option<String> {
    match &access().env_file {
        Some(f) => setting_in(name, f),
        None => std::env::var(name).ok(),
    }
}

/// The token (`PLUM_TOKEN`, else the file `PLUM_TOKEN_FILE` names, read as the SDK reads it)
/// and CA file (`PLUM_CA_FILE`).
pub fn find_access(env_file: &Path) -> Result<Access> {
    use plum_sdk::config::{CA_FILE_ENV, TOKEN_FILE_ENV, read_token_file, token_from_env};
    let token = match token_from_env()? {
        Some(t) => Some(t),
        None => file_setting(TOKEN_FILE_ENV, env_file).map(|f| read_token_file(&f)).transpose()?,
    };
    let pid_dir = env_file.parent().map(|home| home.join("cluster/pids")).filter(|d| d.is_dir());
    Ok(Access { token, ca_file: file_setting(CA_FILE_ENV, env_file), pid_dir, env_file: Some(env_file.to_path_buf()) })
}

/// Sets what `http_client` and `sdk_options` use; the first call wins.
pub fn use_access(access: Access) {
    let _ = ACCESS.set(access);
}

fn access() -> &'static Access {
    ACCESS.get_or_init(Access::default)
}

/// The replicas' PID directory set by `use_access`, if any.
pub fn pid_dir() -> Option<&'static Path> {
    access().pid_dir.as_deref()
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

/// An SDK client of `urls` with the token and CA set by `use_access`.
pub fn sdk_client(urls: &[String], transport: plum_sdk::Options) -> Result<plum_sdk::Client> {
    let transport = sdk_options(transport)?;
    Ok(plum_sdk::Client::over(
        std::sync::Arc::new(plum_sdk::Controllers::with_options(urls.to_vec(), transport.clone())),
        plum_sdk::client::ClientOptions { transport, ..Default::default() },
    ))
}

/// The SDK's KV client of `urls`, with default transport options.
pub fn sdk_kv(urls: &[String]) -> Result<plum_sdk::kv::Kv> {
    Ok(sdk_client(urls, plum_sdk::Options::default())?.kv())
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

/// `GET /v1/cluster` of every replica that answers (within `http`'s timeout), each telling its
/// own view.
pub async fn cluster_statuses(http: &reqwest::Client, urls: &[String]) -> Vec<plum_types::ClusterStatus> {
    let mut out = Vec::new();
    for url in urls {
        if let Ok(resp) = http.get(format!("{url}/v1/cluster")).send().await
            && let Ok(status) = resp.json::<plum_types::ClusterStatus>().await
        {
            out.push(status);
        }
    }
    out
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
