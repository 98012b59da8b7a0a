//! The openraft type configuration of the controller. openraft's types stay in this module tree.

use openraft::{BasicNode, EntryPayload};
use plum_raft_store::StoreTypes;

use crate::state::{Command, CommandResult, RegistryApp};

openraft::declare_raft_types!(
    /// Raft types of the registry: commands, their results, `u64` ids, nodes known by address.
    pub TypeConfig: D = Command, R = CommandResult, Node = BasicNode
);

impl StoreTypes for TypeConfig {
    fn app_data(entry: &Self::Entry) -> Option<&Command> {
        match &entry.payload {
            EntryPayload::Normal(command) => Some(command),
            _ => None,
        }
    }
}

pub type StateMachine = plum_raft_store::StateMachine<TypeConfig, RegistryApp>;
pub type LogStore = plum_raft_store::LogStore<TypeConfig>;
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;
