//! A tiny key-value application and type configuration for exercising the store in tests,
//! the crash test and the benchmark. Not used by the controller.

use std::collections::BTreeMap;
use std::fmt;

use openraft::EntryPayload;
use serde::{Deserialize, Serialize};

use crate::app::{AppError, DataWrites, StateMachineApp};
use crate::types::StoreTypes;

openraft::declare_raft_types!(
    /// Type configuration of the test application.
    pub TestConfig: D = KvCommand, R = KvResponse
);

impl StoreTypes for TestConfig {
    fn app_data(entry: &Self::Entry) -> Option<&KvCommand> {
        match &entry.payload {
            EntryPayload::Normal(command) => Some(command),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    Set { key: String, value: String },
    Delete { key: String },
}

impl fmt::Display for KvCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvCommand::Set { key, value } => write!(f, "set {key}={value}"),
            KvCommand::Delete { key } => write!(f, "delete {key}"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvResponse {
    pub previous: Option<String>,
}

/// The view: a sorted map plus the index of the last entry it reflects.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KvApp {
    pub map: BTreeMap<String, String>,
    pub applied_index: u64,
}

impl StateMachineApp for KvApp {
    type Command = KvCommand;
    type Response = KvResponse;

    fn apply(&mut self, index: u64, command: &KvCommand, writes: &mut DataWrites) -> KvResponse {
        self.applied_index = index;
        let previous = match command {
            KvCommand::Set { key, value } => {
                writes.put(key.as_bytes(), value.as_bytes());
                self.map.insert(key.clone(), value.clone())
            }
            KvCommand::Delete { key } => {
                writes.delete(key.as_bytes());
                self.map.remove(key)
            }
        };
        KvResponse { previous }
    }

    fn skip(&mut self, index: u64) -> KvResponse {
        self.applied_index = index;
        KvResponse::default()
    }

    fn restore(
        &mut self,
        applied_index: u64,
        rows: &mut dyn Iterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<(), AppError> {
        let mut map = BTreeMap::new();
        for (k, v) in rows {
            map.insert(String::from_utf8(k)?, String::from_utf8(v)?);
        }
        self.map = map;
        self.applied_index = applied_index;
        Ok(())
    }
}
