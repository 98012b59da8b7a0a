//! What a call to the cluster can end in.

use plum_types::ErrorBody;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// No replica answered in time (or none could take the request: no leader). Nothing was
    /// applied: a write whose outcome may be unknown, even one resent after a lost attempt,
    /// ends as [`ClientError::OutcomeUnknown`] instead.
    #[error("no controller replica answered: {0}")]
    Unreachable(String),
    /// A replica answered with an error status (4xx, or a 5xx that is not retryable).
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    /// A write that may or may not have been applied (the leader was lost, or the request timed
    /// out after it was sent). Only idempotent writes are resent after this; read before
    /// deciding for the others.
    #[error("outcome unknown (the write may or may not have been applied): {0}")]
    OutcomeUnknown(String),
    #[error("bad answer: {0}")]
    Decode(String),
    /// The client was given something it cannot use (no addresses, a malformed one).
    #[error("client configuration: {0}")]
    Config(String),
    /// `401`: no token, or one the cluster does not accept (malformed, unknown, revoked). The
    /// cluster's message. Never retried elsewhere: every replica judges a token alike.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// `403`: the token is valid but its role may not make this call. The cluster's message.
    #[error("forbidden: {0}")]
    Forbidden(String),
}

/// Begins the description of an attempt whose TLS handshake failed (see [`ClientError::is_tls`]).
pub(crate) const TLS_FAILED: &str = "TLS handshake failed";

impl ClientError {
    /// No replica answered, the last one tried because the TLS handshake failed (a certificate
    /// not signed by the CA trusted, or not naming the address; HTTPS spoken to plain HTTP):
    /// trying again will not help until the addresses or the CA file change.
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientError::Unreachable(m) if m.contains(TLS_FAILED))
    }

    /// The HTTP status, for an error the cluster answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            ClientError::Unauthorized(_) => Some(401),
            ClientError::Forbidden(_) => Some(403),
            _ => None,
        }
    }

    /// `401` or `403`: retrying with the same token will not help.
    pub fn is_auth(&self) -> bool {
        matches!(self, ClientError::Unauthorized(_) | ClientError::Forbidden(_))
    }

    /// The cluster's error body (`{"error", "retryable", "outcomeUnknown", ...}`), when it sent one.
    pub fn error_body(&self) -> Option<ErrorBody> {
        match self {
            ClientError::Status { body, .. } => serde_json::from_str(body).ok(),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_errors_keep_their_status() {
        let e = ClientError::Unauthorized("token revoked".into());
        assert_eq!((e.status(), e.is_auth()), (Some(401), true));
        assert_eq!(e.to_string(), "unauthorized: token revoked");
        let e = ClientError::Forbidden("role read may not write".into());
        assert_eq!((e.status(), e.is_auth()), (Some(403), true));
        assert!(!ClientError::Status { status: 404, body: String::new() }.is_auth());
    }
}
