//! The bootstrap admin token: written next to the cluster secret on first start (when the
//! file is absent), and recorded (its hash) in the replicated state by whichever replica
//! leads first. It is recorded once in the life of a cluster: revoked, it stays revoked.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use plum_types::Role;

use super::token;
use crate::cluster::{Cluster, unix_now_ms};
use crate::state::{Op, TokenRecord};

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("admin token file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("admin token file {0} holds no token of the form plum_<id>_<secret>")]
    Malformed(String),
}

/// The token's id and hash, read from `path`; a new token is written there first when the
/// file does not exist (mode 600; several replicas sharing a directory agree on one file).
pub fn load_or_create(path: &Path) -> Result<(String, String), BootstrapError> {
    let io = |source| BootstrapError::Io { path: path.display().to_string(), source };
    let issued = token::issue();
    // Written whole under a temporary name, then linked into place: a replica starting at the
    // same moment sees no file or the complete one, never a half-written one.
    let tmp = path.with_extension(format!("tmp.{}.{}", std::process::id(), issued.id));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&tmp)
        .and_then(|mut file| file.write_all(format!("{}\n", issued.token).as_bytes()).and_then(|()| file.sync_all()));
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), token_id = %issued.id, "wrote the bootstrap admin token");
            return Ok((issued.id, issued.hash));
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let line = plum_sdk::config::parse_token_file(&text).unwrap_or("");
    let (id, secret) = token::parse(line).ok_or_else(|| BootstrapError::Malformed(path.display().to_string()))?;
    Ok((id.to_string(), token::hash(secret)))
}

/// Until the cluster has recorded a bootstrap token: when this replica leads, propose it.
pub async fn record(cluster: Arc<Cluster>, id: String, hash: String) {
    loop {
        if cluster.with_registry(|r| r.tokens_bootstrapped()) {
            return;
        }
        if cluster.leading_term().is_some() {
            let token = TokenRecord {
                id: id.clone(),
                name: "bootstrap admin".into(),
                role: Role::Admin,
                node_id: String::new(),
                hash: hash.clone(),
                created_ms: unix_now_ms(),
            };
            match cluster.propose_if_leader(Op::CreateToken { token, bootstrap: true }).await {
                Ok(_) => tracing::info!(id = cluster.id, token_id = %id, "recorded the bootstrap admin token"),
                Err(e) => tracing::warn!(id = cluster.id, error = %e, "bootstrap admin token not recorded yet"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_written_once_and_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        let first = load_or_create(&path).unwrap();
        let again = load_or_create(&path).unwrap();
        assert_eq!(first, again);
        let text = std::fs::read_to_string(&path).unwrap();
        let (id, secret) = token::parse(text.trim()).unwrap();
        assert_eq!((id.to_string(), token::hash(secret)), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, "not a token\n").unwrap();
        assert!(matches!(load_or_create(&path), Err(BootstrapError::Malformed(_))));
    }
}
