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

/// The token every request of this process sends (`use_token`).
static TOKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// The client token: `PLUM_TOKEN`, else the file `PLUM_TOKEN_FILE` names, else the file
/// `.plum/cluster.env` names (`scripts/cluster.sh up` records the admin token's file there).
pub fn find_token(env_file: &Path) -> Result<Option<String>> {
    if let Ok(t) = std::env::var("PLUM_TOKEN") {
        return Ok(Some(t.trim().to_string()));
    }
    let file = match std::env::var("PLUM_TOKEN_FILE") {
        Ok(f) => Some(PathBuf::from(f)),
        Err(_) => std::fs::read_to_string(env_file)
            .ok()
            .and_then(|text| text.lines().find_map(|l| l.strip_prefix("PLUM_TOKEN_FILE=")).map(PathBuf::from)),
    };
    let Some(file) = file else { return Ok(None) };
    let text = std::fs::read_to_string(&file).with_context(|| format!("token file {}", file.display()))?;
    Ok(text.lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_string))
}

/// Sets the token `http_client` clients send; the first call wins.
pub fn use_token(token: Option<String>) {
    let _ = TOKEN.set(token);
}

/// The token set by `use_token`, if any.
pub fn token() -> Option<&'static str> {
    TOKEN.get().and_then(|t| t.as_deref())
}

pub fn http_client(timeout: Duration) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(value) = token().and_then(|t| reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(128)
        .timeout(timeout)
        .build()
        .expect("HTTP client builds with static settings")
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
