//! Where the controllers are: an explicit list, `PLUM_CONTROLLERS`, or a `.plum/cluster.env`
//! (written by `scripts/cluster.sh up`) in the current directory or one of its parents.

use std::path::{Path, PathBuf};

use crate::error::ClientError;

pub const ENV_VAR: &str = "PLUM_CONTROLLERS";

/// Splits `a,b,c`, trims, adds `http://` where no scheme is given, drops trailing slashes.
pub fn parse_list(list: &str) -> Result<Vec<String>, ClientError> {
    let urls: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let s = s.trim_end_matches('/');
            if s.contains("://") { s.to_string() } else { format!("http://{s}") }
        })
        .collect();
    for u in &urls {
        url::Url::parse(u).map_err(|e| ClientError::Config(format!("controller address `{u}`: {e}")))?;
    }
    if urls.is_empty() {
        return Err(ClientError::Config("no controller addresses".into()));
    }
    Ok(urls)
}

/// The controllers from `explicit`, else `PLUM_CONTROLLERS`, else the nearest `.plum/cluster.env`.
pub fn resolve(explicit: Option<&str>) -> Result<Vec<String>, ClientError> {
    if let Some(list) = explicit {
        return parse_list(list);
    }
    if let Ok(list) = std::env::var(ENV_VAR) {
        return parse_list(&list);
    }
    let cwd = std::env::current_dir().map_err(|e| ClientError::Config(e.to_string()))?;
    let file = find_env_file(&cwd).ok_or_else(|| {
        ClientError::Config(format!(
            "no controllers: pass them, set {ENV_VAR}, or start a local cluster (scripts/cluster.sh up)"
        ))
    })?;
    let text = std::fs::read_to_string(&file).map_err(|e| ClientError::Config(format!("{}: {e}", file.display())))?;
    let list = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{ENV_VAR}=")))
        .ok_or_else(|| ClientError::Config(format!("{} has no {ENV_VAR}= line", file.display())))?;
    parse_list(list)
}

fn find_env_file(start: &Path) -> Option<PathBuf> {
    start.ancestors().map(|d| d.join(".plum/cluster.env")).find(|f| f.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_normalised_and_bad_ones_refused() {
        assert_eq!(
            parse_list(" 127.0.0.1:7101/, http://h:2 ,").unwrap(),
            vec!["http://127.0.0.1:7101".to_string(), "http://h:2".to_string()]
        );
        assert!(parse_list(" , ").is_err());
        assert!(parse_list("http://bad host").is_err());
    }

    #[test]
    fn the_env_file_is_found_in_a_parent_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".plum")).unwrap();
        std::fs::write(dir.path().join(".plum/cluster.env"), "PLUM_CONTROLLERS=127.0.0.1:1\n").unwrap();
        let deep = dir.path().join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(find_env_file(&deep), Some(dir.path().join(".plum/cluster.env")));
    }
}
