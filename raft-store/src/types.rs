use openraft::RaftTypeConfig;

/// The openraft type configuration this store works with.
///
/// Node ids are `u64`; the only thing the store needs beyond openraft's own traits is a way to
/// reach the application command inside a normal entry (openraft has no generic accessor).
pub trait StoreTypes: RaftTypeConfig<NodeId = u64> {
    /// The application command of a normal entry; `None` for blank and membership entries.
    fn app_data(entry: &Self::Entry) -> Option<&Self::D>;
}
