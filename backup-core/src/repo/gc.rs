//! What garbage collection keeps on the destination: the collector's state (packs condemned
//! and when they may be deleted) and snapshot locks, plus the deletions it makes.
//!
//! ```text
//! accounts/<uuid>/collection        "BKUPCOLL" | version u16 (1)
//!                                   | postcard Vec<(pack id [32], since_ms i64, due_ms i64)>
//!                                   | MAC [32] (collection domain) of every preceding byte
//! accounts/<uuid>/locks/<snap-uuid> "BKUPLOCK" | version u16 (1)
//!                                   | postcard (snapshot uuid, Option<until_ms i64>)
//!                                   | MAC [32] (lock domain) of every preceding byte
//! ```
//! `docs/architecture.md` gives the collection protocol and why it is safe.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};

use super::format::{ByteReader, decode, encode};
use super::{AccountRepo, layout};
use crate::error::{Error, Result};
use crate::model::{ChunkId, PackId, SnapshotId};
use crate::ports::{MacDomain, ServerKeys};

/// Magic of the collection state.
pub const COLLECTION_MAGIC: &[u8; 8] = b"BKUPCOLL";
/// Magic of a snapshot lock.
pub const LOCK_MAGIC: &[u8; 8] = b"BKUPLOCK";
const VERSION: u16 = 1;

/// A pack found unreferenced by every snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condemned {
    /// When a collector first found it unreferenced.
    pub since: DateTime<Utc>,
    /// From when it may be deleted, if still unreferenced then (`since` + the grace).
    pub due: DateTime<Utc>,
}

/// The collector's state of one account: the packs it condemned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectionState {
    /// Condemned packs.
    pub condemned: BTreeMap<PackId, Condemned>,
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64, object: &str) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| Error::integrity(object, "time out of range"))
}

fn seal(keys: &ServerKeys, domain: MacDomain, magic: &[u8; 8], body: &[u8]) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(body);
    let mac = keys.mac(domain, &out);
    out.extend_from_slice(&mac);
    out
}

fn open<'a>(
    keys: &ServerKeys,
    domain: MacDomain,
    magic: &[u8; 8],
    bytes: &'a [u8],
    object: &'a str,
) -> Result<&'a [u8]> {
    if bytes.len() < 32 {
        return Err(Error::integrity(object, "truncated"));
    }
    let (body, mac) = bytes.split_at(bytes.len() - 32);
    let mut tag = [0u8; 32];
    tag.copy_from_slice(mac);
    if !keys.verify_mac(domain, body, &tag) {
        return Err(Error::integrity(object, "does not authenticate"));
    }
    let mut r = ByteReader::new(body, object);
    r.magic_and_versions(magic, &[VERSION])?;
    r.bytes(r.remaining())
}

impl CollectionState {
    /// Encodes and MACs the state.
    pub fn encode(&self, keys: &ServerKeys) -> Result<Vec<u8>> {
        let rows: Vec<(PackId, i64, i64)> = self
            .condemned
            .iter()
            .map(|(p, c)| (*p, millis(c.since), millis(c.due)))
            .collect();
        Ok(seal(
            keys,
            MacDomain::Collection,
            COLLECTION_MAGIC,
            &encode(&rows)?,
        ))
    }

    /// Authenticates and parses a stored state.
    pub fn decode(keys: &ServerKeys, bytes: &[u8]) -> Result<Self> {
        let object = "collection state";
        let body = open(keys, MacDomain::Collection, COLLECTION_MAGIC, bytes, object)?;
        let rows: Vec<(PackId, i64, i64)> = decode(body, object)?;
        let mut condemned = BTreeMap::new();
        for (pack, since, due) in rows {
            let c = Condemned {
                since: from_millis(since, object)?,
                due: from_millis(due, object)?,
            };
            condemned.insert(pack, c);
        }
        Ok(Self { condemned })
    }

    /// The condemned packs a collector may delete at `now` (due by then).
    pub fn due_at(&self, now: DateTime<Utc>) -> impl Iterator<Item = &PackId> {
        self.condemned
            .iter()
            .filter(move |(_, c)| c.due <= now)
            .map(|(p, _)| p)
    }
}

/// Encodes and MACs a snapshot lock (`until`: `None` locks until unlocked).
pub fn encode_lock(
    keys: &ServerKeys,
    snapshot: SnapshotId,
    until: Option<DateTime<Utc>>,
) -> Result<Vec<u8>> {
    let body = encode(&(snapshot, until.map(millis)))?;
    Ok(seal(keys, MacDomain::Lock, LOCK_MAGIC, &body))
}

/// Authenticates and parses a snapshot lock stored as `snapshot`'s.
pub fn decode_lock(
    keys: &ServerKeys,
    snapshot: SnapshotId,
    bytes: &[u8],
) -> Result<Option<DateTime<Utc>>> {
    let object = format!("lock of snapshot {snapshot}");
    let body = open(keys, MacDomain::Lock, LOCK_MAGIC, bytes, &object)?;
    let (id, until): (SnapshotId, Option<i64>) = decode(body, &object)?;
    if id != snapshot {
        return Err(Error::integrity(&object, "names another snapshot"));
    }
    until.map(|ms| from_millis(ms, &object)).transpose()
}

async fn delete_quietly(repo: &AccountRepo, path: &object_store::path::Path) -> Result<bool> {
    match repo.store().delete(path).await {
        Ok(()) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl AccountRepo {
    /// The collector's state; empty when none was stored.
    pub async fn load_collection_state(&self) -> Result<CollectionState> {
        let path = layout::collection(self.root(), self.account);
        match self.store().get(&path).await {
            Ok(r) => CollectionState::decode(self.sealer.server_keys(), &r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Ok(CollectionState::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores the collector's state, replacing the previous one.
    pub async fn put_collection_state(&self, state: &CollectionState) -> Result<()> {
        let path = layout::collection(self.root(), self.account);
        let bytes = state.encode(self.sealer.server_keys())?;
        self.store().put(&path, PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// Records a snapshot lock on the destination (replacing an earlier one).
    pub async fn put_lock(&self, snapshot: SnapshotId, until: Option<DateTime<Utc>>) -> Result<()> {
        let path = layout::lock(self.root(), self.account, snapshot);
        let bytes = encode_lock(self.sealer.server_keys(), snapshot, until)?;
        self.store().put(&path, PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// Removes a snapshot's lock from the destination (none is fine).
    pub async fn delete_lock(&self, snapshot: SnapshotId) -> Result<()> {
        delete_quietly(self, &layout::lock(self.root(), self.account, snapshot)).await?;
        Ok(())
    }

    /// Every lock recorded on the destination, as `(snapshot, until)`. A lock that does
    /// not authenticate is an integrity error.
    pub async fn list_locks(&self) -> Result<Vec<(SnapshotId, Option<DateTime<Utc>>)>> {
        let prefix = layout::locks(self.root(), self.account);
        let metas: Vec<_> = self.store().list(Some(&prefix)).try_collect().await?;
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            let Some(id) = m.location.filename().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let bytes = self.store().get(&m.location).await?.bytes().await?;
            out.push((id, decode_lock(self.sealer.server_keys(), id, &bytes)?));
        }
        out.sort();
        Ok(out)
    }

    /// Loads and authenticates a snapshot object's header only (never its sealed part, so
    /// no content key is used) and returns what it references.
    pub async fn load_snapshot_header(&self, id: SnapshotId) -> Result<super::References> {
        let Some(bytes) = self.get_snapshot_bytes(id).await? else {
            return Err(Error::not_found(format!(
                "snapshot {id} of account {} in the repository",
                self.account
            )));
        };
        let object = super::SnapshotObject::decode(
            self.sealer.server_keys(),
            None,
            self.account,
            id,
            &bytes,
        )?;
        Ok(object.references)
    }

    /// A snapshot object's stored bytes, if it exists.
    pub async fn get_snapshot_bytes(&self, id: SnapshotId) -> Result<Option<Bytes>> {
        let path = layout::snapshot(self.root(), self.account, id);
        match self.store().get(&path).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a snapshot object with `bytes` (a repack's rewritten references): one put,
    /// so a reader sees the old object or the new one, and both restore while the packs
    /// of both are there.
    pub async fn replace_snapshot_bytes(&self, id: SnapshotId, bytes: Vec<u8>) -> Result<()> {
        let path = layout::snapshot(self.root(), self.account, id);
        self.store().put(&path, PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// Deletes a snapshot object and its lock; false when it was already gone.
    pub async fn delete_snapshot_object(&self, id: SnapshotId) -> Result<bool> {
        let gone = delete_quietly(self, &layout::snapshot(self.root(), self.account, id)).await?;
        self.delete_lock(id).await?;
        Ok(gone)
    }

    /// Deletes a pack; false when it was already gone.
    pub async fn delete_pack(&self, id: &PackId) -> Result<bool> {
        delete_quietly(self, &layout::pack(self.root(), self.account, id)).await
    }

    /// Every index object of the account with its length.
    pub async fn list_indexes(&self) -> Result<Vec<(ChunkId, u64)>> {
        let prefix = layout::indexes(self.root(), self.account);
        let metas: Vec<_> = self.store().list(Some(&prefix)).try_collect().await?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let id = ChunkId::from_hex(m.location.filename()?).ok()?;
                Some((id, m.size))
            })
            .collect())
    }

    /// Deletes an index object; false when it was already gone.
    pub async fn delete_index(&self, id: &ChunkId) -> Result<bool> {
        delete_quietly(self, &layout::index(self.root(), self.account, id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_locks_round_trip_and_refuse_tampering() {
        let keys = ServerKeys::new([1; 32], [2; 32], 3);
        let now = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
        let mut state = CollectionState::default();
        state.condemned.insert(
            ChunkId([7; 32]),
            Condemned {
                since: now,
                due: now + chrono::Duration::days(1),
            },
        );
        let bytes = state.encode(&keys).unwrap();
        assert_eq!(CollectionState::decode(&keys, &bytes).unwrap(), state);
        assert_eq!(state.due_at(now).count(), 0);
        assert_eq!(state.due_at(now + chrono::Duration::days(2)).count(), 1);
        let mut bad = bytes.clone();
        bad[12] ^= 1;
        assert!(CollectionState::decode(&keys, &bad).is_err());
        let other = ServerKeys::new([1; 32], [9; 32], 3);
        assert!(CollectionState::decode(&other, &bytes).is_err());

        let id = SnapshotId::new();
        for until in [None, Some(now)] {
            let lock = encode_lock(&keys, id, until).unwrap();
            assert_eq!(decode_lock(&keys, id, &lock).unwrap(), until);
            assert!(decode_lock(&keys, SnapshotId::new(), &lock).is_err());
            // A lock is not a collection state, nor the reverse (domains and magics differ).
            assert!(CollectionState::decode(&keys, &lock).is_err());
        }
    }
}
