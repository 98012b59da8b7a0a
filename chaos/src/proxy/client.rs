//! The calls `plum-faultproxy list|add|remove|set|heal` make to a running proxy's control API;
//! usable from tests and scenarios too.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::faults::Faults;
use super::table::{LinkInfo, LinkSpec};

/// A control call that waits longer than this has failed: the API never blocks for long.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid control address {0:?}: expected HOST:PORT or http://HOST:PORT")]
    BadAddress(String),
    #[error("fault proxy at {url} did not answer")]
    Transport { url: String, source: reqwest::Error },
    /// The API answered with an error; `message` is its `error` field (or the raw body).
    #[error("fault proxy answered {status}: {message}")]
    Api { status: StatusCode, message: String },
    #[error("fault proxy at {url} answered something unreadable")]
    Decode { url: String, source: reqwest::Error },
}

/// A client of one proxy's control API.
#[derive(Clone, Debug)]
pub struct ControlClient {
    base: Url,
    http: reqwest::Client,
}

impl ControlClient {
    /// `control` is `HOST:PORT` (as given to `serve --control`) or an `http://` URL.
    pub fn new(control: &str) -> Result<Self, ClientError> {
        let with_scheme = if control.contains("://") { control.to_string() } else { format!("http://{control}") };
        let base = Url::parse(&with_scheme).map_err(|_| ClientError::BadAddress(control.to_string()))?;
        if base.scheme() != "http" || base.host().is_none() || base.cannot_be_a_base() {
            return Err(ClientError::BadAddress(control.to_string()));
        }
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|source| ClientError::Transport { url: base.to_string(), source })?;
        Ok(ControlClient { base, http })
    }

    pub async fn list(&self) -> Result<Vec<LinkInfo>, ClientError> {
        self.call(Method::GET, &["links"], None::<&()>).await
    }

    pub async fn get(&self, name: &str) -> Result<LinkInfo, ClientError> {
        self.call(Method::GET, &["links", name], None::<&()>).await
    }

    pub async fn add(&self, name: &str, spec: &LinkSpec) -> Result<LinkInfo, ClientError> {
        self.call(Method::PUT, &["links", name], Some(spec)).await
    }

    pub async fn remove(&self, name: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &["links", name], None::<&()>).await.map(drop)
    }

    /// Replaces the link's faults.
    pub async fn set_faults(&self, name: &str, faults: &Faults) -> Result<LinkInfo, ClientError> {
        self.call(Method::PUT, &["links", name, "faults"], Some(faults)).await
    }

    pub async fn heal(&self, name: &str) -> Result<LinkInfo, ClientError> {
        self.call(Method::DELETE, &["links", name, "faults"], None::<&()>).await
    }

    pub async fn heal_all(&self) -> Result<Vec<LinkInfo>, ClientError> {
        self.call(Method::POST, &["heal"], None::<&()>).await
    }

    /// The URL of `segments` under the base, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let url = self.url(segments);
        let answer = self.send(method, segments, body).await?;
        answer.json().await.map_err(|source| ClientError::Decode { url: url.to_string(), source })
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = self.url(segments);
        let mut request = self.http.request(method, url.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let answer = request.send().await.map_err(|source| ClientError::Transport { url: url.to_string(), source })?;
        let status = answer.status();
        if status.is_success() {
            return Ok(answer);
        }
        let text = answer.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(text);
        Err(ClientError::Api { status, message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_or_without_scheme() {
        let c = ControlClient::new("127.0.0.1:7474").unwrap();
        assert_eq!(c.url(&["links", "a"]).as_str(), "http://127.0.0.1:7474/links/a");
        let c = ControlClient::new("http://127.0.0.1:7474/").unwrap();
        assert_eq!(c.url(&["heal"]).as_str(), "http://127.0.0.1:7474/heal");
        // Segments are encoded, so a name cannot escape its path segment.
        assert_eq!(c.url(&["links", "a/b"]).as_str(), "http://127.0.0.1:7474/links/a%2Fb");
        assert!(ControlClient::new("https://127.0.0.1:7474").is_err());
        assert!(ControlClient::new("").is_err());
    }
}
