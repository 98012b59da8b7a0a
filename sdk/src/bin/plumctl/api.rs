//! The one place plumctl talks to the cluster. Today it goes through `plum_sdk::Controllers`
//! (tries every replica in turn, skipping unreachable ones and `503 retryable` answers); moving
//! to another client means changing this file only. Everything comes back as raw JSON, so
//! `--json` can print exactly what the cluster answered.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::path::Path;
use std::time::Duration;

use plum_sdk::{ClientError, Controllers, Options, Request};
use serde::Serialize;
use serde_json::Value;

use crate::error::{CtlError, Result};

/// No attempt at a replica is given less than this.
const MIN_ATTEMPT: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn http(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        }
    }
}

/// A successful answer: its status, the `x-plum-index` header (watches) and the JSON body
/// (`null` when there was none).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub index: Option<u64>,
    pub body: Value,
}

pub struct Api {
    controllers: Controllers,
    /// How long one request may take in all, every replica and retry included.
    budget: Duration,
    replicas: u32,
}

impl Api {
    /// `urls`: every replica, `http(s)://host:port`. `budget`: how long a request may take in
    /// all. `token`: sent as `Authorization: Bearer` with every request. `ca_file`: the CA
    /// certificates (PEM) trusted for `https://` replicas; unusable, it is a usage error.
    pub fn new(urls: Vec<String>, budget: Duration, token: Option<String>, ca_file: Option<&Path>) -> Result<Api> {
        let replicas = urls.len().max(1) as u32;
        let mut options = Options { token, ..Options::default() };
        if let Some(ca) = ca_file {
            options = options.with_ca_file(ca).map_err(|e| match e {
                ClientError::Config(m) => CtlError::Usage(m),
                e => CtlError::Usage(e.to_string()),
            })?;
        }
        Ok(Api { controllers: Controllers::with_options(urls, options), budget, replicas })
    }

    pub fn timeout(&self) -> Duration {
        self.budget
    }

    /// One attempt's share of the budget: the client tries each replica (and may go round
    /// again) within about `replicas + 1` attempts.
    pub fn attempt(&self) -> Duration {
        (self.budget / (self.replicas + 1)).max(MIN_ATTEMPT)
    }

    pub async fn get(&self, path: &str) -> Result<Reply> {
        self.call(Method::Get, path, None::<&()>, self.attempt()).await
    }

    /// A request with a body (or none), within the budget.
    pub async fn send<B: Serialize>(&self, method: Method, path: &str, body: Option<&B>) -> Result<Reply> {
        self.call(method, path, body, self.attempt()).await
    }

    /// Any request, with its own timeout per attempt (long polls, membership changes). Every
    /// request is sent as safe to resend: plumctl's writes carry request ids or set absolute
    /// values.
    pub async fn call<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        attempt: Duration,
    ) -> Result<Reply> {
        let answer =
            self.controllers.call::<B, Value>(method.http(), path, body, attempt).await.map_err(CtlError::from)?;
        Ok(Reply { status: answer.status, index: answer.index, body: answer.body })
    }

    /// A write that must not be sent twice (creating a token: a second one would exist whose
    /// secret nobody saw): after an unknown outcome it ends in exit 6 instead of being resent.
    pub async fn send_once<B: Serialize>(&self, method: Method, path: &str, body: Option<&B>) -> Result<Reply> {
        let req = Request::write(method.http(), path, body, false)
            .map_err(CtlError::from)?
            .attempt_timeout(self.attempt())
            .deadline(self.budget);
        let answer = self.controllers.send::<Value>(req).await.map_err(CtlError::from)?;
        Ok(Reply { status: answer.status, index: answer.index, body: answer.body })
    }
}

/// Percent-encodes one path segment or query value: everything but RFC 3986's unreserved
/// characters (so `^1.2`, `a/b` or `a+b` arrive as typed).
pub fn encode(s: &str) -> String {
    const RESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    utf8_percent_encode(s, RESERVED).to_string()
}

/// `path?k=v&...` with the parameters that have a value, each encoded.
pub fn with_query(path: &str, params: &[(&str, Option<&str>)]) -> String {
    let query: Vec<String> =
        params.iter().filter_map(|(k, v)| v.map(|v| format!("{}={}", encode(k), encode(v)))).collect();
    if query.is_empty() { path.to_string() } else { format!("{path}?{}", query.join("&")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_arrive_as_typed() {
        assert_eq!(encode("^1.2"), "%5E1.2");
        assert_eq!(encode("a/b c+d"), "a%2Fb%20c%2Bd");
        assert_eq!(encode("web-1.x_y~"), "web-1.x_y~");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(
            with_query("/v1/discovery", &[("service", Some("web")), ("version", None), ("protocol", Some("http"))]),
            "/v1/discovery?service=web&protocol=http"
        );
        assert_eq!(with_query("/v1/nodes", &[("x", None)]), "/v1/nodes");
    }
}
