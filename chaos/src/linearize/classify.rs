//! What an SDK answer proves about an operation. The rule for writes: once a request may have
//! been sent, an error is `Unknown` unless its kind proves the write was not applied.

use plum_sdk::ClientError;
use plum_types::KvItem;

use super::history::Outcome;

/// A write (`Kv::put`, which carries a request id and is resent after an unknown outcome).
pub fn write(result: &Result<plum_types::KvWritten, ClientError>) -> Outcome {
    let Err(e) = result else { return Outcome::Ok(None) };
    match e {
        // Never sent: the request could not be built, or no address was usable.
        ClientError::Config(_) => Outcome::Fail,
        // Refused at the door (client_guard) before any handler, on every replica alike.
        ClientError::Unauthorized(_) | ClientError::Forbidden(_) => Outcome::Fail,
        // 408 and 429 are about this attempt, not the request: an earlier attempt the SDK
        // lost may have been applied before it resent the write and got this.
        ClientError::Status { status: 408 | 429, .. } => Outcome::Unknown,
        // Other 4xx depend on the request alone (validation, size, a 409 decided by apply
        // without a change), so every attempt got the same: none was applied.
        ClientError::Status { status, .. } if (400..500).contains(status) => Outcome::Fail,
        // A 2xx whose body did not decode: the write was answered as applied.
        ClientError::Decode(_) => Outcome::Ok(None),
        // No attempt may have been applied: the SDK reports a write resent after a lost
        // attempt as `OutcomeUnknown`, never as `Unreachable`.
        ClientError::Unreachable(_) => Outcome::Fail,
        // 5xx and lost answers.
        ClientError::Status { .. } | ClientError::OutcomeUnknown(_) => Outcome::Unknown,
    }
}

/// A linearizable read (`Kv::get_consistent`; `None`: the key is absent). Any error says
/// nothing about the register.
pub fn read(result: Result<Option<KvItem>, ClientError>) -> Outcome {
    match result {
        Ok(item) => Outcome::Ok(item.map(|i| i.value)),
        Err(ClientError::Status { status, .. }) if (400..500).contains(&status) => Outcome::Fail,
        Err(ClientError::Config(_) | ClientError::Unauthorized(_) | ClientError::Forbidden(_)) => Outcome::Fail,
        Err(_) => Outcome::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plum_types::{KvType, KvWritten};

    fn status(status: u16, body: &str) -> ClientError {
        ClientError::Status { status, body: body.into() }
    }

    #[test]
    fn a_write_fails_only_when_the_error_proves_it() {
        let written =
            KvWritten { namespace: "n".into(), key: "k".into(), value: "v".into(), kind: KvType::String, version: 1 };
        assert_eq!(write(&Ok(written)), Outcome::Ok(None));
        assert_eq!(write(&Err(status(400, "{}"))), Outcome::Fail);
        assert_eq!(write(&Err(status(409, "{}"))), Outcome::Fail);
        assert_eq!(write(&Err(ClientError::Forbidden("read role".into()))), Outcome::Fail);
        assert_eq!(write(&Err(ClientError::Config("no addresses".into()))), Outcome::Fail);
        assert_eq!(write(&Err(status(500, "{}"))), Outcome::Unknown);
        assert_eq!(write(&Err(status(408, "{}"))), Outcome::Unknown);
        assert_eq!(write(&Err(ClientError::OutcomeUnknown("leader lost".into()))), Outcome::Unknown);
        assert_eq!(write(&Err(ClientError::Unreachable("deadline passed".into()))), Outcome::Fail);
        assert_eq!(write(&Err(ClientError::Decode("cut".into()))), Outcome::Ok(None));
    }

    #[test]
    fn a_read_tells_absent_from_failed() {
        assert_eq!(read(Ok(None)), Outcome::Ok(None));
        assert_eq!(read(Err(status(400, r#"{"error":"bad key"}"#))), Outcome::Fail);
        assert_eq!(read(Err(ClientError::Unreachable("x".into()))), Outcome::Unknown);
        assert_eq!(read(Err(status(502, ""))), Outcome::Unknown);
    }
}
