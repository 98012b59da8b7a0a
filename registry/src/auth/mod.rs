//! Client authentication and authorization: tokens with roles (`token.rs`), what each role
//! may call (`policy.rs`), the bootstrap admin token (`bootstrap.rs`). The API's door is
//! `api/client_guard.rs`. Peers authenticate differently (`cluster::peer_auth`).

pub mod bootstrap;
pub mod policy;
pub mod token;

use std::path::PathBuf;

use plum_types::Role;

/// How this replica treats clients.
#[derive(Debug, Clone)]
pub struct ClientAuthConfig {
    /// `false` only with `--insecure-no-client-auth`: every request is allowed.
    pub enabled: bool,
    /// The role of a request without a token (Plum's Go clients send none); `None`: refused.
    pub anonymous: Option<Role>,
    /// Where the bootstrap admin token is (written on first start when absent).
    pub admin_token_file: Option<PathBuf>,
}

impl ClientAuthConfig {
    pub fn disabled() -> ClientAuthConfig {
        ClientAuthConfig { enabled: false, anonymous: None, admin_token_file: None }
    }
}

/// Who made a request, as the client guard established it (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    /// `None`: anonymous, or authentication is off.
    pub token_id: Option<String>,
    /// The node an `agent` token acts for.
    pub node_id: Option<String>,
    pub auth_enabled: bool,
}

impl Caller {
    /// Everything allowed: client authentication is off.
    pub fn unchecked() -> Caller {
        Caller { role: Role::Admin, token_id: None, node_id: None, auth_enabled: false }
    }

    /// Whether the caller may act for `node_id` (heartbeat it, register on it): an `agent`
    /// token only for its own node; the roles that may act for nodes at all, for any.
    pub fn may_act_for(&self, node_id: &str) -> bool {
        self.role != Role::Agent || self.node_id.as_deref() == Some(node_id)
    }

    /// For logs: the token id, or `anonymous`.
    pub fn name(&self) -> &str {
        self.token_id.as_deref().unwrap_or("anonymous")
    }
}
