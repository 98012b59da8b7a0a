//! The `version` filter of discovery: an exact version (the original API's meaning, kept for
//! its clients), or a semver range when the value starts with a comparison operator or holds
//! several comparators (`^1.2`, `~1.4.0`, `>=1.0, <2.0`, `*`). One parser for the controller and
//! the SDK, so both filter alike.

use semver::{Version, VersionReq};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionFilter {
    Exact(String),
    Range(VersionReq),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a semver range: {reason}")]
pub struct VersionFilterError {
    pub input: String,
    pub reason: String,
}

impl VersionFilter {
    pub fn parse(input: &str) -> Result<VersionFilter, VersionFilterError> {
        let trimmed = input.trim();
        let is_range = trimmed.starts_with(['^', '~', '>', '<', '=', '*']) || trimmed.contains(',');
        if !is_range {
            return Ok(VersionFilter::Exact(input.to_string()));
        }
        VersionReq::parse(&comma_separated(trimmed))
            .map(VersionFilter::Range)
            .map_err(|e| VersionFilterError { input: input.to_string(), reason: e.to_string() })
    }

    /// Whether an endpoint of `version` passes. A version that is not semver (`v2`, `latest`)
    /// only ever matches exactly.
    pub fn matches(&self, version: &str) -> bool {
        match self {
            VersionFilter::Exact(v) => v == version,
            VersionFilter::Range(req) => Version::parse(version.trim_start_matches('v')).is_ok_and(|v| req.matches(&v)),
        }
    }
}

/// `>=1.2 <2` (npm's and Compose users' spelling: comparators separated by spaces) as the
/// `semver` crate reads it, `>=1.2, <2`. A space after an operator (`>= 1.2`) stays.
fn comma_separated(range: &str) -> String {
    let mut out = String::new();
    for token in range.split_whitespace() {
        let starts_comparator = token.starts_with(['^', '~', '>', '<', '=', '*']);
        let after_version = out.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '*');
        if !out.is_empty() {
            out.push_str(if starts_comparator && after_version { ", " } else { " " });
        }
        out.push_str(token);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_versions_match_exactly_as_the_original_api_did() {
        let f = VersionFilter::parse("1.2").unwrap();
        assert!(f.matches("1.2"));
        assert!(!f.matches("1.2.0"), "exact text, not semver equivalence");
    }

    #[test]
    fn ranges_match_by_semver() {
        let caret = VersionFilter::parse("^1.2").unwrap();
        assert!(caret.matches("1.2.0") && caret.matches("1.9.3") && caret.matches("v1.4.0"));
        assert!(!caret.matches("2.0.0") && !caret.matches("1.1.9") && !caret.matches("latest"));
        let both = VersionFilter::parse(">=1.0, <2.0").unwrap();
        assert!(both.matches("1.5.0") && !both.matches("2.0.0"));
        let spaced = VersionFilter::parse(">=1.2 <2").unwrap();
        assert!(
            spaced.matches("1.2.0") && spaced.matches("1.9.9") && !spaced.matches("2.0.0") && !spaced.matches("1.1.0")
        );
        let operator_apart = VersionFilter::parse(">= 1.2, < 2").unwrap();
        assert!(operator_apart.matches("1.3.0") && !operator_apart.matches("2.1.0"));
        assert!(VersionFilter::parse("*").unwrap().matches("0.1.0"));
    }

    #[test]
    fn a_malformed_range_is_an_error_not_a_silent_exact_match() {
        let e = VersionFilter::parse("^one").unwrap_err();
        assert!(e.to_string().contains("^one"));
    }
}
