//! Controller configuration: command-line flags, each with an environment variable, over an
//! optional TOML file, over defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::ClientAuthConfig;
use crate::cluster::peer_auth::PeerAuth;
use crate::serve::ServeLimits;
use plum_types::Role;
use std::time::Duration;

use clap::Parser;

use crate::state::limits::MAX_TTL_MS;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required setting `{0}` (flag, environment variable or config file)")]
    Missing(&'static str),
    #[error("bad peer list entry `{0}`: expected ID=HOST:PORT")]
    BadPeer(String),
    #[error("this replica's id {0} is not in the peer list")]
    SelfNotInPeers(u64),
    #[error("cannot read config file {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("bad config file {path}: {source}")]
    Toml { path: PathBuf, source: toml::de::Error },
    #[error("invalid setting: {0}")]
    Invalid(String),
    #[error(
        "replicas authenticate each other with a cluster secret: pass --cluster-secret-file (scripts/cluster.sh \
         generates one), or --insecure-no-peer-auth to run without (anyone who reaches the port can then \
         act as a replica)"
    )]
    NoPeerAuth,
    #[error(transparent)]
    Secret(#[from] crate::cluster::peer_auth::SecretError),
    #[error(
        "--otlp-endpoint (PLUM_OTLP_ENDPOINT) needs a plum-controller built with span export: \
         cargo build -p plum-registry --features otlp"
    )]
    OtlpNotBuilt,
}

/// Flags. Every one is optional here so that the config file can fill what flags leave out.
#[derive(Debug, Parser, Default)]
#[command(name = "plum-controller", about = "Plum controller replica", version)]
pub struct Args {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "PLUM_CONFIG")]
    pub config: Option<PathBuf>,
    /// This replica's Raft id (a positive integer, unique in the cluster).
    #[arg(long, env = "PLUM_ID")]
    pub id: Option<u64>,
    /// Address to listen on for the API and Raft, e.g. 127.0.0.1:7001.
    #[arg(long, env = "PLUM_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address other replicas and clients use to reach this one (defaults to --listen).
    #[arg(long, env = "PLUM_ADVERTISE")]
    pub advertise: Option<String>,
    /// Directory for the RocksDB store.
    #[arg(long, env = "PLUM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Initial replicas, ID=HOST:PORT separated by commas (used to form a fresh cluster).
    #[arg(long, env = "PLUM_PEERS")]
    pub peers: Option<String>,
    /// Reach some peers through another address, ID=HOST:PORT separated by commas: a proxy, a
    /// tunnel, the lab's fault proxy (`scripts/cluster.sh up --proxied`). Raft, forwarded and
    /// internal requests take it; the cluster still knows the peer by its own address.
    #[arg(long, env = "PLUM_PEER_VIA")]
    pub peer_via: Option<String>,
    /// Node heartbeat TTL for nodes whose heartbeats declare none (Plum's original clients
    /// heartbeat every 1-5 s): a node not heard from for this long is declared dead.
    #[arg(long, env = "PLUM_NODE_TTL_MS")]
    pub node_ttl_ms: Option<u64>,
    /// Service-instance heartbeat TTL for instances that declare none.
    #[arg(long, env = "PLUM_INSTANCE_TTL_MS")]
    pub instance_ttl_ms: Option<u64>,
    /// Lower bound of a TTL a heartbeat declares (`ttlMs`); shorter ones are raised to it.
    #[arg(long, env = "PLUM_MIN_TTL_MS")]
    pub min_ttl_ms: Option<u64>,
    /// Upper bound of a TTL a heartbeat declares; longer ones are lowered to it.
    #[arg(long, env = "PLUM_MAX_TTL_MS")]
    pub max_ttl_ms: Option<u64>,
    /// How long dead instance records are kept before they are forgotten.
    #[arg(long, env = "PLUM_DEAD_RETENTION_MS")]
    pub dead_retention_ms: Option<u64>,
    /// Rescheduling pauses when more than this share of the nodes that run work expire within
    /// one TTL (1 or more: never).
    #[arg(long, env = "PLUM_MASS_LOSS_SHARE")]
    pub mass_loss_share: Option<f64>,
    /// How often the leader replicates coalesced heartbeats (one Raft entry each time).
    #[arg(long, env = "PLUM_RENEW_FLUSH_MS")]
    pub renew_flush_ms: Option<u64>,
    /// How often the leader checks for expired nodes and instances.
    #[arg(long, env = "PLUM_SWEEP_MS")]
    pub sweep_ms: Option<u64>,
    /// How long a replica collects heartbeats before sending them to the leader as one batch.
    #[arg(long, env = "PLUM_HEARTBEAT_BATCH_MS")]
    pub heartbeat_batch_ms: Option<u64>,
    /// Raft leader heartbeat interval.
    #[arg(long, env = "PLUM_RAFT_HEARTBEAT_MS")]
    pub raft_heartbeat_ms: Option<u64>,
    /// Raft election timeout, lower bound.
    #[arg(long, env = "PLUM_ELECTION_MIN_MS")]
    pub election_min_ms: Option<u64>,
    /// Raft election timeout, upper bound.
    #[arg(long, env = "PLUM_ELECTION_MAX_MS")]
    pub election_max_ms: Option<u64>,
    /// How long a write waits for a leader to appear before failing with a retryable 503.
    #[arg(long, env = "PLUM_NO_LEADER_WAIT_MS")]
    pub no_leader_wait_ms: Option<u64>,
    /// Take a snapshot (and purge the log) after this many new entries (default 100,000: a
    /// snapshot serializes the whole registry, so taking one every few seconds under load costs
    /// more than replaying a longer log at start; docs/BENCHMARKS.md).
    #[arg(long, env = "PLUM_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// File with the cluster secret(s) replicas authenticate each other with (one per line; the
    /// first signs, all verify; re-read when it changes).
    #[arg(long, env = "PLUM_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Run without peer authentication: anyone who reaches the port can act as a replica.
    #[arg(long, env = "PLUM_INSECURE_NO_PEER_AUTH")]
    pub insecure_no_peer_auth: bool,
    /// Run without client authentication: every client may do everything (local development
    /// only).
    #[arg(long, env = "PLUM_INSECURE_NO_CLIENT_AUTH")]
    pub insecure_no_client_auth: bool,
    /// What a request without a token may do (Plum's Go clients send none): none, read,
    /// write or admin. Default: none.
    #[arg(long, env = "PLUM_ANONYMOUS_ROLE")]
    pub anonymous_role: Option<String>,
    /// The bootstrap admin token (written on first start when absent). Default: `admin.token`
    /// next to the cluster secret file, else in the data directory.
    #[arg(long, env = "PLUM_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Open connections one client address may have at once; more get a 429 (default 1024).
    #[arg(long, env = "PLUM_MAX_CONNECTIONS_PER_CLIENT")]
    pub max_connections_per_client: Option<usize>,
    /// A request's headers must arrive within this (slow clients are cut off; idle connections
    /// are closed after it too; default 30000).
    #[arg(long, env = "PLUM_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// A request's body must arrive within this after its headers (default 30000; Raft
    /// snapshots get ten times as long).
    #[arg(long, env = "PLUM_BODY_TIMEOUT_MS")]
    pub body_timeout_ms: Option<u64>,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key and --tls-ca. Every replica
    /// of a cluster serves TLS or none does.
    #[arg(long, env = "PLUM_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "PLUM_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) other replicas' certificates are checked against.
    #[arg(long, env = "PLUM_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Wait out the leader lease even when the leader's port refuses connections (no fast
    /// failover; see ARCHITECTURE.md).
    #[arg(long, env = "PLUM_NO_FAST_FAILOVER")]
    pub no_fast_failover: bool,
    /// Run Raft on the API's runtime instead of a thread of its own (cluster/raft_thread.rs):
    /// under a saturated API, appends and heartbeats then queue behind client requests.
    #[arg(long, env = "PLUM_NO_RAFT_THREAD")]
    pub no_raft_thread: bool,
    /// Serve peers' Raft connections on the API's runtime rather than moving them to Raft's
    /// thread (serve/priority.rs).
    #[arg(long, env = "PLUM_NO_RAFT_CONNECTION_PRIORITY")]
    pub no_raft_connection_priority: bool,
    /// Client requests at work at once, at most (watches and streams not counted); more are
    /// answered 429 with Retry-After (default 2048).
    #[arg(long, env = "PLUM_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Log lines as `text` or `json` (one object per line, with the fields of the spans a line
    /// is in, e.g. a request's `trace_id`). Flag or environment only: logging starts before
    /// the config file is read. The filter comes from `PLUM_LOG`.
    #[arg(long, env = "PLUM_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: plum_sdk::logging::LogFormat,
    /// Export request spans over OTLP/HTTP (protobuf) to this collector, e.g.
    /// http://127.0.0.1:4318 (spans are POSTed to its /v1/traces). Off when absent. Needs a
    /// binary built with `--features otlp`. Flag or environment only, like --log-format.
    #[arg(long, env = "PLUM_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// The same settings from a TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub id: Option<u64>,
    pub listen: Option<SocketAddr>,
    pub advertise: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub peers: Option<String>,
    pub peer_via: Option<String>,
    pub node_ttl_ms: Option<u64>,
    pub instance_ttl_ms: Option<u64>,
    pub min_ttl_ms: Option<u64>,
    pub max_ttl_ms: Option<u64>,
    pub dead_retention_ms: Option<u64>,
    pub mass_loss_share: Option<f64>,
    pub renew_flush_ms: Option<u64>,
    pub sweep_ms: Option<u64>,
    pub heartbeat_batch_ms: Option<u64>,
    pub raft_heartbeat_ms: Option<u64>,
    pub election_min_ms: Option<u64>,
    pub election_max_ms: Option<u64>,
    pub no_leader_wait_ms: Option<u64>,
    pub snapshot_every: Option<u64>,
    pub cluster_secret_file: Option<PathBuf>,
    pub insecure_no_peer_auth: Option<bool>,
    pub insecure_no_client_auth: Option<bool>,
    pub anonymous_role: Option<String>,
    pub admin_token_file: Option<PathBuf>,
    pub max_connections_per_client: Option<usize>,
    pub header_timeout_ms: Option<u64>,
    pub body_timeout_ms: Option<u64>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub no_fast_failover: Option<bool>,
    pub raft_thread: Option<bool>,
    pub raft_connection_priority: Option<bool>,
    pub max_in_flight: Option<usize>,
}

/// TLS files of a replica that serves TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

#[derive(Debug, Clone)]
pub struct LivenessConfig {
    /// TTL of nodes that declare none.
    pub node_ttl: Duration,
    /// TTL of instances that declare none.
    pub instance_ttl: Duration,
    /// Bounds of a declared TTL.
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    pub dead_retention: Duration,
    pub mass_loss_share: f64,
    pub renew_flush: Duration,
    pub sweep: Duration,
    pub heartbeat_batch: Duration,
}

impl LivenessConfig {
    /// The heartbeat interval the cluster advises for a TTL: four beats per TTL, so three may
    /// be lost before the record expires.
    pub fn advised_interval_ms(ttl_ms: u64) -> u64 {
        (ttl_ms / 4).max(50)
    }

    /// The TTL to store for a heartbeat that declared `declared`: bounded, or 0 (the default
    /// for its kind) when it declared none.
    pub fn bounded_ttl_ms(&self, declared: Option<u64>) -> u64 {
        declared.map_or(0, |ms| ms.clamp(self.min_ttl.as_millis() as u64, self.max_ttl.as_millis() as u64))
    }

    pub fn default_ttls(&self) -> crate::liveness::DefaultTtls {
        crate::liveness::DefaultTtls { node: self.node_ttl, instance: self.instance_ttl }
    }
}

#[derive(Debug, Clone)]
pub struct RaftTiming {
    /// Followers probe a silent leader's port and elect at once when it refuses connections.
    pub fast_failover: bool,
    /// Raft runs on a thread of its own.
    pub own_thread: bool,
    /// Peers' Raft connections are served on Raft's own thread.
    pub connection_priority: bool,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    pub snapshot_every: u64,
}

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub id: u64,
    pub listen: SocketAddr,
    pub advertise: String,
    pub data_dir: PathBuf,
    pub peers: BTreeMap<u64, String>,
    /// A peer's own address → the address to dial it at (`--peer-via`).
    pub peer_via: BTreeMap<String, String>,
    pub liveness: LivenessConfig,
    pub raft: RaftTiming,
    pub no_leader_wait: Duration,
    /// Signs this replica's requests to its peers and checks theirs.
    pub peer_auth: Arc<PeerAuth>,
    pub client_auth: ClientAuthConfig,
    pub serve: ServeLimits,
    /// Serve (and reach other replicas over) TLS.
    pub tls: Option<TlsFiles>,
    /// Where to POST spans (OTLP/HTTP, the collector's `/v1/traces`), from `--otlp-endpoint`;
    /// `None`: no export. Only ever `Some` in a binary built with the feature `otlp`.
    pub otlp_traces_url: Option<String>,
}

impl ControllerConfig {
    /// `https` when the cluster speaks TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The URL of a replica's API address (`host:port`).
    pub fn url_of(&self, addr: &str) -> String {
        format!("{}://{addr}", self.scheme())
    }

    /// Where to connect to reach the peer whose own address is `addr` (`--peer-via`).
    pub fn dial<'a>(&'a self, addr: &'a str) -> &'a str {
        self.peer_via.get(addr).map_or(addr, String::as_str)
    }
}

/// `--anonymous-role`: `none` or a role that needs no node.
fn anonymous_role(raw: Option<&str>) -> Result<Option<Role>, ConfigError> {
    match raw.map(str::trim) {
        None | Some("none") => Ok(None),
        Some(s) => match s.parse::<Role>() {
            Ok(Role::Agent) => Err(ConfigError::Invalid(
                "anonymous role `agent`: an agent acts for one node, which a request without a token cannot name"
                    .into(),
            )),
            Ok(role) => Ok(Some(role)),
            Err(e) => Err(ConfigError::Invalid(format!("anonymous role: {e}, or none"))),
        },
    }
}

/// The OTLP/HTTP path of spans, appended to `--otlp-endpoint` unless it ends with it already.
pub const OTLP_TRACES_PATH: &str = "/v1/traces";

/// `--otlp-endpoint` → the URL spans are POSTed to: an `http` or `https` URL with a host and no
/// query; `/v1/traces` is appended unless the path already ends with it.
pub fn otlp_traces_url(endpoint: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| ConfigError::Invalid(format!("--otlp-endpoint `{endpoint}`: {why}"));
    let url = reqwest::Url::parse(endpoint.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("expected http://HOST:PORT or https://HOST:PORT"));
    }
    if url.host_str().is_none_or(str::is_empty) || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("expected http://HOST:PORT, with an optional path and no query"));
    }
    let mut url = url.to_string();
    if !url.trim_end_matches('/').ends_with(OTLP_TRACES_PATH) {
        url = format!("{}{OTLP_TRACES_PATH}", url.trim_end_matches('/'));
    }
    Ok(url)
}

pub fn parse_peers(s: &str) -> Result<BTreeMap<u64, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('=').ok_or_else(|| ConfigError::BadPeer(part.to_string()))?;
        let id: u64 = id.trim().parse().map_err(|_| ConfigError::BadPeer(part.to_string()))?;
        let addr = addr.trim();
        if id == 0 || addr.is_empty() || !addr.contains(':') {
            return Err(ConfigError::BadPeer(part.to_string()));
        }
        peers.insert(id, addr.to_string());
    }
    Ok(peers)
}

impl ControllerConfig {
    pub fn from_args(args: Args) -> Result<ControllerConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::File { path: path.clone(), source })?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|source| ConfigError::Toml { path: path.clone(), source })?
            }
            None => FileConfig::default(),
        };
        let id = args.id.or(file.id).ok_or(ConfigError::Missing("id"))?;
        let listen = args.listen.or(file.listen).ok_or(ConfigError::Missing("listen"))?;
        let advertise = args.advertise.or(file.advertise).unwrap_or_else(|| listen.to_string());
        let data_dir = args.data_dir.or(file.data_dir).ok_or(ConfigError::Missing("data_dir"))?;
        let peers = match args.peers.or(file.peers) {
            Some(p) => parse_peers(&p)?,
            None => BTreeMap::from([(id, advertise.clone())]),
        };
        if !peers.contains_key(&id) {
            return Err(ConfigError::SelfNotInPeers(id));
        }
        let peer_via = match args.peer_via.or(file.peer_via) {
            Some(v) => parse_peers(&v)?
                .into_iter()
                .map(|(peer, via)| {
                    let own = peers.get(&peer).ok_or_else(|| {
                        ConfigError::Invalid(format!("--peer-via names replica {peer}, which --peers does not list"))
                    })?;
                    Ok((own.clone(), via))
                })
                .collect::<Result<_, ConfigError>>()?,
            None => BTreeMap::new(),
        };
        let ms = Duration::from_millis;
        let liveness = LivenessConfig {
            node_ttl: ms(args.node_ttl_ms.or(file.node_ttl_ms).unwrap_or(15_000)),
            instance_ttl: ms(args.instance_ttl_ms.or(file.instance_ttl_ms).unwrap_or(15_000)),
            min_ttl: ms(args.min_ttl_ms.or(file.min_ttl_ms).unwrap_or(500)),
            max_ttl: ms(args.max_ttl_ms.or(file.max_ttl_ms).unwrap_or(3_600_000)),
            dead_retention: ms(args.dead_retention_ms.or(file.dead_retention_ms).unwrap_or(3_600_000)),
            mass_loss_share: args.mass_loss_share.or(file.mass_loss_share).unwrap_or(0.5),
            renew_flush: ms(args.renew_flush_ms.or(file.renew_flush_ms).unwrap_or(100)),
            sweep: ms(args.sweep_ms.or(file.sweep_ms).unwrap_or(50)),
            heartbeat_batch: ms(args.heartbeat_batch_ms.or(file.heartbeat_batch_ms).unwrap_or(5)),
        };
        let raft = RaftTiming {
            fast_failover: !(args.no_fast_failover || file.no_fast_failover.unwrap_or(false)),
            own_thread: !args.no_raft_thread && file.raft_thread.unwrap_or(true),
            connection_priority: !args.no_raft_connection_priority && file.raft_connection_priority.unwrap_or(true),
            heartbeat_ms: args.raft_heartbeat_ms.or(file.raft_heartbeat_ms).unwrap_or(50),
            election_min_ms: args.election_min_ms.or(file.election_min_ms).unwrap_or(150),
            election_max_ms: args.election_max_ms.or(file.election_max_ms).unwrap_or(300),
            snapshot_every: args.snapshot_every.or(file.snapshot_every).unwrap_or(100_000),
        };
        if raft.election_min_ms <= raft.heartbeat_ms || raft.election_max_ms <= raft.election_min_ms {
            return Err(ConfigError::Invalid(format!(
                "need raft heartbeat < election min < election max, got {} / {} / {}",
                raft.heartbeat_ms, raft.election_min_ms, raft.election_max_ms
            )));
        }
        if liveness.node_ttl <= liveness.renew_flush
            || liveness.instance_ttl <= liveness.renew_flush
            || liveness.min_ttl <= liveness.renew_flush
        {
            return Err(ConfigError::Invalid("TTLs must be longer than the renewal flush interval".into()));
        }
        if liveness.mass_loss_share.is_nan() || liveness.mass_loss_share <= 0.0 {
            return Err(ConfigError::Invalid("mass-loss share must be above 0".into()));
        }
        if liveness.min_ttl > liveness.max_ttl || liveness.max_ttl.as_millis() as u64 > MAX_TTL_MS {
            return Err(ConfigError::Invalid(format!("need min TTL <= max TTL <= {MAX_TTL_MS} ms")));
        }
        let no_leader_wait = ms(args.no_leader_wait_ms.or(file.no_leader_wait_ms).unwrap_or(3000));
        let insecure = args.insecure_no_peer_auth || file.insecure_no_peer_auth.unwrap_or(false);
        let secret_file = args.cluster_secret_file.or(file.cluster_secret_file);
        let peer_auth = match (&secret_file, insecure) {
            (Some(path), _) => PeerAuth::from_file(path)?,
            (None, true) => PeerAuth::disabled(),
            (None, false) => return Err(ConfigError::NoPeerAuth),
        };
        let peer_auth = Arc::new(peer_auth);
        let client_auth = if args.insecure_no_client_auth || file.insecure_no_client_auth.unwrap_or(false) {
            ClientAuthConfig::disabled()
        } else {
            let next_to_secret = secret_file.as_ref().and_then(|s| s.parent()).map(|dir| dir.join("admin.token"));
            let admin_token_file = args
                .admin_token_file
                .or(file.admin_token_file)
                .or(next_to_secret)
                .unwrap_or_else(|| data_dir.join("admin.token"));
            ClientAuthConfig {
                enabled: true,
                anonymous: anonymous_role(args.anonymous_role.or(file.anonymous_role).as_deref())?,
                admin_token_file: Some(admin_token_file),
            }
        };
        let tls = match (args.tls_cert.or(file.tls_cert), args.tls_key.or(file.tls_key), args.tls_ca.or(file.tls_ca)) {
            (None, None, None) => None,
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles { cert, key, ca }),
            _ => return Err(ConfigError::Invalid("TLS needs all three of --tls-cert, --tls-key and --tls-ca".into())),
        };
        let defaults = ServeLimits::default();
        let serve = ServeLimits {
            max_connections_per_client: args
                .max_connections_per_client
                .or(file.max_connections_per_client)
                .unwrap_or(defaults.max_connections_per_client),
            header_timeout: args
                .header_timeout_ms
                .or(file.header_timeout_ms)
                .map(ms)
                .unwrap_or(defaults.header_timeout),
            body_timeout: args.body_timeout_ms.or(file.body_timeout_ms).map(ms).unwrap_or(defaults.body_timeout),
            max_in_flight: args.max_in_flight.or(file.max_in_flight).unwrap_or(defaults.max_in_flight),
            ..defaults
        };
        if serve.max_connections_per_client == 0
            || serve.header_timeout.is_zero()
            || serve.body_timeout.is_zero()
            || serve.max_in_flight == 0
        {
            return Err(ConfigError::Invalid(
                "connections per client, requests in flight and the header and body timeouts must be above 0".into(),
            ));
        }
        let otlp_traces_url = match args.otlp_endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
            None => None,
            Some(_) if !cfg!(feature = "otlp") => return Err(ConfigError::OtlpNotBuilt),
            Some(endpoint) => Some(otlp_traces_url(endpoint)?),
        };
        Ok(ControllerConfig {
            id,
            listen,
            advertise,
            data_dir,
            peers,
            peer_via,
            liveness,
            raft,
            no_leader_wait,
            peer_auth,
            client_auth,
            serve,
            tls,
            otlp_traces_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_format_is_text_by_default_and_a_bad_one_is_a_clap_error() {
        let parse = |extra: &[&str]| Args::try_parse_from(["plum-controller"].iter().chain(extra));
        assert_eq!(parse(&[]).unwrap().log_format, plum_sdk::logging::LogFormat::Text);
        assert_eq!(parse(&["--log-format", "json"]).unwrap().log_format, plum_sdk::logging::LogFormat::Json);
        let err = parse(&["--log-format", "xml"]).err().unwrap();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
        assert!(err.to_string().contains("[possible values: text, json]"), "{err}");
    }

    #[test]
    fn peers_parse_and_reject_garbage() {
        let p = parse_peers("1=127.0.0.1:7001, 2=127.0.0.1:7002,3=h:1").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[&2], "127.0.0.1:7002");
        assert!(parse_peers("x=1:2").is_err());
        assert!(parse_peers("1").is_err());
        assert!(parse_peers("0=a:1").is_err());
        assert!(parse_peers("1=nohost").is_err());
    }

    #[test]
    fn flags_win_over_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "id = 2\nlisten = \"127.0.0.1:9002\"\ndata_dir = \"/tmp/x\"\nnode_ttl_ms = 2500\npeers = \"2=127.0.0.1:9002\"\ninsecure_no_peer_auth = true\n").unwrap();
        let args = Args { config: Some(path), node_ttl_ms: Some(700), ..Args::default() };
        let cfg = ControllerConfig::from_args(args).unwrap();
        assert_eq!(cfg.id, 2);
        assert_eq!(cfg.liveness.node_ttl, Duration::from_millis(700));
        assert_eq!(cfg.liveness.instance_ttl, Duration::from_millis(15_000));
        assert_eq!(cfg.advertise, "127.0.0.1:9002");
    }

    #[test]
    fn peers_are_dialled_through_their_via_address_and_others_directly() {
        let args = |via: &str| Args {
            id: Some(1),
            listen: Some("127.0.0.1:9001".parse().unwrap()),
            data_dir: Some("/tmp/x".into()),
            peers: Some("1=127.0.0.1:9001,2=127.0.0.1:9002,3=127.0.0.1:9003".into()),
            peer_via: Some(via.into()),
            insecure_no_peer_auth: true,
            ..Args::default()
        };
        let cfg = ControllerConfig::from_args(args("2=127.0.0.1:7212")).unwrap();
        assert_eq!(cfg.dial("127.0.0.1:9002"), "127.0.0.1:7212");
        assert_eq!(cfg.dial("127.0.0.1:9003"), "127.0.0.1:9003");
        assert!(matches!(ControllerConfig::from_args(args("4=127.0.0.1:7214")), Err(ConfigError::Invalid(_))));
        assert!(matches!(ControllerConfig::from_args(args("2=nohost")), Err(ConfigError::BadPeer(_))));
    }

    #[test]
    fn unknown_file_keys_and_missing_id_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "idd = 2\n").unwrap();
        assert!(matches!(
            ControllerConfig::from_args(Args { config: Some(path), ..Args::default() }),
            Err(ConfigError::Toml { .. })
        ));
        assert!(matches!(ControllerConfig::from_args(Args::default()), Err(ConfigError::Missing("id"))));
    }

    #[test]
    fn client_authentication_is_on_unless_switched_off_and_the_anonymous_role_is_explicit() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "0123456789abcdef0123\n").unwrap();
        let base = || Args {
            id: Some(1),
            listen: Some("127.0.0.1:9001".parse().unwrap()),
            data_dir: Some(dir.path().join("data")),
            cluster_secret_file: Some(secret.clone()),
            ..Args::default()
        };
        let on = ControllerConfig::from_args(base()).unwrap().client_auth;
        assert!(on.enabled);
        assert_eq!(on.anonymous, None, "default: a request without a token may do nothing");
        assert_eq!(on.admin_token_file, Some(dir.path().join("admin.token")), "next to the secret");
        let off = ControllerConfig::from_args(Args { insecure_no_client_auth: true, ..base() }).unwrap();
        assert!(!off.client_auth.enabled);
        let role = |r: &str| ControllerConfig::from_args(Args { anonymous_role: Some(r.into()), ..base() });
        assert_eq!(role("write").unwrap().client_auth.anonymous, Some(Role::Write));
        assert_eq!(role("none").unwrap().client_auth.anonymous, None);
        assert!(matches!(role("agent"), Err(ConfigError::Invalid(_))));
        assert!(matches!(role("root"), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn peer_authentication_is_never_off_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let base = || Args {
            id: Some(1),
            listen: Some("127.0.0.1:9001".parse().unwrap()),
            data_dir: Some(dir.path().to_path_buf()),
            ..Args::default()
        };
        assert!(matches!(ControllerConfig::from_args(base()), Err(ConfigError::NoPeerAuth)));
        let off = ControllerConfig::from_args(Args { insecure_no_peer_auth: true, ..base() }).unwrap();
        assert!(!off.peer_auth.enabled());
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "0123456789abcdef0123\n").unwrap();
        let on = ControllerConfig::from_args(Args { cluster_secret_file: Some(secret), ..base() }).unwrap();
        assert!(on.peer_auth.enabled());
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let empty = Args { cluster_secret_file: Some(dir.path().join("empty")), ..base() };
        assert!(matches!(ControllerConfig::from_args(empty), Err(ConfigError::Secret(_))));
    }

    #[test]
    fn the_otlp_endpoint_gets_the_traces_path_and_bad_ones_are_refused() {
        let url = |e: &str| otlp_traces_url(e).map_err(|e| e.to_string());
        assert_eq!(url("http://127.0.0.1:4318").unwrap(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(url("http://127.0.0.1:4318/").unwrap(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(url("http://collector:4318/v1/traces").unwrap(), "http://collector:4318/v1/traces");
        assert_eq!(url("https://c.example/otlp/").unwrap(), "https://c.example/otlp/v1/traces");
        for bad in ["127.0.0.1:4318", "grpc://h:4317", "http://h:1/?x=1", "nonsense"] {
            assert!(url(bad).unwrap_err().contains("--otlp-endpoint"), "{bad}");
        }
    }

    #[test]
    fn an_otlp_endpoint_is_refused_clearly_by_a_build_without_the_feature_and_absent_means_off() {
        let dir = tempfile::tempdir().unwrap();
        let base = || Args {
            id: Some(1),
            listen: Some("127.0.0.1:9001".parse().unwrap()),
            data_dir: Some(dir.path().to_path_buf()),
            insecure_no_peer_auth: true,
            ..Args::default()
        };
        assert_eq!(ControllerConfig::from_args(base()).unwrap().otlp_traces_url, None);
        let parsed = Args::try_parse_from(["plum-controller", "--otlp-endpoint", "http://127.0.0.1:4318"]).unwrap();
        let with = ControllerConfig::from_args(Args { otlp_endpoint: parsed.otlp_endpoint, ..base() });
        if cfg!(feature = "otlp") {
            assert_eq!(with.unwrap().otlp_traces_url.as_deref(), Some("http://127.0.0.1:4318/v1/traces"));
        } else {
            let err = with.unwrap_err();
            assert!(matches!(err, ConfigError::OtlpNotBuilt));
            assert!(err.to_string().contains("--features otlp"), "{err}");
        }
    }
}
