//! Snapshots: built from one RocksDB snapshot (one applied index), stored in `sm_meta`.

use std::io;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use openraft::RaftSnapshotBuilder;
use openraft::storage::SnapshotMeta;
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use rocksdb::{IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::db::{CF_SM_DATA, CF_SM_META, Db};
use crate::error::StoreError;
use crate::types::StoreTypes;

pub(crate) const KEY_LAST_APPLIED: &[u8] = b"last_applied";
pub(crate) const KEY_MEMBERSHIP: &[u8] = b"last_membership";
pub(crate) const KEY_SNAPSHOT: &[u8] = b"snapshot";

const ROWS_MAGIC: &[u8; 4] = b"PSN1";

/// Key-value rows of the data column family, in key order.
pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// Encodes data rows as: magic, row count, then per row key length, key, value length, value
/// (lengths are big-endian u32).
pub fn encode_rows(rows: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let size: usize = rows.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(12 + size);
    out.extend_from_slice(ROWS_MAGIC);
    out.extend_from_slice(&(rows.len() as u64).to_be_bytes());
    for (k, v) in rows {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

/// Decodes [`encode_rows`] output, rejecting anything truncated or trailing.
pub fn decode_rows(mut bytes: &[u8]) -> Result<Rows, StoreError> {
    let corrupt = |detail: &str| StoreError::Corrupt { what: "snapshot data", detail: detail.to_string() };
    if bytes.len() < 12 || &bytes[..4] != ROWS_MAGIC {
        return Err(corrupt("bad header"));
    }
    let count = u64::from_be_bytes(bytes[4..12].try_into().expect("8 bytes"));
    bytes = &bytes[12..];
    let take = |bytes: &mut &[u8]| -> Result<Vec<u8>, StoreError> {
        if bytes.len() < 4 {
            return Err(corrupt("truncated length"));
        }
        let len = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
        if bytes.len() < 4 + len {
            return Err(corrupt("truncated row"));
        }
        let out = bytes[4..4 + len].to_vec();
        *bytes = &bytes[4 + len..];
        Ok(out)
    };
    let mut rows = Vec::with_capacity(count.min(1 << 20) as usize);
    for _ in 0..count {
        let k = take(&mut bytes)?;
        let v = take(&mut bytes)?;
        rows.push((k, v));
    }
    if !bytes.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(rows)
}

/// The current snapshot as kept in `sm_meta`.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct StoredSnapshot<C: StoreTypes> {
    pub(crate) last_log_id: Option<LogIdOf<C>>,
    pub(crate) last_membership: StoredMembershipOf<C>,
    #[serde(with = "serde_bytes")]
    pub(crate) data: Vec<u8>,
}

impl<C: StoreTypes> StoredSnapshot<C> {
    pub(crate) fn meta(&self) -> SnapshotMetaOf<C> {
        SnapshotMeta { last_log_id: self.last_log_id.clone(), last_membership: self.last_membership.clone() }
    }
}

pub(crate) fn read_current<C: StoreTypes>(db: &Db) -> Result<Option<StoredSnapshot<C>>, StoreError> {
    match db.get(CF_SM_META, KEY_SNAPSHOT)? {
        Some(bytes) => Ok(Some(decode("snapshot", &bytes)?)),
        None => Ok(None),
    }
}

/// Builds snapshots concurrently with apply, from a consistent RocksDB view.
pub struct SnapshotBuilder<C> {
    pub(crate) db: Arc<Db>,
    /// Serialises "replace the current snapshot" between builders and installs.
    pub(crate) current_lock: Arc<Mutex<()>>,
    pub(crate) _types: PhantomData<fn() -> C>,
}

impl<C: StoreTypes> SnapshotBuilder<C> {
    fn build_blocking(db: &Db, current_lock: &Mutex<()>) -> Result<StoredSnapshot<C>, StoreError> {
        // Meta and data from the same RocksDB snapshot: one applied index, whatever apply does.
        let view = db.db.snapshot();
        let last_log_id: Option<LogIdOf<C>> =
            match view.get_cf(db.cf(CF_SM_META), KEY_LAST_APPLIED).map_err(StoreError::rocks("snapshot read"))? {
                Some(b) => Some(decode("last applied", &b)?),
                None => None,
            };
        let last_membership: StoredMembershipOf<C> =
            match view.get_cf(db.cf(CF_SM_META), KEY_MEMBERSHIP).map_err(StoreError::rocks("snapshot read"))? {
                Some(b) => decode("membership", &b)?,
                None => Default::default(),
            };
        let mut rows = Vec::new();
        for item in view.iterator_cf(db.cf(CF_SM_DATA), IteratorMode::Start) {
            let (k, v) = item.map_err(StoreError::rocks("snapshot scan"))?;
            rows.push((k.into_vec(), v.into_vec()));
        }
        drop(view);
        let snapshot = StoredSnapshot::<C> { last_log_id, last_membership, data: encode_rows(&rows) };

        let _guard = current_lock.lock().unwrap_or_else(|p| p.into_inner());
        let newer = match read_current::<C>(db)? {
            Some(cur) => cur.last_log_id < snapshot.last_log_id,
            None => true,
        };
        if newer {
            let mut batch = WriteBatch::default();
            batch.put_cf(db.cf(CF_SM_META), KEY_SNAPSHOT, encode("snapshot", &snapshot)?);
            db.write_buffered(batch)?;
        }
        Ok(snapshot)
    }
}

impl<C: StoreTypes> RaftSnapshotBuilder<C> for SnapshotBuilder<C> {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Vec<u8>>, io::Error> {
        let db = self.db.clone();
        let lock = self.current_lock.clone();
        let built = tokio::task::spawn_blocking(move || Self::build_blocking(&db, &lock))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))
            .and_then(|r| r)
            .map_err(|e| self.db.fail(e))?;
        tracing::info!(last_log_id = ?built.last_log_id, bytes = built.data.len(), "snapshot built");
        if let Some(o) = self.db.observer.get() {
            o.snapshot_built();
        }
        Ok(openraft::storage::Snapshot { meta: built.meta(), snapshot: built.data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let rows = vec![(b"a".to_vec(), vec![]), (vec![], b"xyz".to_vec()), (vec![0xff; 300], vec![7; 70000])];
        assert_eq!(decode_rows(&encode_rows(&rows)).unwrap(), rows);
    }

    #[test]
    fn truncated_or_trailing_rows_are_rejected() {
        let bytes = encode_rows(&[(b"key".to_vec(), b"value".to_vec())]);
        for cut in 0..bytes.len() {
            assert!(decode_rows(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_rows(&longer).is_err());
    }
}
