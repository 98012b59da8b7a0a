//! Client authentication: roles, and the token calls (`/v1/tokens`).
//!
//! A client sends its token as `Authorization: Bearer <token>`. What each role may do is
//! decided by the controller (`registry/src/auth/policy.rs`); `docs/SECURITY.md` lists it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a token (or an anonymous client) may do. Every role may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Discovery and every other read.
    Read,
    /// Reads, and heartbeats, registrations and status reports for its own node only.
    Agent,
    /// Reads, KV writes, registration of any node or instance.
    Write,
    /// Everything: deployments, membership, tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Read, Role::Agent, Role::Write, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Agent => "agent",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`: expected read, agent, write or admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    /// What the token is for (shown in listings): e.g. the service or person using it.
    #[serde(default)]
    pub name: String,
    /// `read`, `agent`, `write` or `admin` (kept as text so that a bad one is a clear 400).
    #[serde(default)]
    pub role: String,
    /// The node an `agent` token acts for (required for `agent`, refused for the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
}

/// The answer to `POST /v1/tokens`: the only time the token itself is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// `GET /v1/auth/whoami`: how the controller sees the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    /// `admin` when client authentication is switched off (everything is allowed).
    pub role: Role,
    /// `None` for an anonymous caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    pub auth_enabled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_from_their_names_only() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        assert!("Admin".parse::<Role>().is_err());
        assert!("".parse::<Role>().is_err());
    }
}
