//! plumctl's command line (clap derive) and where it finds the cluster: `--controllers`, else
//! `PLUM_CONTROLLERS`, else `.plum/cluster.env` in the current directory or one of its parents;
//! the token it sends: `--token`/`PLUM_TOKEN`, else `--token-file`/`PLUM_TOKEN_FILE`; and the CA
//! it trusts for `https://` controllers: `--ca-file`/`PLUM_CA_FILE`. The env file's token and CA
//! files are used only with the env file's controllers.

use std::fmt;
use std::path::{Path, PathBuf};

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use plum_types::Role;

use crate::error::{CtlError, Result};

const EXAMPLES: &str = "\
Examples:
  plumctl cluster status
  plumctl discover web --version '^1.2' --protocol http
  plumctl kv put app color red
  plumctl kv put app color blue --expect-version 1
  plumctl kv watch app --prefix feature.
  plumctl deploy --name echo --version 1.0.0 --replicas 3 --command /usr/local/bin/echo-server \\
      --arg --port --arg '${PORT}' --service-name echo --readiness-path /health
  plumctl deploy -f spec.json
  plumctl rollout echo-1a2b --version 1.1.0 --wait
  plumctl --json deployments | jq '.[].deploymentId'
  T=$(plumctl token create --role agent --node n1 --quiet)
  plumctl --token-file ~/.plum/admin.token token list

Controllers: --controllers, else $PLUM_CONTROLLERS, else a PLUM_CONTROLLERS=... line in
.plum/cluster.env in this directory or a parent (scripts/cluster.sh up writes it).

Token (when the cluster requires one): --token or $PLUM_TOKEN, else --token-file or
$PLUM_TOKEN_FILE (a file whose first non-empty line is the token), else, for controllers
from .plum/cluster.env, the file its PLUM_TOKEN_FILE=... line names. Prefer a file: a
token on the command line shows in `ps` and the shell history.

TLS (when the cluster serves HTTPS): --ca-file or $PLUM_CA_FILE (PEM, the cluster's CA),
else, for controllers from .plum/cluster.env, the file its PLUM_CA_FILE=... line names.
With a CA file, addresses without a scheme are https://; explicit schemes are kept.

Exit codes:
  0  ok
  1  refused by the cluster (an error answer other than those below)
  2  usage error (bad arguments, unreadable spec file, no controllers configured)
  3  cluster unreachable, or no leader
  4  not found (404)
  5  conflict (409: compare-and-set version mismatch, rolling update in progress)
  6  outcome unknown (503 outcomeUnknown: the write may or may not have been applied)
  7  unauthorized (401: no token, or one the cluster does not accept)
  8  forbidden (403: the token's role may not do this)";

#[derive(Debug, Parser)]
#[command(
    name = "plumctl",
    version,
    about = "Command line for a Plum cluster: status, membership, services, deployments, config KV.",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Controller replicas, comma-separated (`http://` is added when missing, `https://` with a
    /// CA file).
    #[arg(long, global = true, env = "PLUM_CONTROLLERS", value_delimiter = ',', value_name = "URLS")]
    pub controllers: Vec<String>,
    /// Print the cluster's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds a request may take in all, trying every replica.
    #[arg(long, global = true, default_value_t = 10.0, value_name = "SECONDS", value_parser = parse_seconds)]
    pub timeout: f64,
    /// Token sent with every request (wins over --token-file).
    #[arg(long, global = true, env = "PLUM_TOKEN", hide_env_values = true, value_name = "TOKEN", value_parser = parse_secret)]
    pub token: Option<Secret>,
    /// A file whose first non-empty line is the token.
    #[arg(long, global = true, env = "PLUM_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// The cluster's CA certificate(s), PEM: trusted for `https://` controllers (instead of the
    /// system's CAs).
    #[arg(long, global = true, env = "PLUM_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cluster status and membership changes.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Nodes known to the cluster and their health.
    Nodes,
    /// Registered services and how many healthy endpoints each has.
    Services,
    /// Healthy endpoints of a service.
    Discover(DiscoverArgs),
    /// Create a deployment from flags or a JSON spec (`-f spec.json`, `-f -` for stdin).
    Deploy(Box<DeployArgs>),
    /// List deployments.
    Deployments,
    /// One deployment and its instances.
    Deployment { id: String },
    /// Change how many instances a deployment runs.
    Scale {
        id: String,
        replicas: u32,
        /// Scale to 0 even though other deployments depend on its service.
        #[arg(long)]
        force: bool,
    },
    /// Rolling update: change what a deployment runs (version, command, args, env, artifact).
    Rollout(RolloutArgs),
    /// Delete a deployment (its instances are stopped).
    Undeploy {
        id: String,
        /// Delete it even though other deployments depend on its service.
        #[arg(long)]
        force: bool,
    },
    /// Services and who depends on whom (declared `dependsOn` and registered upstreams), each
    /// edge with whether it holds now.
    Topology {
        /// Graphviz DOT instead of tables (`plumctl topology --dot | dot -Tsvg > plum.svg`).
        #[arg(long)]
        dot: bool,
    },
    /// What breaks if a service stops: the services and deployments that depend on it.
    Dependents { service: String },
    /// Config key-value store.
    #[command(subcommand)]
    Kv(KvCmd),
    /// Follow changes as they happen (Ctrl-C stops).
    #[command(subcommand)]
    Watch(WatchCmd),
    /// Client tokens: create, list, revoke (admin only).
    #[command(subcommand)]
    Token(TokenCmd),
    /// The role, token and node the cluster sees this client as.
    Whoami,
    /// Print a shell completion script: `plumctl completions bash > /etc/bash_completion.d/plumctl`.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Members, roles, leader, term, log and applied indexes, lag behind the leader.
    Status,
    /// Add a replica as a non-voting learner (it catches up before it can be promoted).
    AddLearner {
        id: u64,
        /// Its API address, host:port.
        api_addr: String,
    },
    /// Make a learner a voter.
    Promote { id: u64 },
    /// Remove a replica from the cluster.
    Remove { id: u64 },
    /// Hand leadership to another voter.
    TransferLeader { id: u64 },
    /// Confirm that nodes lost together are gone, so their instances move (after a mass loss).
    Reschedule,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    pub service: String,
    /// Version, or a range such as `^1.2` where the cluster supports ranges.
    #[arg(long)]
    pub version: Option<String>,
    #[arg(long)]
    pub protocol: Option<String>,
    /// At most this many endpoints (a random subset).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Linearizable read (through the leader).
    #[arg(long)]
    pub consistent: bool,
}

/// What runs, shared by `deploy` and `rollout`.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Absolute path on the node, or a path inside the artifact.
    #[arg(long)]
    pub command: Option<String>,
    /// An argument (repeat for more); `${PORT}` is replaced by the instance's port.
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// An environment variable (repeat for more).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_val)]
    pub env: Vec<(String, String)>,
    /// Also pass the instance's port in this environment variable (besides `PORT`).
    #[arg(long = "port-env", value_name = "NAME")]
    pub port_env: Vec<String>,
    /// Fetch the program from this archive (tar.gz or zip)...
    #[arg(long, requires = "artifact_sha256")]
    pub artifact_url: Option<String>,
    /// ...whose SHA-256 is this (64 hex digits).
    #[arg(long, requires = "artifact_url")]
    pub artifact_sha256: Option<String>,
}

#[derive(Debug, Args, Default)]
pub struct DeployArgs {
    /// A JSON deployment spec (`-` reads stdin); flags given as well override its fields.
    #[arg(short = 'f', long = "file", value_name = "SPEC.json")]
    pub file: Option<PathBuf>,
    #[arg(long, required_unless_present = "file")]
    pub name: Option<String>,
    #[arg(long, required_unless_present = "file")]
    pub version: Option<String>,
    /// Instances to run [default: 1].
    #[arg(long)]
    pub replicas: Option<u32>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Register the instances' endpoints under this service [default: the deployment name,
    /// when --protocol or --readiness-path is given].
    #[arg(long)]
    pub service_name: Option<String>,
    /// The endpoints' protocol [default: http].
    #[arg(long)]
    pub protocol: Option<String>,
    /// Ready once `GET http://127.0.0.1:$PORT<path>` answers 2xx (else: once the port accepts).
    #[arg(long, value_name = "PATH")]
    pub readiness_path: Option<String>,
    /// Run only on nodes with this label (repeat for more).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_key_val)]
    pub labels: Vec<(String, String)>,
    /// Warm standby instances (running, ready, not in discovery).
    #[arg(long)]
    pub standby: Option<u32>,
    /// `stop`: agents stop the instances when cut off from the controllers beyond their TTL.
    #[arg(long, value_parser = ["stop", "none"])]
    pub fencing: Option<String>,
    /// Makes a retried deploy return the first one's deployment [default: generated].
    #[arg(long)]
    pub request_id: Option<String>,
    /// Start only once this service holds: `SERVICE` (healthy) or `SERVICE:healthy|started|completed`;
    /// repeatable. Version ranges, counts and timeouts: a spec file's `dependsOn`.
    #[arg(long = "depends-on", value_name = "SERVICE[:CONDITION]")]
    pub depends_on: Vec<String>,
    /// Start an exited instance again: `always` (default), `on-failure`, `never`.
    #[arg(long, value_parser = ["always", "on-failure", "never"])]
    pub restart: Option<String>,
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    pub id: String,
    #[arg(long)]
    pub version: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Wait until the rolling update is done (exit 1 if it fails).
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum KvCmd {
    /// Read a key.
    Get {
        namespace: String,
        key: String,
        /// Print only the value.
        #[arg(long)]
        value: bool,
        /// Linearizable read (through the leader).
        #[arg(long)]
        consistent: bool,
    },
    /// Write a key (safe to retry: every write carries a request id).
    Put {
        namespace: String,
        key: String,
        #[arg(allow_hyphen_values = true)]
        value: String,
        #[arg(long = "type", default_value = "string", value_parser = ["string", "int", "double", "bool", "bytes"])]
        kind: String,
        /// Write only if the key is at this version (0: only if absent); else exit 5.
        #[arg(long)]
        expect_version: Option<u64>,
    },
    /// Delete a key (deleting an absent key succeeds).
    Del {
        namespace: String,
        key: String,
        /// Delete only if the key is at this version; else exit 5.
        #[arg(long)]
        expect_version: Option<u64>,
    },
    /// List the keys of a namespace.
    Ls {
        namespace: String,
        #[arg(long)]
        prefix: Option<String>,
        /// Linearizable read (through the leader).
        #[arg(long)]
        consistent: bool,
    },
    /// Print changes under a namespace (or prefix) as they happen.
    Watch {
        namespace: String,
        #[arg(long)]
        prefix: Option<String>,
    },
    /// A key's recent versions, newest first (deletions included).
    History { namespace: String, key: String },
    /// What changed between two versions of a key [default: the last two].
    Diff {
        namespace: String,
        key: String,
        #[arg(long)]
        from: Option<u64>,
        #[arg(long)]
        to: Option<u64>,
    },
    /// Write an earlier version of a key again, as a new version.
    Rollback {
        namespace: String,
        key: String,
        /// The version to restore (see `kv history`).
        #[arg(long)]
        version: Option<u64>,
        /// Or the exact write, by its log index (also after the key was deleted and made again).
        #[arg(long)]
        mod_index: Option<u64>,
    },
    /// Copy a namespace's keys (or those under a prefix) into another: promote `dev` to `prod`.
    Copy {
        from: String,
        to: String,
        #[arg(long)]
        prefix: Option<String>,
        /// Replace keys the target already has [default: keep them].
        #[arg(long)]
        overwrite: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WatchCmd {
    /// Endpoints appearing, leaving or changing health.
    Services {
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// Seconds between polls when the cluster offers no discovery watch.
        #[arg(long, default_value_t = 1.0, value_parser = parse_seconds)]
        interval: f64,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token; it is shown once, here.
    Create(TokenCreateArgs),
    /// List tokens (never their secrets).
    #[command(visible_alias = "ls")]
    List,
    /// Revoke a token: its holders are refused from then on.
    Revoke {
        /// The token's id (`plumctl token list`).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// read: reads only; agent: a node agent (needs --node); write: KV and registrations;
    /// admin: everything.
    #[arg(long, value_parser = PossibleValuesParser::new(Role::ALL.map(Role::as_str)).map(|r| r.parse::<Role>().expect("listed role")))]
    pub role: Role,
    /// The node an agent token acts for (agent tokens only).
    #[arg(long, value_name = "NODE", required_if_eq("role", "agent"))]
    pub node: Option<String>,
    /// What the token is for, shown in listings [default: agent-NODE, or the role].
    #[arg(long)]
    pub name: Option<String>,
    /// Print only the token (for scripts: `T=$(plumctl token create ... --quiet)`).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// A secret from the command line or the environment: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

fn parse_secret(s: &str) -> Result<Secret, String> {
    Ok(Secret(s.to_string()))
}

/// The token to send: `--token`/`PLUM_TOKEN` (when not blank), else the first non-empty line of
/// `--token-file`/`PLUM_TOKEN_FILE`, else none.
pub fn token(given: Option<&Secret>, file: Option<&Path>) -> Result<Option<String>> {
    if let Some(t) = given.map(|s| s.0.trim()).filter(|t| !t.is_empty()) {
        plum_sdk::config::check_token(t).map_err(|e| CtlError::Usage(format!("--token/PLUM_TOKEN: {e}")))?;
        return Ok(Some(t.to_string()));
    }
    match file.filter(|f| !f.as_os_str().is_empty()) {
        Some(f) => plum_sdk::config::read_token_file(f).map(Some).map_err(|e| match e {
            plum_sdk::ClientError::Config(m) => CtlError::Usage(m),
            e => CtlError::Usage(e.to_string()),
        }),
        None => Ok(None),
    }
}

/// `KEY=VALUE`: the key is what comes before the first `=` and is not empty; the value may be
/// empty or hold more `=`.
pub fn parse_key_val(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        Some(_) => Err(format!("`{s}`: the key before `=` is empty")),
        None => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds between 0 and 86400")),
    }
}

/// Where the cluster is and what to reach it with.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub urls: Vec<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

/// The replicas to talk to: the flag or `PLUM_CONTROLLERS` (clap reads both), else
/// `.plum/cluster.env` found from `cwd` upwards. The token and CA files: the flags (or their
/// variables), else, with the env file's controllers only, the files it names. With a CA file
/// from the flag, addresses without a scheme are `https://`.
pub fn target(controllers: &[String], token_file: Option<&Path>, ca_file: Option<&Path>, cwd: &Path) -> Result<Target> {
    let list = controllers.join(",");
    let given = list.split(',').any(|u| !u.trim().is_empty()).then_some(list.as_str());
    if given.is_none() && plum_sdk::config::find_env_file(cwd).is_none() {
        return Err(CtlError::Usage(
            "no controllers: pass --controllers, set PLUM_CONTROLLERS, or run scripts/cluster.sh up \
             (it writes .plum/cluster.env)"
                .into(),
        ));
    }
    let given_file = |f: Option<&Path>| f.filter(|f| !f.as_os_str().is_empty()).map(Path::to_path_buf);
    let ca_file = given_file(ca_file);
    let found = plum_sdk::config::resolve_from(given, cwd, ca_file.is_some()).map_err(|e| match e {
        plum_sdk::ClientError::Config(m) => CtlError::Usage(m),
        e => CtlError::Usage(e.to_string()),
    })?;
    Ok(Target {
        urls: found.urls,
        token_file: given_file(token_file).or(found.token_file),
        ca_file: ca_file.or(found.ca_file),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> std::result::Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("plumctl").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_value_pairs() {
        assert_eq!(parse_key_val("K=V"), Ok(("K".into(), "V".into())));
        assert_eq!(parse_key_val("K="), Ok(("K".into(), "".into())));
        assert_eq!(parse_key_val("URL=a=b&c=d"), Ok(("URL".into(), "a=b&c=d".into())));
        assert!(parse_key_val("=V").is_err());
        assert!(parse_key_val("novalue").is_err());
    }

    #[test]
    fn deploy_flags() {
        let cli = parse(&[
            "deploy",
            "--name",
            "web",
            "--version",
            "1.0",
            "--replicas",
            "3",
            "--command",
            "/bin/web",
            "--arg",
            "--port",
            "--arg",
            "${PORT}",
            "--env",
            "A=1",
            "--env",
            "B=x=y",
            "--port-env",
            "HTTP_PORT",
            "--label",
            "zone=a",
            "--fencing",
            "stop",
        ])
        .unwrap();
        let Command::Deploy(d) = cli.command else { panic!("not deploy") };
        assert_eq!(d.name.as_deref(), Some("web"));
        assert_eq!(d.replicas, Some(3));
        assert_eq!(d.run.args, vec!["--port", "${PORT}"]);
        assert_eq!(d.run.env, vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]);
        assert_eq!(d.run.port_env, vec!["HTTP_PORT"]);
        assert_eq!(d.labels, vec![("zone".into(), "a".into())]);
        assert_eq!(d.fencing.as_deref(), Some("stop"));
    }

    #[test]
    fn usage_errors_exit_2() {
        for args in [
            &["deploy", "--version", "1"][..],                               // no name
            &["deploy", "-f", "x.json", "--env", "nokey"],                   // not K=V
            &["deploy", "-f", "x.json", "--fencing", "sometimes"],           // unknown fencing
            &["deploy", "-f", "x.json", "--artifact-url", "http://a/b.tgz"], // no sha256
            &["kv", "put", "ns", "k", "v", "--type", "float"],
            &["kv", "put", "ns", "k", "v", "--expect-version", "x"],
            &["scale", "web-1", "many"],
            &["nosuchcommand"],
            &["--timeout", "0", "nodes"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} parsed"));
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
        assert!(parse(&["deploy", "-f", "spec.json"]).is_ok());
        let cli = parse(&["kv", "put", "ns", "k", "-1", "--type", "int"]).unwrap();
        assert!(matches!(cli.command, Command::Kv(KvCmd::Put { value, kind, .. }) if value == "-1" && kind == "int"));
    }

    #[test]
    fn global_flags_anywhere() {
        let cli = parse(&["kv", "get", "app", "color", "--json", "--controllers", "a:1,b:2"]).unwrap();
        assert!(cli.json);
        assert_eq!(cli.controllers, vec!["a:1", "b:2"]);
        let cli = parse(&["--json", "cluster", "status"]).unwrap();
        assert!(matches!(cli.command, Command::Cluster(ClusterCmd::Status)));
    }

    #[test]
    fn help_documents_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes:") && help.contains("6  outcome unknown"), "{help}");
    }

    fn target_in(
        controllers: &[&str],
        token_file: Option<&Path>,
        ca_file: Option<&Path>,
        cwd: &Path,
    ) -> Result<Target> {
        let controllers: Vec<String> = controllers.iter().map(|c| c.to_string()).collect();
        target(&controllers, token_file, ca_file, cwd)
    }

    #[test]
    fn controllers_from_flag_then_env_file() {
        let dir = tempdir();
        let nested = dir.join("a").join("b");
        std::fs::create_dir_all(&nested).unwrap();
        let t = target_in(&["127.0.0.1:1/", " http://h:2 ", ""], None, None, &nested).unwrap();
        assert_eq!(t.urls, vec!["http://127.0.0.1:1", "http://h:2"]);
        assert_eq!(target_in(&[], None, None, &nested).unwrap_err().exit_code(), 2, "none anywhere");
        std::fs::create_dir_all(dir.join(".plum")).unwrap();
        std::fs::write(
            dir.join(".plum/cluster.env"),
            "PLUM_AGENTS=3\nexport PLUM_CONTROLLERS=\"127.0.0.1:7101, 127.0.0.1:7102\"\n",
        )
        .unwrap();
        let t = target_in(&[""], None, None, &nested).unwrap();
        assert_eq!(t.urls, vec!["http://127.0.0.1:7101", "http://127.0.0.1:7102"]);
        std::fs::write(dir.join(".plum/cluster.env"), "PLUM_AGENTS=3\nPLUM_CONTROLLERS_OLD=h:1\n").unwrap();
        assert_eq!(target_in(&[], None, None, &nested).unwrap_err().exit_code(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_local_clusters_token_file_goes_with_its_controllers_only() {
        let dir = tempdir();
        let nested = dir.join("a");
        std::fs::create_dir_all(dir.join(".plum/cluster")).unwrap();
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(dir.join(".plum/cluster/admin.token"), "plum_admin\n").unwrap();
        let env = "PLUM_CONTROLLERS=127.0.0.1:7101\nPLUM_TOKEN_FILE=.plum/cluster/admin.token\n";
        std::fs::write(dir.join(".plum/cluster.env"), env).unwrap();
        let found = target_in(&[], None, None, &nested).unwrap().token_file.unwrap();
        assert_eq!(found, dir.join(".plum/cluster/admin.token"));
        assert_eq!(token(None, Some(&found)).unwrap().as_deref(), Some("plum_admin"));
        assert_eq!(target_in(&["other:1"], None, None, &nested).unwrap().token_file, None, "not for other controllers");
        let mine = dir.join("mine.token");
        assert_eq!(target_in(&[], Some(&mine), None, &nested).unwrap().token_file, Some(mine), "the flag wins");
        std::fs::write(
            dir.join(".plum/cluster.env"),
            "PLUM_CONTROLLERS=127.0.0.1:7101\nPLUM_TOKEN_FILE=/nonexistent\n",
        )
        .unwrap();
        let t = target_in(&[], None, None, &nested).unwrap();
        assert_eq!(t.token_file, None, "a missing file is no token (auth may be off)");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_ca_file_comes_from_the_flag_then_the_env_file_with_its_controllers() {
        let dir = tempdir();
        let nested = dir.join("a");
        std::fs::create_dir_all(&nested).unwrap();
        let mine = dir.join("mine.pem");

        // A CA from the flag makes bare addresses HTTPS; explicit schemes stay.
        let t = target_in(&["h:1", "http://h:2"], None, Some(&mine), &nested).unwrap();
        assert_eq!(
            t,
            Target {
                urls: vec!["https://h:1".into(), "http://h:2".into()],
                token_file: None,
                ca_file: Some(mine.clone())
            }
        );
        let t = target_in(&["h:1"], None, Some(Path::new("")), &nested).unwrap();
        assert_eq!((t.urls, t.ca_file), (vec!["http://h:1".to_string()], None), "an empty PLUM_CA_FILE is unset");

        std::fs::create_dir_all(dir.join(".plum")).unwrap();
        let env = "PLUM_CONTROLLERS=https://127.0.0.1:7101,127.0.0.1:7102\nPLUM_CA_FILE=.plum/cluster/tls/ca.pem\n";
        std::fs::write(dir.join(".plum/cluster.env"), env).unwrap();
        let t = target_in(&[], None, None, &nested).unwrap();
        assert_eq!(t.ca_file, Some(dir.join(".plum/cluster/tls/ca.pem")), "relative to the directory holding .plum/");
        assert_eq!(t.urls, vec!["https://127.0.0.1:7101", "https://127.0.0.1:7102"]);
        assert_eq!(target_in(&[], None, Some(&mine), &nested).unwrap().ca_file, Some(mine), "the flag wins");
        let t = target_in(&["h:1"], None, None, &nested).unwrap();
        assert_eq!((t.urls, t.ca_file), (vec!["http://h:1".to_string()], None), "not for other controllers");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_ca_file_flag_is_global_and_documented() {
        let cli = parse(&["nodes", "--ca-file", "/etc/plum/ca.pem"]).unwrap();
        assert_eq!(cli.ca_file.as_deref(), Some(Path::new("/etc/plum/ca.pem")));
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--ca-file <PATH>") && help.contains("PLUM_CA_FILE"), "{help}");
    }

    #[test]
    fn token_commands() {
        let cli = parse(&["token", "create", "--role", "agent", "--node", "n1", "--quiet"]).unwrap();
        let Command::Token(TokenCmd::Create(a)) = cli.command else { panic!("not token create") };
        assert_eq!((a.role, a.node.as_deref(), a.quiet, a.name), (Role::Agent, Some("n1"), true, None));
        let cli = parse(&["token", "create", "--role", "write", "--name", "ci"]).unwrap();
        assert!(matches!(cli.command, Command::Token(TokenCmd::Create(a)) if a.role == Role::Write));
        assert!(matches!(parse(&["token", "ls"]).unwrap().command, Command::Token(TokenCmd::List)));
        let cli = parse(&["token", "revoke", "0123456789ab"]).unwrap();
        assert!(matches!(cli.command, Command::Token(TokenCmd::Revoke { id }) if id == "0123456789ab"));
        assert!(matches!(parse(&["whoami", "--json"]).unwrap().command, Command::Whoami));
        for args in [
            &["token", "create", "--role", "agent"][..], // agent without --node
            &["token", "create", "--role", "root"],
            &["token", "create"],
            &["token", "revoke"],
        ] {
            assert_eq!(parse(args).expect_err(&format!("{args:?} parsed")).exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn the_token_flag_wins_over_the_file_and_never_shows() {
        let cli = parse(&["--token", "plum_abc_secret", "nodes", "--token-file", "/nonexistent"]).unwrap();
        assert!(!format!("{cli:?}").contains("secret"), "{cli:?}");
        assert_eq!(token(cli.token.as_ref(), cli.token_file.as_deref()).unwrap().as_deref(), Some("plum_abc_secret"));

        let dir = tempdir();
        let file = dir.join("token");
        std::fs::write(&file, "\n  plum_from_file  \n").unwrap();
        let blank = Secret("  ".into());
        assert_eq!(token(Some(&blank), Some(&file)).unwrap().as_deref(), Some("plum_from_file"));
        assert_eq!(token(None, None).unwrap(), None);
        assert_eq!(token(None, Some(&dir.join("missing"))).unwrap_err().exit_code(), 2);
        std::fs::write(&file, "\n").unwrap();
        assert_eq!(token(None, Some(&file)).unwrap_err().exit_code(), 2);
        let e = token(Some(&Secret("two words".into())), None).unwrap_err();
        assert!(e.exit_code() == 2 && !e.to_string().contains("words"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn help_never_shows_the_token_from_the_environment() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--token <TOKEN>") && help.contains("--token-file <PATH>"), "{help}");
        assert!(help.contains("7  unauthorized") && help.contains("8  forbidden"), "{help}");
        let token = Cli::command().get_arguments().find(|a| a.get_id() == "token").cloned().unwrap();
        assert!(token.is_hide_env_values_set());
    }

    /// A fresh directory under the system temp dir (the binary has no tempfile dependency).
    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("plumctl-test-{}-{}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
