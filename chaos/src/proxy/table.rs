//! The named links of one proxy process: create, remove, change faults, list. The control API
//! and in-process tests both drive a [`Proxy`].
//!
//! Each link publishes its fault set on a `watch` channel; the pumps of its connections read it
//! per chunk and wake on every change.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ProxyError;
use super::faults::Faults;
use super::link::{Connections, Counters, LinkContext, accept_loop};

/// Longest link name: names go into URLs and log lines.
const MAX_NAME_LEN: usize = 64;

/// What creating a link takes (the body of `PUT /links/{name}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Where the proxy listens; port 0 picks a free one (shown in the answer).
    pub listen: SocketAddr,
    /// Where it forwards to.
    pub upstream: SocketAddr,
    /// Faults from the start; none if missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<Faults>,
}

/// A link as the control API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkInfo {
    pub name: String,
    /// The bound address (the real port when the spec asked for port 0).
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    pub faults: Faults,
    pub connections: Connections,
}

struct Link {
    listen: SocketAddr,
    upstream: SocketAddr,
    faults: watch::Sender<Arc<Faults>>,
    counters: Arc<Counters>,
    accept: JoinHandle<()>,
}

impl Link {
    fn info(&self, name: &str) -> LinkInfo {
        LinkInfo {
            name: name.to_string(),
            listen: self.listen,
            upstream: self.upstream,
            faults: Faults::clone(&self.faults.borrow()),
            connections: self.counters.snapshot(),
        }
    }
}

impl Drop for Link {
    /// Dropping a link (removed, or the whole proxy dropped) closes its listener and, through
    /// the accept task's `JoinSet`, every connection of the link.
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The links of one proxy process. Cheap to clone; clones share the links. Dropping the last
/// clone closes every link.
#[derive(Clone, Default)]
pub struct Proxy {
    /// A std mutex: held only to look up or swap map entries, never across an await.
    links: Arc<Mutex<BTreeMap<String, Link>>>,
}

impl Proxy {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Link>> {
        // A panic elsewhere while holding the lock leaves the map itself consistent: every
        // mutation is a single insert or remove.
        self.links.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Binds the listener and starts the link. Must run inside a tokio runtime.
    pub async fn add_link(&self, name: &str, spec: LinkSpec) -> Result<LinkInfo, ProxyError> {
        validate_name(name)?;
        let faults = spec.faults.unwrap_or_default();
        faults.validate()?;
        if self.lock().contains_key(name) {
            return Err(ProxyError::Exists(name.to_string()));
        }
        let listener =
            TcpListener::bind(spec.listen).await.map_err(|error| ProxyError::Bind { addr: spec.listen, error })?;
        let listen = listener.local_addr().map_err(|error| ProxyError::Bind { addr: spec.listen, error })?;
        let mut links = self.lock();
        // Checked again: another request may have taken the name while we were binding.
        if links.contains_key(name) {
            return Err(ProxyError::Exists(name.to_string()));
        }
        let (tx, rx) = watch::channel(Arc::new(faults));
        let counters = Arc::new(Counters::default());
        let ctx =
            LinkContext { name: Arc::from(name), upstream: spec.upstream, faults: rx, counters: counters.clone() };
        let accept = tokio::spawn(accept_loop(listener, ctx));
        let link = Link { listen, upstream: spec.upstream, faults: tx, counters, accept };
        let info = link.info(name);
        links.insert(name.to_string(), link);
        tracing::info!(link = name, %listen, upstream = %spec.upstream, faults = %info.faults, "link added");
        Ok(info)
    }

    /// Stops the link: its listener is closed when this returns, its connections right after.
    pub async fn remove_link(&self, name: &str) -> Result<(), ProxyError> {
        let mut link = self.lock().remove(name).ok_or_else(|| ProxyError::NotFound(name.to_string()))?;
        link.accept.abort();
        // Wait for the abort to land, so the port is free once the caller hears "removed".
        let _ = (&mut link.accept).await;
        tracing::info!(link = name, "link removed");
        Ok(())
    }

    /// Replaces the link's fault set; open connections pick it up at once.
    pub fn set_faults(&self, name: &str, faults: Faults) -> Result<LinkInfo, ProxyError> {
        faults.validate()?;
        let links = self.lock();
        let link = links.get(name).ok_or_else(|| ProxyError::NotFound(name.to_string()))?;
        if faults.is_none() {
            tracing::info!(link = name, "healed");
        } else {
            tracing::info!(link = name, %faults, "faults set");
        }
        link.faults.send_replace(Arc::new(faults));
        Ok(link.info(name))
    }

    /// Back to no fault.
    pub fn heal(&self, name: &str) -> Result<LinkInfo, ProxyError> {
        self.set_faults(name, Faults::none())
    }

    /// Every link back to no fault.
    pub fn heal_all(&self) -> Vec<LinkInfo> {
        let links = self.lock();
        links
            .iter()
            .map(|(name, link)| {
                link.faults.send_replace(Arc::new(Faults::none()));
                link.info(name)
            })
            .inspect(|info| tracing::info!(link = info.name, "healed"))
            .collect()
    }

    pub fn link(&self, name: &str) -> Result<LinkInfo, ProxyError> {
        self.lock().get(name).map(|link| link.info(name)).ok_or_else(|| ProxyError::NotFound(name.to_string()))
    }

    /// Every link, by name.
    pub fn links(&self) -> Vec<LinkInfo> {
        self.lock().iter().map(|(name, link)| link.info(name)).collect()
    }
}

/// Names are path segments and log fields: keep them to a plain alphabet.
fn validate_name(name: &str) -> Result<(), ProxyError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(plain) {
        return Err(ProxyError::BadName(name.to_string()));
    }
    Ok(())
}

/// Parses the `--link NAME=LISTEN,UPSTREAM` flag of `plum-faultproxy serve`.
pub fn parse_link_flag(flag: &str) -> Result<(String, LinkSpec), String> {
    let (name, addrs) = flag.split_once('=').ok_or_else(|| format!("{flag:?}: expected NAME=LISTEN,UPSTREAM"))?;
    let (listen, upstream) = addrs.split_once(',').ok_or_else(|| format!("{flag:?}: expected NAME=LISTEN,UPSTREAM"))?;
    let listen = listen.trim().parse().map_err(|e| format!("{flag:?}: listen address {listen:?}: {e}"))?;
    let upstream = upstream.trim().parse().map_err(|e| format!("{flag:?}: upstream address {upstream:?}: {e}"))?;
    validate_name(name).map_err(|e| e.to_string())?;
    Ok((name.to_string(), LinkSpec { listen, upstream, faults: None }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_flag_parses_and_rejects_malformed_input() {
        let (name, spec) = parse_link_flag("raft1=127.0.0.1:7001,127.0.0.1:8001").unwrap();
        assert_eq!(name, "raft1");
        assert_eq!(spec.listen, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(spec.upstream, "127.0.0.1:8001".parse().unwrap());
        for bad in [
            "raft1",
            "raft1=127.0.0.1:7001",
            "raft1=127.0.0.1,127.0.0.1:8001",
            "=127.0.0.1:7001,127.0.0.1:8001",
            "a/b=127.0.0.1:7001,127.0.0.1:8001",
        ] {
            assert!(parse_link_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_plain() {
        assert!(validate_name("node-1.raft_a").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
    }
}
