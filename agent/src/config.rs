//! Agent settings: flags, each with a `PLUM_AGENT_*` environment variable. The token is the
//! exception: `PLUM_TOKEN` (environment only: a flag would show in `ps`), else `--token-file` /
//! `PLUM_TOKEN_FILE`, the names every Plum client reads; so is the CA of a cluster serving HTTPS,
//! `--ca-file` / `PLUM_CA_FILE`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use plum_sdk::Options;

#[derive(Debug, Parser)]
#[command(name = "plum-agent", about = "Plum node agent: heartbeats, runs the instances assigned to its node", version)]
pub struct Args {
    /// This node's id.
    #[arg(long, env = "PLUM_AGENT_NODE_ID")]
    pub node_id: String,
    /// Every controller replica, comma-separated (http://host:port,... or https://; without a
    /// scheme, `https://` with --ca-file, else `http://`).
    #[arg(long, env = "PLUM_CONTROLLERS")]
    pub controllers: String,
    /// The address instances on this node are reached at.
    #[arg(long, env = "PLUM_AGENT_IP", default_value = "127.0.0.1")]
    pub ip: String,
    /// Node labels, k=v comma-separated (placement matches on them).
    #[arg(long, env = "PLUM_AGENT_LABELS", default_value = "")]
    pub labels: String,
    /// Where the agent keeps instance logs and pid files.
    #[arg(long, env = "PLUM_AGENT_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Heartbeat interval.
    #[arg(long, env = "PLUM_AGENT_HEARTBEAT_MS", default_value_t = 250)]
    pub heartbeat_ms: u64,
    /// The TTL this node declares: silent for this long, it is declared dead and its work moves.
    #[arg(long, env = "PLUM_AGENT_TTL_MS", default_value_t = 1000)]
    pub ttl_ms: u64,
    /// Instances this node accepts at most (0: no limit).
    #[arg(long, env = "PLUM_AGENT_CAPACITY", default_value_t = 0)]
    pub capacity: u32,
    /// A file whose first non-empty line is this node's token (`plumctl token create --role
    /// agent --node NODE`); re-read when the controllers refuse the token. PLUM_TOKEN, when
    /// set, is used instead.
    #[arg(long, env = "PLUM_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// The cluster's CA certificate(s), PEM: trusted for `https://` controllers (instead of the
    /// system's CAs).
    #[arg(long, env = "PLUM_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// Serve Prometheus metrics at `GET /metrics` on this address (IP:port), plain HTTP
    /// without authentication: loopback or a private address. Off when not given.
    #[arg(long, env = "PLUM_AGENT_METRICS_ADDR", value_name = "IP:PORT")]
    pub metrics_addr: Option<SocketAddr>,
    /// Log lines as `text` or `json` (one object per line). The filter comes from `PLUM_LOG`.
    #[arg(long, env = "PLUM_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: plum_sdk::logging::LogFormat,
}

/// A token: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_id: String,
    pub controllers: Vec<String>,
    pub ip: String,
    pub labels: BTreeMap<String, String>,
    pub data_dir: PathBuf,
    pub heartbeat: Duration,
    pub ttl_ms: u64,
    pub capacity: u32,
    /// Sent with every call to the controllers.
    pub token: Option<Secret>,
    /// Where the token came from, when it came from a file (re-read after a refusal).
    pub token_file: Option<PathBuf>,
    /// Both `PLUM_TOKEN` and a token file were given (the file is ignored): worth a warning.
    pub token_file_ignored: bool,
    /// The CA certificates trusted for `https://` controllers.
    pub ca_file: Option<PathBuf>,
    /// Where `/metrics` is served; `None`: nowhere.
    pub metrics_addr: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("bad label `{0}`: expected key=value")]
    Label(String),
    #[error("no controller addresses given")]
    NoControllers,
    #[error("--controllers: {0}")]
    Controllers(String),
    #[error("{0}")]
    Ca(String),
    #[error("{0}")]
    Token(String),
}

impl AgentConfig {
    /// `env_token`: the value of `PLUM_TOKEN`, if set.
    pub fn from_args(a: Args, env_token: Option<String>) -> Result<AgentConfig, ConfigError> {
        let mut labels = BTreeMap::new();
        for part in a.labels.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| ConfigError::Label(part.to_string()))?;
            labels.insert(k.trim().to_string(), v.trim().to_string());
        }
        let ca_file = a.ca_file.filter(|f| !f.as_os_str().is_empty());
        if a.controllers.split(',').all(|c| c.trim().is_empty()) {
            return Err(ConfigError::NoControllers);
        }
        // A cluster with a CA serves HTTPS only: bare addresses mean https:// then.
        let controllers =
            plum_sdk::config::parse_list_with_tls(&a.controllers, ca_file.is_some()).map_err(|e| match e {
                plum_sdk::ClientError::Config(m) => ConfigError::Controllers(m),
                e => ConfigError::Controllers(e.to_string()),
            })?;
        let env_token = env_token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        let token_file = a.token_file.filter(|f| !f.as_os_str().is_empty());
        let token_file_ignored = env_token.is_some() && token_file.is_some();
        let (token, token_file) = match (env_token, token_file) {
            (Some(t), _) => {
                plum_sdk::config::check_token(&t).map_err(|e| ConfigError::Token(format!("PLUM_TOKEN: {e}")))?;
                (Some(Secret(t)), None)
            }
            (None, Some(f)) => {
                let t = plum_sdk::config::read_token_file(&f).map_err(|e| match e {
                    plum_sdk::ClientError::Config(m) => ConfigError::Token(m),
                    e => ConfigError::Token(e.to_string()),
                })?;
                (Some(Secret(t)), Some(f))
            }
            (None, None) => (None, None),
        };
        Ok(AgentConfig {
            node_id: a.node_id,
            controllers,
            ip: a.ip,
            labels,
            data_dir: a.data_dir,
            heartbeat: Duration::from_millis(a.heartbeat_ms.max(10)),
            ttl_ms: a.ttl_ms,
            capacity: a.capacity,
            token,
            token_file,
            token_file_ignored,
            ca_file,
            metrics_addr: a.metrics_addr,
        })
    }

    /// The transport's options: the token, and TLS trusting the CA file. An unusable CA file
    /// stops the agent at start rather than failing every call.
    pub fn transport_options(&self) -> Result<Options, ConfigError> {
        let options = Options { token: self.token.as_ref().map(|t| t.0.clone()), ..Options::default() };
        match &self.ca_file {
            Some(ca) => options.with_ca_file(ca).map_err(|e| match e {
                plum_sdk::ClientError::Config(m) => ConfigError::Ca(format!("--ca-file/PLUM_CA_FILE: {m}")),
                e => ConfigError::Ca(e.to_string()),
            }),
            None => Ok(options),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn args(extra: &[&str]) -> Args {
        with_controllers("127.0.0.1:1", extra)
    }

    fn with_controllers(controllers: &str, extra: &[&str]) -> Args {
        let base = ["plum-agent", "--node-id", "n1", "--controllers", controllers, "--data-dir", "/tmp/x"];
        Args::try_parse_from(base.iter().chain(extra)).unwrap()
    }

    #[test]
    fn the_token_comes_from_plum_token_then_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "\n  plum_from_file \n").unwrap();
        let path = file.to_str().unwrap();

        let c = AgentConfig::from_args(args(&["--token-file", path]), None).unwrap();
        assert_eq!((c.token, c.token_file.as_deref()), (Some(Secret("plum_from_file".into())), Some(file.as_path())));
        let c = AgentConfig::from_args(args(&["--token-file", path]), Some(" plum_env ".into())).unwrap();
        assert_eq!((c.token, c.token_file, c.token_file_ignored), (Some(Secret("plum_env".into())), None, true));
        let c = AgentConfig::from_args(args(&[]), Some("".into())).unwrap();
        assert_eq!((c.token, c.token_file_ignored), (None, false));
    }

    #[test]
    fn with_a_ca_file_bare_controller_addresses_are_https() {
        let from = |controllers, extra: &[&str]| AgentConfig::from_args(with_controllers(controllers, extra), None);
        let c = from("h:1, http://h:2,https://h:3/", &[]).unwrap();
        assert_eq!(c.controllers, vec!["http://h:1", "http://h:2", "https://h:3"]);
        assert_eq!(c.ca_file, None);
        let c = from("h:1,http://h:2", &["--ca-file", "/etc/plum/ca.pem"]).unwrap();
        assert_eq!(c.controllers, vec!["https://h:1", "http://h:2"], "explicit schemes are kept");
        assert_eq!(c.ca_file.as_deref(), Some(std::path::Path::new("/etc/plum/ca.pem")));
        let empty = Args { ca_file: Some(PathBuf::new()), ..with_controllers("h:1", &[]) };
        let c = AgentConfig::from_args(empty, None).unwrap();
        assert_eq!((c.controllers, c.ca_file), (vec!["http://h:1".to_string()], None), "empty is unset");
        assert!(matches!(from(" , ", &[]), Err(ConfigError::NoControllers)));
        assert!(matches!(from("http://bad host", &[]), Err(ConfigError::Controllers(_))));
    }

    #[test]
    fn the_ca_file_is_loaded_at_start_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate\n").unwrap();
        for path in [bad, dir.path().join("missing.pem")] {
            let c = AgentConfig::from_args(args(&["--ca-file", path.to_str().unwrap()]), None).unwrap();
            let e = c.transport_options().unwrap_err().to_string();
            assert!(e.starts_with("--ca-file/PLUM_CA_FILE: CA file") && e.contains(".pem"), "{e}");
        }
        let c = AgentConfig::from_args(args(&[]), Some("plum_abc".into())).unwrap();
        let options = c.transport_options().unwrap();
        assert_eq!((options.token.as_deref(), options.tls.is_none()), (Some("plum_abc"), true));
    }

    #[test]
    fn metrics_are_served_only_when_an_address_is_given() {
        assert_eq!(AgentConfig::from_args(args(&[]), None).unwrap().metrics_addr, None);
        let c = AgentConfig::from_args(args(&["--metrics-addr", "127.0.0.1:9464"]), None).unwrap();
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        let base = ["plum-agent", "--node-id", "n1", "--controllers", "h:1", "--data-dir", "/tmp/x"];
        for bad in ["localhost", "127.0.0.1", "127.0.0.1:99999"] {
            let parsed = Args::try_parse_from(base.iter().chain(&["--metrics-addr", bad]));
            assert!(parsed.is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn an_unusable_token_stops_the_agent_at_start_without_showing_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = AgentConfig::from_args(args(&["--token-file", missing.to_str().unwrap()]), None).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        let e = AgentConfig::from_args(args(&[]), Some("my secret".into())).unwrap_err().to_string();
        assert!(e.contains("PLUM_TOKEN") && !e.contains("secret"), "{e}");
        let c = AgentConfig::from_args(args(&[]), Some("plum_abc".into())).unwrap();
        assert!(!format!("{c:?}").contains("plum_abc"));
    }
}
