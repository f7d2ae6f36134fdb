//! Repository format v1 over any [`object_store::ObjectStore`]: one store prefix is one
//! destination; each account has its own prefix (tenants never share chunks).
//!
//! ```text
//! config                                         chunker parameters, pack size (no secrets)
//! accounts/<account-uuid>/account               account record (settings, for disaster recovery)
//! accounts/<account-uuid>/keys/<key-id>          key envelope (opaque, from the key adapter)
//! accounts/<account-uuid>/snapshots/<uuid>       snapshot objects
//! accounts/<account-uuid>/packs/<hh>/<pack-id>   data and tree packs
//! accounts/<account-uuid>/index/<index-id>       pack trailers gathered
//! ```
//! `docs/format.md` describes every object byte by byte.

mod account_record;
mod config;
mod damage;
mod format;
mod gc;
mod index;
pub mod layout;
mod lease;
mod pack;
mod snapshot;
mod tree;

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};

pub use account_record::{ACCOUNT_MAGIC, decode_account, encode_account};
pub use config::{ChunkerParams, RepoConfig};
pub use damage::{DAMAGE_MAGIC, decode_damage, encode_damage};
pub use format::{
    CONFIG_MAGIC, FORMAT_VERSION, INDEX_MAGIC, PACK_MAGIC, SNAPSHOT_MAGIC, TRAILER_MAGIC,
};
pub use gc::{COLLECTION_MAGIC, CollectionState, Condemned, LOCK_MAGIC, decode_lock, encode_lock};
pub use index::{INDEX_VERSION, IndexedPack, decode_index, encode_index};
pub use lease::{Lease, LeaseGuard};
pub use pack::{
    BlobCodec, BlobKind, BlobLocator, CompactRefusal, Compacted, Compression, ENTRY_LEN,
    FOOTER_LEN, FinishedPack, GROUP_MAX_LEN, HEADER_LEN, PACK_VERSION, PackTrailer, PackWriter,
    TrailerEntry, compact_pack, read_pack, read_pack_unhashed, read_trailer, trailer_span, unseal,
};
pub(crate) use pack::{GROUP_MEMBER_MAX, GROUP_TARGET, group_end};
pub(crate) use snapshot::set_entry_bit;
pub use snapshot::{
    OwnerNames, PackReference, References, SNAPSHOT_VERSION, SnapshotContent, SnapshotObject,
    normalize_references, rewrite_pack_references,
};
pub use tree::{
    Attrs, Extent, LinkId, Node, Owner, SpecialKind, Tree, TreeEntry, TreeVersion, Xattr,
    extents_valid, is_safe_name,
};

use crate::error::{Error, Result};
use crate::model::{AccountId, ChunkId, PackId, SnapshotId};
use crate::ports::{ContentOpener, ContentSealer, DeferredFlush};

/// How many bytes to read from the end of a pack to get its trailer in one request usually.
const TRAILER_GUESS: u64 = 64 * 1024;

/// A repository: an object store, a root prefix and the config stored there.
#[derive(Debug, Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    root: Path,
    config: RepoConfig,
}

impl Repository {
    /// Creates the repository's `config` at `root` (exclusive create), or opens it if it
    /// exists already (the stored config wins).
    pub async fn init(store: Arc<dyn ObjectStore>, root: Path, config: RepoConfig) -> Result<Self> {
        config.validate()?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match store
            .put_opts(
                &layout::config(&root),
                PutPayload::from(config.encode()?),
                opts,
            )
            .await
        {
            Ok(_) => Ok(Self {
                store,
                root,
                config,
            }),
            Err(object_store::Error::AlreadyExists { .. }) => Self::open(store, root).await,
            Err(e) => Err(e.into()),
        }
    }

    /// Opens the repository at `root`; [`Error::NotFound`] if there is none.
    pub async fn open(store: Arc<dyn ObjectStore>, root: Path) -> Result<Self> {
        let path = layout::config(&root);
        let bytes = match store.get(&path).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::not_found(format!("repository at {root:?}")));
            }
            Err(e) => return Err(e.into()),
        };
        let config = RepoConfig::decode(&bytes)?;
        Ok(Self {
            store,
            root,
            config,
        })
    }

    /// The stored config.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The root prefix.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A handle on one account's part of the repository. `opener` is needed only to read
    /// content (restore, dry run, data verification).
    pub fn account(
        &self,
        account: AccountId,
        sealer: Arc<dyn ContentSealer>,
        opener: Option<Arc<dyn ContentOpener>>,
    ) -> AccountRepo {
        AccountRepo {
            repo: self.clone(),
            account,
            sealer,
            opener,
        }
    }

    /// Accounts that have a prefix in this repository.
    pub async fn list_accounts(&self) -> Result<Vec<AccountId>> {
        let listing = self
            .store
            .list_with_delimiter(Some(&layout::accounts(&self.root)))
            .await?;
        let mut out = Vec::new();
        for prefix in listing.common_prefixes {
            if let Some(name) = prefix.filename()
                && let Ok(id) = name.parse()
            {
                out.push(id);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Stores an account's key envelope as `keys/<key_id>` (write-once).
    pub async fn put_key_envelope(
        &self,
        account: AccountId,
        key_id: &str,
        envelope: &[u8],
    ) -> Result<()> {
        let path = self.key_envelope_path(account, key_id)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(envelope.to_vec()), opts)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let existing = self.store.get(&path).await?.bytes().await?;
                if existing.as_ref() == envelope {
                    Ok(())
                } else {
                    Err(Error::AlreadyExists {
                        what: format!("key envelope {key_id} of account {account}"),
                    })
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Writes a key envelope, replacing one of the same name: the same keys wrapped under
    /// another master key (after a rotation). A single put, so the destination never holds
    /// no envelope for the key while it is replaced.
    pub async fn replace_key_envelope(
        &self,
        account: AccountId,
        key_id: &str,
        envelope: &[u8],
    ) -> Result<()> {
        let path = self.key_envelope_path(account, key_id)?;
        self.store
            .put(&path, PutPayload::from(envelope.to_vec()))
            .await?;
        Ok(())
    }

    fn key_envelope_path(&self, account: AccountId, key_id: &str) -> Result<Path> {
        if key_id.is_empty()
            || !key_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(Error::invalid("key id", format!("{key_id:?}")));
        }
        Ok(layout::keys(&self.root, account).join(key_id))
    }

    /// Deletes a key envelope object (crypto-shredding that copy).
    pub async fn delete_key_envelope(&self, account: AccountId, key_id: &str) -> Result<()> {
        let path = layout::keys(&self.root, account).join(key_id);
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every object under the account's prefix, key envelopes first (so nothing the
    /// destination holds can open the rest while it is being deleted). Returns how many
    /// objects were deleted; running it again after an interruption finishes the job.
    pub async fn delete_account_data(&self, account: AccountId) -> Result<u64> {
        let mut deleted = 0;
        for prefix in [
            layout::keys(&self.root, account),
            layout::account(&self.root, account),
        ] {
            let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
            for m in metas {
                match self.store.delete(&m.location).await {
                    Ok(()) => deleted += 1,
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(deleted)
    }

    /// Every key envelope of an account, as `(key id, bytes)`.
    pub async fn key_envelopes(&self, account: AccountId) -> Result<Vec<(String, Vec<u8>)>> {
        let prefix = layout::keys(&self.root, account);
        let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            let name = m.location.filename().unwrap_or_default().to_owned();
            let bytes = self.store.get(&m.location).await?.bytes().await?;
            out.push((name, bytes.to_vec()));
        }
        out.sort();
        Ok(out)
    }
}

/// One account's part of a repository, with the account's crypto.
#[derive(Debug, Clone)]
pub struct AccountRepo {
    repo: Repository,
    account: AccountId,
    sealer: Arc<dyn ContentSealer>,
    opener: Option<Arc<dyn ContentOpener>>,
}

impl AccountRepo {
    /// The repository.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// The account.
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// The writer's crypto.
    pub fn sealer(&self) -> &Arc<dyn ContentSealer> {
        &self.sealer
    }

    /// The reader's crypto, if given.
    pub fn opener(&self) -> Option<&Arc<dyn ContentOpener>> {
        self.opener.as_ref()
    }

    /// The opener, or [`Error::KeyRequired`].
    pub fn require_opener(&self) -> Result<&Arc<dyn ContentOpener>> {
        self.opener.as_ref().ok_or_else(|| Error::KeyRequired {
            account: self.account.to_string(),
        })
    }

    fn root(&self) -> &Path {
        &self.repo.root
    }

    fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.repo.store
    }

    /// Uploads a finished pack (its name is its content hash, so a retry rewrites the same
    /// bytes) and returns what an index lists of it. The put carries [`DeferredFlush`]: a
    /// store may make the pack durable later, before the next object written without it
    /// (the index, the snapshot).
    pub async fn put_pack(&self, pack: FinishedPack) -> Result<IndexedPack> {
        Ok(self.put_pack_reclaiming(pack).await?.0)
    }

    /// [`AccountRepo::put_pack`], also handing back the pack's buffer when the store kept
    /// no reference to it (a local store does not), for the next pack to be written into.
    pub(crate) async fn put_pack_reclaiming(
        &self,
        pack: FinishedPack,
    ) -> Result<(IndexedPack, Option<Vec<u8>>)> {
        let path = layout::pack(self.root(), self.account, &pack.id);
        let len = pack.bytes.len() as u64;
        // A local store flushes packs in the background and publishes them before the next
        // unmarked write, the index that lists them.
        let mut opts = PutOptions::default();
        opts.extensions.insert(DeferredFlush);
        let bytes = Bytes::from(pack.bytes);
        self.store()
            .put_opts(&path, PutPayload::from(bytes.clone()), opts)
            .await?;
        let buffer = bytes.try_into_mut().ok().map(Vec::from);
        let indexed = IndexedPack {
            id: pack.id,
            len,
            trailer: pack.trailer,
        };
        Ok((indexed, buffer))
    }

    /// Downloads a whole pack and checks it against its id.
    pub async fn get_pack(&self, id: &PackId) -> Result<(Bytes, PackTrailer)> {
        let path = layout::pack(self.root(), self.account, id);
        let bytes = self.store().get(&path).await?.bytes().await?;
        let trailer = read_pack(self.sealer.server_keys(), id, &bytes)?;
        Ok((bytes, trailer))
    }

    /// Downloads a whole pack to read blobs from it: its header and its MAC-checked trailer
    /// are checked, not the keyed hash of every byte ([`AccountRepo::get_pack`] does that,
    /// for verification). Every blob read from it is still authenticated on its own (seal
    /// and keyed chunk id), and a pack served under another pack's name lacks the blobs
    /// asked for; hashing the whole pack again would only cost time.
    pub async fn get_pack_for_reading(&self, id: &PackId) -> Result<(Bytes, PackTrailer)> {
        let path = layout::pack(self.root(), self.account, id);
        let bytes = self.store().get(&path).await?.bytes().await?;
        let trailer = read_pack_unhashed(self.sealer.server_keys(), id, &bytes)?;
        Ok((bytes, trailer))
    }

    /// Reads and authenticates one pack's trailer with ranged reads.
    pub async fn get_trailer(&self, id: &PackId, len: u64) -> Result<PackTrailer> {
        let object = format!("pack {id}");
        let path = layout::pack(self.root(), self.account, id);
        let guess = TRAILER_GUESS.min(len);
        let mut tail = self.get_suffix(&path, guess).await?;
        let span = trailer_span(&tail, &object)? as u64;
        if span > len {
            return Err(Error::integrity(&object, "trailer longer than the pack"));
        }
        if span > tail.len() as u64 {
            tail = self.get_suffix(&path, span).await?;
        }
        read_trailer(self.sealer.server_keys(), &tail, len, &object)
    }

    async fn get_suffix(&self, path: &Path, n: u64) -> Result<Bytes> {
        let opts = GetOptions {
            range: Some(GetRange::Suffix(n)),
            ..Default::default()
        };
        Ok(self.store().get_opts(path, opts).await?.bytes().await?)
    }

    /// Every pack object of the account with its length.
    pub async fn list_packs(&self) -> Result<Vec<(PackId, u64)>> {
        let prefix = layout::packs(self.root(), self.account);
        let metas: Vec<_> = self.store().list(Some(&prefix)).try_collect().await?;
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            let name = m.location.filename().unwrap_or_default();
            let id = ChunkId::from_hex(name).map_err(|_| {
                Error::integrity(m.location.to_string(), "pack name is not a pack id")
            })?;
            out.push((id, m.size));
        }
        Ok(out)
    }

    /// Writes an index object for `packs`; returns its id and size.
    pub async fn put_index(&self, packs: &[IndexedPack]) -> Result<(ChunkId, u64)> {
        let (id, bytes) = encode_index(self.sealer.server_keys(), packs)?;
        let len = bytes.len() as u64;
        let path = layout::index(self.root(), self.account, &id);
        self.store().put(&path, PutPayload::from(bytes)).await?;
        Ok((id, len))
    }

    /// Loads where every blob of the account is: the index objects, then the trailer of
    /// every pack no index lists (so a lost or stale index only costs reads).
    pub async fn load_locator(&self) -> Result<BlobLocator> {
        let keys = self.sealer.server_keys();
        let mut locator = BlobLocator::new();
        locator.set_damaged(self.load_damaged().await?);
        let prefix = layout::indexes(self.root(), self.account);
        let metas: Vec<_> = self.store().list(Some(&prefix)).try_collect().await?;
        let packs = self.list_packs().await?;
        let present: std::collections::HashSet<PackId> = packs.iter().map(|(id, _)| *id).collect();
        // An index or pack listed may be gone when it is read: a collector replaced the
        // index, or deleted the pack (then nothing may reuse it anyway).
        let fetched: Vec<Result<Option<(ChunkId, Bytes)>>> = futures::stream::iter(metas)
            .map(|m| async move {
                let name = m.location.filename().unwrap_or_default();
                let id = ChunkId::from_hex(name)
                    .map_err(|_| Error::integrity(m.location.to_string(), "bad index name"))?;
                let bytes = match self.store().get(&m.location).await {
                    Ok(r) => r.bytes().await?,
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                Ok(Some((id, bytes)))
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for item in fetched {
            let Some((id, bytes)) = item? else {
                continue;
            };
            for p in decode_index(keys, &id, &bytes)? {
                // An index may list a pack that was deleted since; only present packs count.
                if present.contains(&p.id) {
                    locator.add_pack(p.id, p.trailer);
                }
            }
        }
        let missing: Vec<(PackId, u64)> = packs
            .into_iter()
            .filter(|(id, _)| !locator.has_pack(id))
            .collect();
        let trailers: Vec<Result<Option<(PackId, PackTrailer)>>> = futures::stream::iter(missing)
            .map(|(id, len)| async move {
                match self.get_trailer(&id, len).await {
                    Ok(t) => Ok(Some((id, t))),
                    Err(Error::Storage {
                        source: object_store::Error::NotFound { .. },
                    }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for t in trailers {
            if let Some((id, trailer)) = t? {
                locator.add_pack(id, trailer);
            }
        }
        Ok(locator)
    }

    /// Stores the account record (`accounts/<uuid>/account`), replacing the previous one.
    pub async fn put_account_record(&self, account: &crate::model::Account) -> Result<()> {
        if account.id != self.account {
            return Err(Error::refused("the account record names another account"));
        }
        let bytes = encode_account(self.sealer.server_keys(), account)?;
        let path = layout::account(self.root(), self.account).join("account");
        self.store().put(&path, PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// Stores the account record as given: sealed by the caller (the service seals it
    /// under a key derived from the master key, so the storage provider reads nothing).
    pub async fn put_account_record_bytes(&self, bytes: Vec<u8>) -> Result<()> {
        let path = layout::account(self.root(), self.account).join("account");
        self.store().put(&path, PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// The account record's stored bytes, if there is one.
    pub async fn get_account_record_bytes(&self) -> Result<Option<Bytes>> {
        let path = layout::account(self.root(), self.account).join("account");
        match self.store().get(&path).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The packs a data verification found damaged (none when the list is missing; a list
    /// that does not authenticate is an integrity error).
    pub async fn load_damaged(&self) -> Result<std::collections::BTreeSet<PackId>> {
        let path = layout::account(self.root(), self.account).join("damaged");
        match self.store().get(&path).await {
            Ok(r) => decode_damage(self.sealer.server_keys(), &r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Ok(Default::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Adds packs to the damaged-pack list: the next backup stores again what it would
    /// have reused from them, and restores read their blobs from other packs where any
    /// holds them.
    pub async fn mark_damaged(&self, packs: impl IntoIterator<Item = PackId>) -> Result<()> {
        let mut all = self.load_damaged().await?;
        let before = all.len();
        all.extend(packs);
        if all.len() == before {
            return Ok(());
        }
        let bytes = encode_damage(self.sealer.server_keys(), &all)?;
        let path = layout::account(self.root(), self.account).join("damaged");
        self.store().put(&path, PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// Loads and authenticates the account record, if there is one.
    pub async fn get_account_record(&self) -> Result<Option<crate::model::Account>> {
        let path = layout::account(self.root(), self.account).join("account");
        let bytes = match self.store().get(&path).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let account = decode_account(self.sealer.server_keys(), &bytes)?;
        if account.id != self.account {
            return Err(Error::integrity("account record", "names another account"));
        }
        Ok(Some(account))
    }

    /// Stores a snapshot object (write-once).
    pub async fn put_snapshot(&self, object: &SnapshotObject) -> Result<()> {
        let session = self.sealer.begin()?;
        let bytes = object.encode(self.sealer.server_keys(), session.as_ref())?;
        let path = layout::snapshot(self.root(), self.account, object.snapshot.id);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.store()
            .put_opts(&path, PutPayload::from(bytes), opts)
            .await?;
        Ok(())
    }

    /// Loads and authenticates a snapshot object; roots are opened when an opener is held.
    pub async fn load_snapshot(&self, id: SnapshotId) -> Result<SnapshotObject> {
        let path = layout::snapshot(self.root(), self.account, id);
        let bytes = match self.store().get(&path).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::not_found(format!(
                    "snapshot {id} of account {} in the repository",
                    self.account
                )));
            }
            Err(e) => return Err(e.into()),
        };
        SnapshotObject::decode(
            self.sealer.server_keys(),
            self.opener.as_deref(),
            self.account,
            id,
            &bytes,
        )
    }

    /// Ids of every snapshot object of the account, oldest first.
    pub async fn list_snapshots(&self) -> Result<Vec<SnapshotId>> {
        let prefix = layout::snapshots(self.root(), self.account);
        let metas: Vec<_> = self.store().list(Some(&prefix)).try_collect().await?;
        let mut ids: Vec<SnapshotId> = metas
            .iter()
            .filter_map(|m| m.location.filename().and_then(|n| n.parse().ok()))
            .collect();
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests;
