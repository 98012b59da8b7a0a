//! plumctl's errors and the exit codes scripts rely on: one variant per code, so the mapping
//! from what the cluster answered to how the process ends lives in one place.

use std::fmt;

use plum_sdk::ClientError;
use plum_types::ErrorBody;

/// Exit codes (also in `--help` and the README).
pub mod exit {
    pub const OK: u8 = 0;
    /// The cluster answered with an error (a 4xx other than 404/409, or a 5xx).
    pub const REFUSED: u8 = 1;
    /// Bad arguments, an unreadable spec file, no controllers configured.
    pub const USAGE: u8 = 2;
    /// No replica answered, or none could reach a leader (`503 retryable`).
    pub const UNREACHABLE: u8 = 3;
    pub const NOT_FOUND: u8 = 4;
    /// `409`, e.g. a compare-and-set version mismatch or a rolling update in progress.
    pub const CONFLICT: u8 = 5;
    /// `503 outcomeUnknown`: the write may or may not have been applied.
    pub const OUTCOME_UNKNOWN: u8 = 6;
    /// `401`: no token, or one the cluster does not accept (malformed, unknown, revoked).
    pub const UNAUTHORIZED: u8 = 7;
    /// `403`: the token's role may not do this.
    pub const FORBIDDEN: u8 = 8;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlError {
    Usage(String),
    Unreachable(String),
    NotFound(String),
    Conflict(String),
    OutcomeUnknown(String),
    /// `401`: the cluster's message.
    Unauthorized(String),
    /// `403`: the cluster's message.
    Forbidden(String),
    /// Any other error status the cluster answered with.
    Refused {
        status: u16,
        message: String,
    },
    /// An answer plumctl could not make sense of, or a local failure (writing the output).
    Failed(String),
    /// The reader of our output went away (`plumctl kv ls | head`): stop quietly.
    BrokenPipe,
}

impl CtlError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => exit::USAGE,
            CtlError::Unreachable(_) => exit::UNREACHABLE,
            CtlError::NotFound(_) => exit::NOT_FOUND,
            CtlError::Conflict(_) => exit::CONFLICT,
            CtlError::OutcomeUnknown(_) => exit::OUTCOME_UNKNOWN,
            CtlError::Unauthorized(_) => exit::UNAUTHORIZED,
            CtlError::Forbidden(_) => exit::FORBIDDEN,
            CtlError::Refused { .. } | CtlError::Failed(_) => exit::REFUSED,
            CtlError::BrokenPipe => exit::OK,
        }
    }

    /// An error status with the body the cluster sent (`{"error", "retryable",
    /// "outcomeUnknown"}`, or anything else from something that is not a Plum replica).
    pub fn from_status(status: u16, body: &str) -> CtlError {
        let parsed: Option<ErrorBody> = serde_json::from_str(body).ok();
        let detail = match &parsed {
            Some(b) if !b.error.is_empty() => b.error.clone(),
            _ if body.trim().is_empty() => "no details".to_string(),
            _ => body.trim().to_string(),
        };
        let message = one_line(&format!("{detail} (HTTP {status})"));
        let outcome_unknown = parsed.as_ref().is_some_and(|b| b.outcome_unknown);
        let retryable = parsed.as_ref().is_some_and(|b| b.retryable);
        match status {
            401 => CtlError::Unauthorized(message),
            403 => CtlError::Forbidden(message),
            404 => CtlError::NotFound(message),
            409 => CtlError::Conflict(message),
            503 if outcome_unknown => CtlError::OutcomeUnknown(format!(
                "outcome unknown, the change may or may not have been applied: {message}"
            )),
            503 if retryable => CtlError::Unreachable(format!("no leader: {message}")),
            _ => CtlError::Refused { status, message },
        }
    }
}

impl From<ClientError> for CtlError {
    fn from(e: ClientError) -> CtlError {
        match e {
            // Not "unreachable or without a leader": the replicas are there, TLS failed.
            ClientError::Unreachable(detail) if e.is_tls() => CtlError::Unreachable(one_line(&format!(
                "cannot talk to the cluster over TLS: {}",
                shorten(&detail, 300)
            ))),
            ClientError::Unreachable(detail) => CtlError::Unreachable(one_line(&format!(
                "cluster unreachable or without a leader: {}",
                shorten(&detail, 300)
            ))),
            ClientError::Status { status, body } => CtlError::from_status(status, &body),
            ClientError::OutcomeUnknown(detail) => CtlError::OutcomeUnknown(one_line(&format!(
                "outcome unknown, the change may or may not have been applied: {}",
                shorten(&detail, 300)
            ))),
            ClientError::Config(detail) => CtlError::Usage(one_line(&format!("controllers: {detail}"))),
            ClientError::Decode(detail) => {
                CtlError::Failed(one_line(&format!("unexpected answer from the cluster: {}", shorten(&detail, 300))))
            }
            ClientError::Unauthorized(detail) => {
                CtlError::Unauthorized(one_line(&format!("{} (HTTP 401)", shorten(&detail, 300))))
            }
            ClientError::Forbidden(detail) => {
                CtlError::Forbidden(one_line(&format!("{} (HTTP 403)", shorten(&detail, 300))))
            }
        }
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtlError::Usage(m) | CtlError::Unreachable(m) | CtlError::Failed(m) => f.write_str(m),
            CtlError::NotFound(m) => write!(f, "not found: {m}"),
            CtlError::Conflict(m) => write!(f, "conflict: {m}"),
            CtlError::OutcomeUnknown(m) => f.write_str(m),
            CtlError::Unauthorized(m) => write!(f, "unauthorized: {m}"),
            CtlError::Forbidden(m) => write!(f, "forbidden: {m}"),
            CtlError::Refused { message, .. } => write!(f, "refused: {message}"),
            CtlError::BrokenPipe => f.write_str("output closed"),
        }
    }
}

/// Errors are printed as one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}...")
}

pub type Result<T, E = CtlError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(e: ClientError) -> u8 {
        CtlError::from(e).exit_code()
    }

    fn status(status: u16, body: &str) -> ClientError {
        ClientError::Status { status, body: body.to_string() }
    }

    #[test]
    fn exit_codes_follow_the_answer() {
        assert_eq!(code_of(ClientError::Unreachable("http://127.0.0.1:1: connection refused".into())), 3);
        assert_eq!(code_of(status(400, r#"{"error":"`value` is required"}"#)), 1);
        assert_eq!(code_of(status(404, r#"{"error":"key `a/b` not found"}"#)), 4);
        assert_eq!(code_of(status(409, r#"{"error":"version mismatch","detail":{"currentVersion":1}}"#)), 5);
        assert_eq!(code_of(status(503, r#"{"error":"leader lost","outcomeUnknown":true}"#)), 6);
        assert_eq!(code_of(status(503, r#"{"error":"no leader","retryable":true}"#)), 3);
        assert_eq!(code_of(status(500, "boom")), 1);
        assert_eq!(code_of(status(503, "")), 1);
        assert_eq!(code_of(ClientError::Decode("expected value".into())), 1);
        assert_eq!(code_of(ClientError::OutcomeUnknown("timed out after sending".into())), 6);
        assert_eq!(code_of(ClientError::Config("no controller addresses".into())), 2);
        assert_eq!(code_of(ClientError::Unauthorized("token revoked".into())), 7);
        assert_eq!(code_of(ClientError::Forbidden("role read may not write".into())), 8);
        assert_eq!(code_of(status(401, r#"{"error":"missing token"}"#)), 7);
        assert_eq!(code_of(status(403, "")), 8);
        assert_eq!(CtlError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CtlError::BrokenPipe.exit_code(), 0);
    }

    #[test]
    fn messages_are_one_line_and_name_the_server_error() {
        let e = CtlError::from(status(404, "{\"error\":\"key `a/b`\\nnot found\"}"));
        assert_eq!(e.to_string(), "not found: key `a/b` not found (HTTP 404)");
        let e = CtlError::from(status(502, "<html>\n<body>bad gateway</body>\n</html>"));
        assert_eq!(e.to_string(), "refused: <html> <body>bad gateway</body> </html> (HTTP 502)");
        let e = CtlError::from(ClientError::Forbidden("role `read`\nmay not write".into()));
        assert_eq!(e.to_string(), "forbidden: role `read` may not write (HTTP 403)");
        let e = CtlError::from(ClientError::Unreachable("a\nb".into()));
        assert!(!e.to_string().contains('\n'));
        let tls = "https://h:1: TLS handshake failed: invalid peer certificate: UnknownIssuer (hint)";
        let e = CtlError::from(ClientError::Unreachable(tls.into()));
        assert_eq!(e.exit_code(), 3);
        assert_eq!(e.to_string(), format!("cannot talk to the cluster over TLS: {tls}"));
    }
}
