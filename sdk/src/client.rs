//! The SDK's entry point: one [`Client`] per process, sharing one transport (connection pool,
//! leader knowledge, breakers, token) between KV, discovery, registration and tokens.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use plum_types::{ClusterStatus, Endpoint};

use crate::controllers::{Controllers, Options, Request, query};
use crate::discovery::{Discovered, Discovery, DiscoveryOptions, Query};
use crate::error::ClientError;
use crate::kv::Kv;
use crate::registration::Registrar;
use crate::tokens::Tokens;

#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub transport: Options,
    pub discovery: DiscoveryOptions,
}

impl ClientOptions {
    /// Sends `token` as `Authorization: Bearer` on every request.
    pub fn with_token(mut self, token: impl Into<String>) -> ClientOptions {
        self.transport.token = Some(token.into());
        self
    }

    /// Trusts the CA certificates in `path` (PEM) for `https://` controllers.
    pub fn with_ca_file(mut self, path: &std::path::Path) -> Result<ClientOptions, ClientError> {
        self.transport = self.transport.with_ca_file(path)?;
        Ok(self)
    }
}

pub struct Client {
    c: Arc<Controllers>,
    options: ClientOptions,
    discovery: OnceLock<Arc<Discovery>>,
}

impl Client {
    /// `urls`: every replica's address (`http://host:port`, `https://host:port` or `host:port`,
    /// which gets `https://` when `options` has TLS settings, else `http://`).
    pub fn new(urls: &[&str], options: ClientOptions) -> Result<Client, ClientError> {
        let urls = crate::config::parse_list_with_tls(&urls.join(","), options.transport.tls.is_some())?;
        Ok(Client::over(Arc::new(Controllers::with_options(urls, options.transport.clone())), options))
    }

    /// From `PLUM_CONTROLLERS` or the nearest `.plum/cluster.env`; the token, unless `options`
    /// has one, from `PLUM_TOKEN` or the file `PLUM_TOKEN_FILE` names; the CA, unless `options`
    /// has TLS settings, from the file `PLUM_CA_FILE` names (see [`Controllers::from_env`]).
    pub fn from_env(options: ClientOptions) -> Result<Client, ClientError> {
        Ok(Client::over(Arc::new(Controllers::from_env(None, options.transport.clone())?), options))
    }

    pub fn over(c: Arc<Controllers>, options: ClientOptions) -> Client {
        Client { c, options, discovery: OnceLock::new() }
    }

    pub fn controllers(&self) -> &Arc<Controllers> {
        &self.c
    }

    pub fn kv(&self) -> Kv {
        Kv::new(self.c.clone())
    }

    /// Token management (admin) and `whoami`.
    pub fn tokens(&self) -> Tokens {
        Tokens::new(self.c.clone())
    }

    /// The discovery cache (created on first use).
    pub fn discovery(&self) -> &Arc<Discovery> {
        self.discovery.get_or_init(|| Discovery::new(self.c.clone(), self.options.discovery.clone()))
    }

    /// Endpoints of `service` passing `query`, from the watched cache.
    pub async fn discover(&self, service: &str, query: &Query) -> Result<Discovered, ClientError> {
        self.discovery().find(service, query).await
    }

    /// Asks a replica directly, bypassing the cache (always fresh, costs a round trip).
    pub async fn discover_uncached(&self, service: &str) -> Result<Vec<Endpoint>, ClientError> {
        let path = format!("/v1/discovery?{}", query(&[("service", service)]));
        Ok(self.c.send(Request::get(path)).await?.body)
    }

    /// A registrar whose instances declare `ttl` and are heartbeated in the background.
    pub fn registrar(&self, ttl: Duration) -> Registrar {
        Registrar::new(self.c.clone(), ttl)
    }

    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        Ok(self.c.send(Request::get("/v1/cluster")).await?.body)
    }
}
