//! Where the controllers are: an explicit list, `PLUM_CONTROLLERS`, or a `.plum/cluster.env`
//! (written by `scripts/cluster.sh up`) in the current directory or one of its parents. And the
//! token to send them: `PLUM_TOKEN`, else the file named by `PLUM_TOKEN_FILE`, else (only for
//! controllers found in `.plum/cluster.env`) the file its `PLUM_TOKEN_FILE=` line names. The CA
//! to trust for `https://` controllers likewise: `PLUM_CA_FILE`, else (controllers from
//! `.plum/cluster.env` only) the file its `PLUM_CA_FILE=` line names.
//!
//! An address without a scheme gets `http://`, or `https://` when a CA file is in force.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::ClientError;

pub const ENV_VAR: &str = "PLUM_CONTROLLERS";
/// The token itself.
pub const TOKEN_ENV: &str = "PLUM_TOKEN";
/// A file holding the token (first non-empty line): keeps it out of the environment of
/// every child process and out of `ps`.
pub const TOKEN_FILE_ENV: &str = "PLUM_TOKEN_FILE";
/// A PEM file of the CA certificates to trust for `https://` controllers.
pub const CA_FILE_ENV: &str = "PLUM_CA_FILE";

/// The token in a token file's text: its first non-empty line, trimmed.
pub fn parse_token_file(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| !l.is_empty())
}

/// Reads a token file (see [`parse_token_file`]); an empty file is an error, not "no token".
pub fn read_token_file(path: &Path) -> Result<String, ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClientError::Config(format!("token file {}: {e}", path.display())))?;
    let token = parse_token_file(&text)
        .ok_or_else(|| ClientError::Config(format!("token file {} holds no token", path.display())))?;
    check_token(token).map_err(|e| ClientError::Config(format!("token file {}: {e}", path.display())))?;
    Ok(token.to_string())
}

/// A token must fit in an HTTP header. The error never repeats the token.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token holds spaces or characters an HTTP header cannot carry".into());
    }
    Ok(())
}

/// The token from `PLUM_TOKEN` (when set and not blank), else from the file `PLUM_TOKEN_FILE`
/// names, else none.
pub fn token_from_env() -> Result<Option<String>, ClientError> {
    token_from(std::env::var(TOKEN_ENV).ok(), std::env::var_os(TOKEN_FILE_ENV))
}

pub(crate) fn token_from(token: Option<String>, file: Option<OsString>) -> Result<Option<String>, ClientError> {
    if let Some(t) = token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        check_token(t).map_err(|e| ClientError::Config(format!("{TOKEN_ENV}: {e}")))?;
        return Ok(Some(t.to_string()));
    }
    match file.filter(|f| !f.is_empty()) {
        Some(f) => read_token_file(Path::new(&f)).map(Some),
        None => Ok(None),
    }
}

/// Splits `a,b,c`, trims, adds `http://` where no scheme is given, drops trailing slashes.
pub fn parse_list(list: &str) -> Result<Vec<String>, ClientError> {
    parse_list_with_tls(list, false)
}

/// [`parse_list`], adding `https://` instead where no scheme is given when `tls` (a CA file is
/// in force: the cluster serves HTTPS only). Explicit schemes are kept.
pub fn parse_list_with_tls(list: &str, tls: bool) -> Result<Vec<String>, ClientError> {
    let scheme = if tls { "https" } else { "http" };
    let urls: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let s = s.trim_end_matches('/');
            if s.contains("://") { s.to_string() } else { format!("{scheme}://{s}") }
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
    resolve_controllers(explicit, false).map(|r| r.urls)
}

/// Where the controllers are, and what `.plum/cluster.env` names to go with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub urls: Vec<String>,
    /// The `.plum/cluster.env` the controllers came from; `None` when they were given.
    pub env_file: Option<PathBuf>,
    /// That file's `PLUM_TOKEN_FILE=` (`scripts/cluster.sh up` names the admin token there),
    /// when the file it names exists: without one the cluster may simply not check tokens.
    pub token_file: Option<PathBuf>,
    /// That file's `PLUM_CA_FILE=` (the local cluster's CA), whether or not it exists: a cluster
    /// serving HTTPS cannot be reached without it, so loading it must say what is wrong.
    pub ca_file: Option<PathBuf>,
}

/// The controllers from `explicit`, else `PLUM_CONTROLLERS`, else the nearest
/// `.plum/cluster.env` (see [`resolve_from`]). `tls`: the caller has a CA of its own.
pub fn resolve_controllers(explicit: Option<&str>, tls: bool) -> Result<Resolved, ClientError> {
    let env = std::env::var(ENV_VAR).ok();
    let given = explicit.or(env.as_deref());
    let cwd = match given {
        Some(_) => PathBuf::new(),
        None => std::env::current_dir().map_err(|e| ClientError::Config(format!("current directory: {e}")))?,
    };
    resolve_from(given, &cwd, tls)
}

/// The controllers `given` (a list, see [`parse_list`]), else those of the nearest
/// `.plum/cluster.env` from `cwd` upwards, with the token and CA files that file names. Those
/// are never taken from there for controllers given otherwise: they belong to the local cluster.
/// Addresses without a scheme get `https://` when `tls` (the caller has a CA file of its own)
/// or when the env file names a CA file; else `http://`.
pub fn resolve_from(given: Option<&str>, cwd: &Path, tls: bool) -> Result<Resolved, ClientError> {
    if let Some(list) = given {
        return Ok(Resolved { urls: parse_list_with_tls(list, tls)?, env_file: None, token_file: None, ca_file: None });
    }
    let file = find_env_file(cwd).ok_or_else(|| {
        ClientError::Config(format!(
            "no controllers: pass them, set {ENV_VAR}, or start a local cluster (scripts/cluster.sh up)"
        ))
    })?;
    let text = std::fs::read_to_string(&file).map_err(|e| ClientError::Config(format!("{}: {e}", file.display())))?;
    let list = env_file_value(&text, ENV_VAR)
        .ok_or_else(|| ClientError::Config(format!("{} has no {ENV_VAR}= line", file.display())))?;
    // Relative paths are relative to the directory holding `.plum/`.
    let base = file.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    let named = |name| env_file_value(&text, name).filter(|f| !f.is_empty()).map(|f| base.join(f));
    let token_file = named(TOKEN_FILE_ENV).filter(|f| f.is_file());
    let ca_file = named(CA_FILE_ENV);
    let urls = parse_list_with_tls(&list, tls || ca_file.is_some())?;
    Ok(Resolved { urls, env_file: Some(file), token_file, ca_file })
}

/// `PLUM_CA_FILE`, when set and not empty.
pub fn ca_file_from_env() -> Option<PathBuf> {
    std::env::var_os(CA_FILE_ENV).filter(|f| !f.is_empty()).map(PathBuf::from)
}

/// The value of a `NAME=value` line of an env file (optionally `export`ed and quoted).
fn env_file_value(text: &str, name: &str) -> Option<String> {
    let value = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("export ").unwrap_or(l).trim_start().strip_prefix(name)?.strip_prefix('='))?;
    Some(value.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
}

/// The nearest `.plum/cluster.env`, from `start` upwards.
pub fn find_env_file(start: &Path) -> Option<PathBuf> {
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
    fn bare_addresses_get_https_with_a_ca_and_explicit_schemes_stay() {
        assert_eq!(
            parse_list_with_tls("h:1, http://h:2, https://h:3/", true).unwrap(),
            vec!["https://h:1", "http://h:2", "https://h:3"]
        );
        assert_eq!(parse_list_with_tls("h:1", false).unwrap(), vec!["http://h:1"]);
        let given = resolve_from(Some("h:1"), Path::new("/nonexistent"), true).unwrap();
        assert_eq!(
            given,
            Resolved { urls: vec!["https://h:1".into()], env_file: None, token_file: None, ca_file: None }
        );
    }

    /// A directory holding `.plum/cluster.env` with `text`, and a subdirectory to search from.
    fn cluster_dir(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".plum/cluster")).unwrap();
        std::fs::write(dir.path().join(".plum/cluster.env"), text).unwrap();
        let nested = dir.path().join("src/deep");
        std::fs::create_dir_all(&nested).unwrap();
        (dir, nested)
    }

    #[test]
    fn the_env_file_names_a_ca_file_relative_to_its_project() {
        let (dir, nested) =
            cluster_dir("PLUM_CONTROLLERS=127.0.0.1:7101,https://h:2\nPLUM_CA_FILE=.plum/cluster/ca.pem\n");
        let found = resolve_from(None, &nested, false).unwrap();
        assert_eq!(found.env_file.as_deref(), Some(dir.path().join(".plum/cluster.env").as_path()));
        assert_eq!(found.ca_file, Some(dir.path().join(".plum/cluster/ca.pem")), "named even before it exists");
        assert_eq!(found.urls, vec!["https://127.0.0.1:7101", "https://h:2"], "a CA line means HTTPS");
        assert_eq!(found.token_file, None);

        let (_dir, nested) = cluster_dir("PLUM_CONTROLLERS=h:1\nPLUM_CA_FILE=/etc/plum/ca.pem\n");
        assert_eq!(resolve_from(None, &nested, false).unwrap().ca_file, Some(PathBuf::from("/etc/plum/ca.pem")));

        // No CA line: plain HTTP, unless the caller has a CA of its own.
        let (_dir, nested) = cluster_dir("PLUM_CONTROLLERS=h:1\nPLUM_CA_FILE=\n");
        let found = resolve_from(None, &nested, false).unwrap();
        assert_eq!((found.urls, found.ca_file), (vec!["http://h:1".to_string()], None));
        assert_eq!(resolve_from(None, &nested, true).unwrap().urls, vec!["https://h:1"]);
    }

    #[test]
    fn the_env_files_token_and_ca_go_with_its_controllers_only() {
        let (dir, nested) = cluster_dir(
            "PLUM_CONTROLLERS=h:1\nPLUM_TOKEN_FILE=.plum/cluster/admin.token\nPLUM_CA_FILE=.plum/cluster/ca.pem\n",
        );
        std::fs::write(dir.path().join(".plum/cluster/admin.token"), "plum_admin\n").unwrap();
        let found = resolve_from(None, &nested, false).unwrap();
        assert_eq!(found.token_file, Some(dir.path().join(".plum/cluster/admin.token")));
        let given = resolve_from(Some("other:1"), &nested, false).unwrap();
        assert_eq!((given.token_file, given.ca_file, given.urls), (None, None, vec!["http://other:1".to_string()]));
    }

    #[test]
    fn env_file_lines() {
        let text = "PLUM_AGENTS=3\nexport PLUM_CONTROLLERS='h:1,h:2'\n PLUM_TOKEN_FILE=\"/a b/admin.token\"\n";
        assert_eq!(env_file_value(text, ENV_VAR).as_deref(), Some("h:1,h:2"));
        assert_eq!(env_file_value(text, TOKEN_FILE_ENV).as_deref(), Some("/a b/admin.token"));
        assert_eq!(env_file_value(text, "PLUM_TOKEN"), None, "a prefix of another name is not a match");
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

    const TOKEN: &str = "plum_0123456789ab_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_token_file_holds_its_first_non_empty_line() {
        assert_eq!(parse_token_file(&format!("\n  \n  {TOKEN}  \nsecond\n")), Some(TOKEN));
        assert_eq!(parse_token_file(&format!("{TOKEN}\r\n")), Some(TOKEN));
        assert_eq!(parse_token_file(" \n\t\n"), None);
        assert_eq!(parse_token_file(""), None);
    }

    #[test]
    fn the_token_comes_from_the_variable_then_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, format!("\n{TOKEN}\n")).unwrap();
        let from_file = token_from(None, Some(file.clone().into_os_string())).unwrap();
        assert_eq!(from_file.as_deref(), Some(TOKEN));
        let both = token_from(Some(" plum_x ".into()), Some(file.into_os_string())).unwrap();
        assert_eq!(both.as_deref(), Some("plum_x"), "the variable wins");
        assert_eq!(token_from(Some("  ".into()), None).unwrap(), None, "blank is unset");
        assert_eq!(token_from(None, Some("".into())).unwrap(), None);
        assert_eq!(token_from(None, None).unwrap(), None);
    }

    #[test]
    fn bad_token_files_are_errors_that_do_not_show_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(token_from(None, Some(missing.into_os_string())), Err(ClientError::Config(_))));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n \n").unwrap();
        let e = read_token_file(&empty).unwrap_err();
        assert!(e.to_string().contains("holds no token"), "{e}");
        let spaced = dir.path().join("spaced");
        std::fs::write(&spaced, "secret part two\n").unwrap();
        let e = read_token_file(&spaced).unwrap_err().to_string();
        assert!(e.contains("cannot carry") && !e.contains("secret"), "{e}");
        let e = token_from(Some("sec\u{7f}ret".into()), None).unwrap_err().to_string();
        assert!(e.contains(TOKEN_ENV) && !e.contains("sec"), "{e}");
    }
}
