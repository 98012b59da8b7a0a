use serde::{Deserialize, Serialize};

use crate::lenient::null_as_default;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvType {
    #[default]
    String,
    Int,
    Double,
    Bool,
    Bytes,
}

impl KvType {
    pub fn parse(s: &str) -> Option<KvType> {
        match s {
            "" | "string" => Some(KvType::String),
            "int" => Some(KvType::Int),
            "double" => Some(KvType::Double),
            "bool" => Some(KvType::Bool),
            "bytes" => Some(KvType::Bytes),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KvType::String => "string",
            KvType::Int => "int",
            KvType::Double => "double",
            KvType::Bool => "bool",
            KvType::Bytes => "bytes",
        }
    }
}

/// `PUT /v1/kv/{ns}/{key}`. `type` is kept as text so an unknown one is a clear 400.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KvPutRequest {
    pub value: Option<String>,
    #[serde(rename = "type", deserialize_with = "null_as_default")]
    pub kind: String,
    /// Compare-and-set: write only when the key's current version is this (0: absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_version: Option<u64>,
    /// Makes a retried write safe: the same id on the same key is applied once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Response of a single put: `{"namespace","key","value","type"}` plus version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KvWritten {
    pub namespace: String,
    pub key: String,
    pub value: String,
    #[serde(rename = "type")]
    pub kind: KvType,
    pub version: u64,
}

/// A stored key as reads return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KvItem {
    pub namespace: String,
    pub key: String,
    pub value: String,
    #[serde(rename = "type")]
    pub kind: KvType,
    /// Unix seconds.
    pub updated_at: u64,
    /// Number of writes since the key was created (1 for a new key).
    pub version: u64,
    /// Log index of the last write.
    pub mod_index: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KvBatchItem {
    #[serde(deserialize_with = "null_as_default")]
    pub key: String,
    pub value: Option<String>,
    #[serde(rename = "type", deserialize_with = "null_as_default")]
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KvBatchRequest {
    #[serde(deserialize_with = "null_as_default")]
    pub items: Vec<KvBatchItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KvBatchResponse {
    pub namespace: String,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KvNamespaces {
    pub namespaces: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KvKeys {
    pub namespace: String,
    pub keys: Vec<String>,
}

/// One version of a key, as `GET /v1/kv/{ns}/key/{key}/history` lists it (newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KvVersion {
    /// The key's version after this write (a deletion: the version it deleted).
    pub version: u64,
    /// Log index of this write: unique, also across a key deleted and made again.
    pub mod_index: u64,
    /// Empty for a deletion.
    pub value: String,
    #[serde(rename = "type")]
    pub kind: KvType,
    /// Unix milliseconds.
    pub updated_ms: u64,
    pub deleted: bool,
}

/// `GET /v1/kv/{ns}/key/{key}/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KvHistory {
    pub namespace: String,
    pub key: String,
    pub versions: Vec<KvVersion>,
}

/// `POST /v1/kv/{ns}/key/{key}/rollback`: write the value the key had at `modIndex` (or at
/// the newest `version` of that number) again, as a new version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KvRollbackRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mod_index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `POST /v1/kv/{ns}/copy`: copy the keys under `prefix` into namespace `to` (an environment
/// promoted to the next: `dev` to `prod`), in one write. `overwrite: false` leaves keys `to`
/// already has. Resending it is harmless: keys already at the value are not written again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KvCopyRequest {
    #[serde(deserialize_with = "null_as_default")]
    pub to: String,
    #[serde(deserialize_with = "null_as_default")]
    pub prefix: String,
    #[serde(deserialize_with = "null_as_default")]
    pub overwrite: bool,
}

/// The answer to a copy: which keys were written, and which `to` already had and kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KvCopied {
    pub from: String,
    pub to: String,
    pub copied: Vec<String>,
    pub kept: Vec<String>,
}
