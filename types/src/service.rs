use serde::{Deserialize, Serialize};

use crate::endpoint::EndpointSpec;
use crate::lenient::null_as_default;

/// `POST /v1/services/register`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegisterRequest {
    #[serde(deserialize_with = "null_as_default")]
    pub instance_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub endpoints: Vec<EndpointSpec>,
    /// The instance's heartbeat TTL (bounded by the controller); default about 15 s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// Replace the instance's endpoints with exactly these. Without it, registration merges:
    /// endpoints are keyed by (service, ip, port, protocol) and those not named stay.
    #[serde(deserialize_with = "null_as_default", skip_serializing_if = "std::ops::Not::not")]
    pub replace: bool,
    /// Services this instance depends on (for services not run by agents, which have no
    /// `dependsOn`): edges of `GET /v1/topology`. Empty: keep what it declared before (with
    /// `replace`: declare none).
    #[serde(deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<String>,
}

/// `POST /v1/services/heartbeat`: `{"instanceId"}`, `{"instanceId","health":[...]}` or
/// `{"instanceId","endpoints":[...]}` (the last one is a plain renewal).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceHeartbeat {
    #[serde(deserialize_with = "null_as_default")]
    pub instance_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Vec<EndpointSpec>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<EndpointSpec>>,
    /// Changes the instance's TTL when it differs from the registered one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// Health of one endpoint of an instance, as the controller records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    pub service_name: String,
    /// `None` matches every endpoint of the service on that instance.
    pub port: Option<u16>,
    pub healthy: bool,
}

/// `POST /v1/services/register/batch`: several registrations in one call (weak networks).
/// All-or-nothing: one bad item refuses the whole batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RegisterBatch {
    #[serde(deserialize_with = "null_as_default")]
    pub items: Vec<RegisterRequest>,
}

/// `POST /v1/services/heartbeat/batch`: several instance heartbeats in one call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeartbeatBatch {
    #[serde(deserialize_with = "null_as_default")]
    pub items: Vec<ServiceHeartbeat>,
}

/// The answer to a batch call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BatchResponse {
    /// Items applied (registrations) or recorded (heartbeats).
    pub count: usize,
    /// Heartbeat batches only: ids of instances the cluster does not know (never registered,
    /// or forgotten after being dead for the retention period). Nothing was recorded for
    /// them; the client should register them again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<Vec<String>>,
    /// How often to heartbeat these instances: a quarter of the shortest TTL in force among
    /// the known ones (absent when none is known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_shapes() {
        let b: HeartbeatBatch =
            serde_json::from_str(r#"{"items": [{"instanceId": "a"}, {"instanceId": "b"}]}"#).unwrap();
        assert_eq!(b.items.len(), 2);
        let b: RegisterBatch = serde_json::from_str(r#"{"items": null}"#).unwrap();
        assert!(b.items.is_empty());
        let registered =
            serde_json::to_value(BatchResponse { count: 2, unknown: None, heartbeat_interval_ms: None }).unwrap();
        assert_eq!(registered, serde_json::json!({"count": 2}));
        let renewed = serde_json::to_value(BatchResponse {
            count: 1,
            unknown: Some(vec!["x".into()]),
            heartbeat_interval_ms: Some(250),
        })
        .unwrap();
        assert_eq!(renewed, serde_json::json!({"count": 1, "unknown": ["x"], "heartbeatIntervalMs": 250}));
    }
}
