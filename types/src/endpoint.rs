use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::lenient::null_as_default;

/// An endpoint as discovery returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub service_name: String,
    pub instance_id: String,
    pub node_id: String,
    pub ip: String,
    pub port: u16,
    pub protocol: String,
    pub version: String,
    pub labels: BTreeMap<String, String>,
    pub healthy: bool,
    /// Unix seconds of the instance's last heartbeat.
    pub last_seen: u64,
}

/// An endpoint as clients send it in registrations ("Endpoint-like": every field optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointSpec {
    #[serde(deserialize_with = "null_as_default")]
    pub service_name: String,
    #[serde(deserialize_with = "null_as_default")]
    pub port: u32,
    #[serde(deserialize_with = "null_as_default")]
    pub protocol: String,
    #[serde(deserialize_with = "null_as_default")]
    pub version: String,
    #[serde(deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Some clients send the address and node only per endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Health as reported in a service heartbeat (`health: [...]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
}
