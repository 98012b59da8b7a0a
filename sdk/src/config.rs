//! Where the controllers are: an explicit list, `PLUM_CONTROLLERS`, or a `.plum/cluster.env`
//! (written by `scripts/cluster.sh up`) in the current directory or one of its parents. And the
//! token to send them: `PLUM_TOKEN`, else the file named by `PLUM_TOKEN_FILE`, else (only for
//! controllers found in `.plum/cluster.env`) the file its `PLUM_TOKEN_FILE=` line names.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::ClientError;

pub const ENV_VAR: &str = "PLUM_CONTROLLERS";
/// The token itself.
pub const TOKEN_ENV: &str = "PLUM_TOKEN";
/// A file holding the token (first non-empty line): keeps it out of the environment of
/// every child process and out of `ps`.
pub const TOKEN_FILE_ENV: &str = "PLUM_TOKEN_FILE";

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

fn token_from(token: Option<String>, file: Option<OsString>) -> Result<Option<String>, ClientError> {
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
    resolve_with_token_file(explicit).map(|(urls, _)| urls)
}

/// The controllers as [`resolve`] finds them and, when they come from `.plum/cluster.env`, the
/// token file that file names (`scripts/cluster.sh up` records the admin token's there) if it
/// exists. A token file is never taken from there for controllers given otherwise: that token
/// belongs to the local cluster.
pub fn resolve_with_token_file(explicit: Option<&str>) -> Result<(Vec<String>, Option<PathBuf>), ClientError> {
    if let Some(list) = explicit {
        return Ok((parse_list(list)?, None));
    }
    if let Ok(list) = std::env::var(ENV_VAR) {
        return Ok((parse_list(&list)?, None));
    }
    let cwd = std::env::current_dir().map_err(|e| ClientError::Config(e.to_string()))?;
    let file = find_env_file(&cwd).ok_or_else(|| {
        ClientError::Config(format!(
            "no controllers: pass them, set {ENV_VAR}, or start a local cluster (scripts/cluster.sh up)"
        ))
    })?;
    let text = std::fs::read_to_string(&file).map_err(|e| ClientError::Config(format!("{}: {e}", file.display())))?;
    let list = env_file_value(&text, ENV_VAR)
        .ok_or_else(|| ClientError::Config(format!("{} has no {ENV_VAR}= line", file.display())))?;
    // Relative paths are relative to the directory holding `.plum/`.
    let base = file.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    let token_file =
        env_file_value(&text, TOKEN_FILE_ENV).filter(|f| !f.is_empty()).map(|f| base.join(f)).filter(|f| f.is_file());
    Ok((parse_list(&list)?, token_file))
}

/// The value of a `NAME=value` line of an env file (optionally `export`ed and quoted).
fn env_file_value(text: &str, name: &str) -> Option<String> {
    let value = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("export ").unwrap_or(l).trim_start().strip_prefix(name)?.strip_prefix('='))?;
    Some(value.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
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
