//! One function per command, grouped by what they act on; `run` only dispatches.

mod catalog;
mod cluster;
mod deploy;
mod kv;
mod kv_history;
mod tokens;
mod topology;
mod watch;

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::Api;
use crate::cli::{Cli, ClusterCmd, Command, KvCmd, TokenCmd, WatchCmd};
use crate::error::{CtlError, Result};
use crate::output::Output;

/// What every command needs: the cluster and how to print.
pub struct Ctx {
    pub api: Api,
    pub out: Output,
}

pub async fn run(cli: Cli) -> Result<()> {
    let out = Output::detect(cli.json);
    if let Command::Completions { shell } = cli.command {
        return completions(shell);
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let target = crate::cli::target(&cli.controllers, cli.token_file.as_deref(), cli.ca_file.as_deref(), &cwd)?;
    let token = crate::cli::token(cli.token.as_ref(), target.token_file.as_deref())?;
    let has_token = token.is_some();
    let budget = Duration::from_secs_f64(cli.timeout);
    let ctx = Ctx { api: Api::new(target.urls, budget, token, target.ca_file.as_deref())?, out };
    dispatch(ctx, cli.command).await.map_err(|e| with_hint(e, has_token))
}

async fn dispatch(ctx: Ctx, command: Command) -> Result<()> {
    match command {
        Command::Cluster(cmd) => match cmd {
            ClusterCmd::Status => cluster::status(&ctx).await,
            ClusterCmd::AddLearner { id, api_addr } => cluster::add_learner(&ctx, id, &api_addr).await,
            ClusterCmd::Promote { id } => cluster::promote(&ctx, id).await,
            ClusterCmd::Remove { id } => cluster::remove(&ctx, id).await,
            ClusterCmd::TransferLeader { id } => cluster::transfer_leader(&ctx, id).await,
            ClusterCmd::Reschedule => cluster::reschedule(&ctx).await,
        },
        Command::Nodes => catalog::nodes(&ctx).await,
        Command::Services => catalog::services(&ctx).await,
        Command::Discover(args) => catalog::discover(&ctx, &args).await,
        Command::Deploy(args) => deploy::create(&ctx, &args).await,
        Command::Deployments => deploy::list(&ctx).await,
        Command::Deployment { id } => deploy::show(&ctx, &id).await,
        Command::Scale { id, replicas, force } => deploy::scale(&ctx, &id, replicas, force).await,
        Command::Rollout(args) => deploy::rollout(&ctx, &args).await,
        Command::Undeploy { id, force } => deploy::remove(&ctx, &id, force).await,
        Command::Topology { dot } => topology::topology(&ctx, dot).await,
        Command::Dependents { service } => topology::dependents(&ctx, &service).await,
        Command::Kv(cmd) => match cmd {
            KvCmd::Get { namespace, key, value, consistent } => {
                kv::get(&ctx, &namespace, &key, value, consistent).await
            }
            KvCmd::Put { namespace, key, value, kind, expect_version } => {
                kv::put(&ctx, &namespace, &key, &value, &kind, expect_version).await
            }
            KvCmd::Del { namespace, key, expect_version } => kv::del(&ctx, &namespace, &key, expect_version).await,
            KvCmd::Ls { namespace, prefix, consistent } => {
                kv::ls(&ctx, &namespace, prefix.as_deref(), consistent).await
            }
            KvCmd::Watch { namespace, prefix } => until_ctrl_c(kv::watch(&ctx, &namespace, prefix.as_deref())).await,
            KvCmd::History { namespace, key } => kv_history::history(&ctx, &namespace, &key).await,
            KvCmd::Diff { namespace, key, from, to } => kv_history::diff(&ctx, &namespace, &key, from, to).await,
            KvCmd::Rollback { namespace, key, version, mod_index } => {
                kv_history::rollback(&ctx, &namespace, &key, version, mod_index).await
            }
            KvCmd::Copy { from, to, prefix, overwrite } => {
                kv_history::copy(&ctx, &from, &to, prefix.as_deref(), overwrite).await
            }
        },
        Command::Watch(WatchCmd::Services { service, interval }) => {
            until_ctrl_c(watch::services(&ctx, service.as_deref(), Duration::from_secs_f64(interval))).await
        }
        Command::Token(cmd) => match cmd {
            TokenCmd::Create(args) => tokens::create(&ctx, &args).await,
            TokenCmd::List => tokens::list(&ctx).await,
            TokenCmd::Revoke { id } => tokens::revoke(&ctx, &id).await,
        },
        Command::Whoami => tokens::whoami(&ctx).await,
        Command::Completions { .. } => Ok(()),
    }
}

/// What to do about a 401 or 403, which depends on whether a token was sent.
fn with_hint(e: CtlError, has_token: bool) -> CtlError {
    match e {
        CtlError::Unauthorized(m) if has_token => CtlError::Unauthorized(format!(
            "{m}; the token was not accepted (mistyped, revoked, or from another cluster)"
        )),
        CtlError::Unauthorized(m) => CtlError::Unauthorized(format!(
            "{m}; the cluster requires a token: pass --token-file PATH or set PLUM_TOKEN_FILE (or PLUM_TOKEN)"
        )),
        CtlError::Forbidden(m) => CtlError::Forbidden(format!("{m}; `plumctl whoami` shows this token's role")),
        e => e,
    }
}

fn completions(shell: clap_complete::Shell) -> Result<()> {
    use clap::CommandFactory;
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "plumctl", &mut text);
    crate::output::print_text(&String::from_utf8_lossy(&text))
}

/// Watches run until Ctrl-C, which is a normal end (exit 0).
async fn until_ctrl_c(watch: impl Future<Output = Result<()>>) -> Result<()> {
    tokio::select! {
        r = watch => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// The typed view of an answer (tables need it); an answer of another shape is an error, not
/// a panic.
fn decode<T: DeserializeOwned>(body: &Value, what: &str) -> Result<T> {
    T::deserialize(body).map_err(|e| CtlError::Failed(format!("unexpected answer to {what}: {e}")))
}
