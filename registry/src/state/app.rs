//! Plugs the registry into the raft store and tells waiters when the view moved.

use plum_raft_store::{AppError, DataWrites, StateMachineApp};
use tokio::sync::watch;

use std::sync::Arc;

use super::command::{Command, CommandResult};
use super::leases::LeaseObserver;
use super::view::Registry;

pub struct RegistryApp {
    pub registry: Registry,
    applied: watch::Sender<u64>,
    /// Told of lease changes (the liveness tracker); called under the registry's write lock.
    leases: Option<Arc<dyn LeaseObserver>>,
    /// Told of every command before it applies (the metrics that follow the log).
    commands: Option<Arc<dyn ApplyObserver>>,
}

/// Sees every command just before it applies, with the registry as it was: metrics that follow
/// the log (expiries, reschedules, failover durations) read what a command is about to change.
/// Called under the registry's write lock: must be quick and must not touch the registry again.
pub trait ApplyObserver: Send + Sync {
    fn applying(&self, command: &Command, before: &Registry);
}

impl RegistryApp {
    pub fn new(leases: Option<Arc<dyn LeaseObserver>>) -> (RegistryApp, watch::Receiver<u64>) {
        let (applied, rx) = watch::channel(0);
        (RegistryApp { registry: Registry::default(), applied, leases, commands: None }, rx)
    }

    /// Shows every command to `observer` before it applies.
    pub fn observe_commands(&mut self, observer: Arc<dyn ApplyObserver>) {
        self.commands = Some(observer);
    }
}

impl StateMachineApp for RegistryApp {
    type Command = Command;
    type Response = CommandResult;

    fn apply(&mut self, index: u64, command: &Command, writes: &mut DataWrites) -> CommandResult {
        let _span = tracing::debug_span!(target: crate::cluster::SPAN_TARGET, "apply", index).entered();
        if let Some(commands) = &self.commands {
            commands.applying(command, &self.registry);
        }
        let Some(observer) = &self.leases else {
            let result = self.registry.apply(index, command, writes);
            self.applied.send_replace(index);
            return result;
        };
        let revived = command.op.revivals(&self.registry);
        let result = self.registry.apply(index, command, writes);
        let heard_from = command.op.heard_from();
        for (kind, id) in revived.into_iter().chain(command.op.lease_ids()) {
            observer.lease_changed(kind, id, self.registry.lease(kind, id), heard_from);
        }
        self.applied.send_replace(index);
        result
    }

    fn skip(&mut self, index: u64) -> CommandResult {
        self.registry.applied_index = index;
        self.applied.send_replace(index);
        CommandResult::Done
    }

    fn restore(
        &mut self,
        applied_index: u64,
        rows: &mut dyn Iterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<(), AppError> {
        self.registry = Registry::from_rows(applied_index, rows)?;
        self.applied.send_replace(applied_index);
        Ok(())
    }
}
