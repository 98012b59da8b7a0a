//! The small trait through which an application's deterministic state machine plugs in.

/// Errors an application reports while rebuilding its view.
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

/// One durable change to the application's data column family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// The durable changes of the commands applied in one batch.
///
/// The store writes them together with `last_applied` in one atomic RocksDB batch.
#[derive(Debug, Default)]
pub struct DataWrites {
    ops: Vec<DataOp>,
}

impl DataWrites {
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(DataOp::Put(key.into(), value.into()));
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(DataOp::Delete(key.into()));
    }

    pub fn ops(&self) -> &[DataOp] {
        &self.ops
    }

    pub fn into_ops(self) -> Vec<DataOp> {
        self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A deterministic state machine with an in-memory view and a durable copy.
///
/// `apply` must not read clocks, randomness, the network or the environment: two replicas that
/// apply the same commands must end up with identical data.
pub trait StateMachineApp: Send + Sync + 'static {
    type Command;
    type Response: Default;

    /// Applies one committed command at log `index`, updating the in-memory view and staging its
    /// durable changes in `writes`.
    fn apply(&mut self, index: u64, command: &Self::Command, writes: &mut DataWrites) -> Self::Response;

    /// Notes that entry `index` carried no command (blank or membership entry) and returns
    /// the response its proposer receives.
    fn skip(&mut self, index: u64) -> Self::Response {
        let _ = index;
        Self::Response::default()
    }

    /// Replaces the whole in-memory view with `rows` (the durable data, in key order), which
    /// reflect every command up to and including `applied_index`.
    fn restore(
        &mut self,
        applied_index: u64,
        rows: &mut dyn Iterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<(), AppError>;
}
