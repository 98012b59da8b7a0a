use serde::{Deserialize, Serialize};

/// Every error response: `{"error": "...", ...}` plus optional detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub error: String,
    /// True only when the request certainly was not applied (no leader yet, leader changed
    /// before it was proposed): sending it again is safe.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retryable: bool,
    /// True when the write may or may not have been applied (the leader was lost while it was
    /// in flight). Never `retryable`: only a request made idempotent (KV `requestId`, an upsert)
    /// may be sent again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outcome_unknown: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>) -> Self {
        ErrorBody {
            error: error.into(),
            retryable: false,
            outcome_unknown: false,
            leader_id: None,
            leader_addr: None,
            detail: None,
        }
    }
}
