//! What a call to the cluster can end in.

use plum_types::ErrorBody;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// No replica answered in time (or none could take the request: no leader). Nothing was
    /// applied, as far as the client can tell; for a write whose outcome may be unknown see
    /// [`ClientError::OutcomeUnknown`].
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
}

impl ClientError {
    /// The HTTP status, for an error the cluster answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
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
