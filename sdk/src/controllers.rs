//! A client for the controller cluster: every replica's address, the one that answered last
//! first, the next one on a connect error, a timeout or a "retryable" 503. The seed of the SDK
//! (leader redirect, caches, watches and the rest arrive with the SDK issue); the agent uses it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no controller replica answered: {0}")]
    Unreachable(String),
    /// A replica answered with an error status (4xx, or a 5xx that is not retryable).
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("bad answer: {0}")]
    Decode(String),
}

/// An answer: status, the `x-plum-index` header when present, and the JSON body.
#[derive(Debug)]
pub struct Answer<T> {
    pub status: u16,
    pub index: Option<u64>,
    pub body: T,
}

pub struct Controllers {
    urls: Vec<String>,
    http: reqwest::Client,
    /// The replica that answered last.
    current: AtomicUsize,
}

impl Controllers {
    /// `urls`: every replica (`http://host:port`), at least one.
    pub fn new(urls: Vec<String>) -> Controllers {
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client builds with static settings");
        let urls = urls.into_iter().map(|u| u.trim_end_matches('/').to_string()).collect();
        Controllers { urls, http, current: AtomicUsize::new(0) }
    }

    /// Sends a request to the replicas in turn, starting with the one that answered last,
    /// until one answers with something other than "unreachable" or "retryable". Only for
    /// idempotent requests: a timed-out request is sent again to the next replica.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<Answer<T>, ClientError> {
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::from("no replicas configured");
        for step in 0..self.urls.len() {
            let at = (start + step) % self.urls.len();
            let mut req = self.http.request(method.clone(), format!("{}{path}", self.urls[at])).timeout(timeout);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{}: {e}", self.urls[at]);
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let index = resp.headers().get("x-plum-index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
            let text = match resp.text().await {
                Ok(t) => t,
                Err(e) => {
                    last = format!("{}: {e}", self.urls[at]);
                    continue;
                }
            };
            if status == 503 && text.contains("\"retryable\":true") {
                last = format!("{}: {text}", self.urls[at]);
                continue;
            }
            self.current.store(at, Ordering::Relaxed);
            if !(200..300).contains(&status) {
                return Err(ClientError::Status { status, body: text });
            }
            let text = if text.is_empty() { "null".to_string() } else { text };
            let body = serde_json::from_str(&text).map_err(|e| ClientError::Decode(format!("{e}: {text}")))?;
            return Ok(Answer { status, index, body });
        }
        Err(ClientError::Unreachable(last))
    }
}
