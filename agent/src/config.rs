//! Agent settings: flags, each with a `PLUM_AGENT_*` environment variable.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "plum-agent", about = "Plum node agent: heartbeats, runs the instances assigned to its node", version)]
pub struct Args {
    /// This node's id.
    #[arg(long, env = "PLUM_AGENT_NODE_ID")]
    pub node_id: String,
    /// Every controller replica, comma-separated (http://host:port,...).
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
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("bad label `{0}`: expected key=value")]
    Label(String),
    #[error("no controller addresses given")]
    NoControllers,
}

impl AgentConfig {
    pub fn from_args(a: Args) -> Result<AgentConfig, ConfigError> {
        let mut labels = BTreeMap::new();
        for part in a.labels.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| ConfigError::Label(part.to_string()))?;
            labels.insert(k.trim().to_string(), v.trim().to_string());
        }
        let controllers: Vec<String> = a
            .controllers
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| if c.starts_with("http") { c.to_string() } else { format!("http://{c}") })
            .collect();
        if controllers.is_empty() {
            return Err(ConfigError::NoControllers);
        }
        Ok(AgentConfig {
            node_id: a.node_id,
            controllers,
            ip: a.ip,
            labels,
            data_dir: a.data_dir,
            heartbeat: Duration::from_millis(a.heartbeat_ms.max(10)),
            ttl_ms: a.ttl_ms,
            capacity: a.capacity,
        })
    }
}
