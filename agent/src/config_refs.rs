//! Config keys an instance gets (`configRefs`): read from the KV just before it starts, as
//! environment variables or as files in its config directory (`$PLUM_CONFIG_DIR`); while it
//! runs, a KV watch per file rewrites the file when its key changes (the instance may reload
//! it; environment variables change only with a new instance, see `rollOnConfigChange`).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use plum_sdk::Controllers;
use plum_sdk::kv::Kv;
use plum_types::ConfigRef;

/// How long a watch request waits on the server, and the pause after a failed one.
const WATCH_WAIT: Duration = Duration::from_secs(30);
const RETRY_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config key {0} does not exist")]
    Missing(String),
    #[error("config key {key}: {source}")]
    Read { key: String, source: plum_sdk::ClientError },
    #[error("config file {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("config file path `{0}` must be relative and stay inside the config directory")]
    BadPath(String),
}

/// The instance's config directory.
pub fn dir(data_dir: &Path, instance_id: &str) -> PathBuf {
    data_dir.join("config").join(instance_id)
}

/// Where a file ref's file goes: `file` must be relative without `..` (the controller checks
/// it too; a spec from elsewhere is checked again here).
fn file_path(dir: &Path, file: &str) -> Result<PathBuf, ConfigError> {
    let rel = Path::new(file);
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if file.is_empty() || !plain {
        return Err(ConfigError::BadPath(file.to_string()));
    }
    Ok(dir.join(rel))
}

/// Written to a fresh file beside it (a name of its own, created exclusively: never through a
/// link the instance planted), readable by the agent's user only (config may hold secrets),
/// then renamed over, so an instance never reads half a file.
fn write_file(path: &Path, value: &str) -> Result<(), ConfigError> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let fail = |source| ConfigError::Write { path: path.display().to_string(), source };
    let parent = path.parent().ok_or_else(|| fail(std::io::ErrorKind::InvalidInput.into()))?;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(fail)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(fail)
}

/// Reads every referenced key (linearizably: an instance started by a config roll must see
/// the value that started the roll) and puts it in `env` or in its file under `dir`;
/// `PLUM_CONFIG_DIR` names the directory.
pub async fn materialize(
    client: &Arc<Controllers>,
    refs: &[ConfigRef],
    dir: &Path,
    env: &mut BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    if refs.is_empty() {
        return Ok(());
    }
    let kv = Kv::new(client.clone());
    env.insert("PLUM_CONFIG_DIR".into(), dir.display().to_string());
    for r in refs {
        let item = kv.get_consistent(&r.namespace, &r.key).await;
        let item = item.map_err(|source| ConfigError::Read { key: r.name(), source })?;
        let value = item.ok_or_else(|| ConfigError::Missing(r.name()))?.value;
        if let Some(var) = &r.env {
            env.insert(var.clone(), value.clone());
        }
        if let Some(file) = &r.file {
            write_file(&file_path(dir, file)?, &value)?;
        }
    }
    Ok(())
}

/// The tasks that keep an instance's config files up to date; dropping it stops them.
pub struct Following(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Following {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

/// Keeps the files of `refs` up to date until the result is dropped: one long poll per file
/// ref on its key.
pub fn follow(client: &Arc<Controllers>, refs: &[ConfigRef], dir: &Path, instance_id: &str) -> Following {
    let tasks = refs
        .iter()
        .filter(|r| r.file.is_some())
        .map(|r| tokio::spawn(follow_one(client.clone(), r.clone(), dir.to_path_buf(), instance_id.to_string())))
        .collect();
    Following(tasks)
}

async fn follow_one(client: Arc<Controllers>, r: ConfigRef, dir: PathBuf, instance_id: String) {
    let Some(Ok(path)) = r.file.as_deref().map(|f| file_path(&dir, f)) else { return };
    let kv = Kv::new(client);
    // From the value just written: its index is where the watch starts.
    let mut from = match kv.get(&r.namespace, &r.key).await {
        Ok(Some(item)) => item.mod_index,
        _ => 0,
    };
    loop {
        let mut watch = kv.watch(&r.namespace, &r.key, from).with_wait(WATCH_WAIT);
        match watch.next().await {
            Ok(change) => {
                from = change.index;
                // The prefix matches longer keys too: only this one counts.
                if let Some(item) = change.items.iter().find(|i| i.key == r.key) {
                    match write_file(&path, &item.value) {
                        Ok(()) => {
                            tracing::info!(instance = %instance_id, key = %r.name(), version = item.version, "config file rewritten")
                        }
                        Err(e) => tracing::warn!(instance = %instance_id, error = %e, "config file not rewritten"),
                    }
                }
            }
            Err(e) => {
                tracing::debug!(instance = %instance_id, key = %r.name(), error = %e, "config watch failed; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_refs_stay_inside_the_config_directory() {
        let dir = Path::new("/data/config/i-1");
        assert_eq!(file_path(dir, "app.json").unwrap(), dir.join("app.json"));
        assert_eq!(file_path(dir, "conf/db.url").unwrap(), dir.join("conf/db.url"));
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./a"] {
            assert!(file_path(dir, bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn files_are_replaced_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub").join("app.conf");
        write_file(&path, "one").unwrap();
        write_file(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        let names: Vec<_> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["app.conf"], "no temporary file left");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn files_that_differ_only_in_extension_do_not_share_a_temporary_file() {
        let tmp = tempfile::tempdir().unwrap();
        let (json, yaml) = (tmp.path().join("app.json"), tmp.path().join("app.yaml"));
        std::thread::scope(|s| {
            for _ in 0..50 {
                s.spawn(|| write_file(&json, "{}").unwrap());
                s.spawn(|| write_file(&yaml, "a: 1").unwrap());
            }
        });
        assert_eq!(
            (std::fs::read_to_string(&json).unwrap(), std::fs::read_to_string(&yaml).unwrap()),
            ("{}".into(), "a: 1".into())
        );
    }
}
