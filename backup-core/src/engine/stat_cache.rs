//! The stat cache: for each file of the last backup of an account to a destination, its
//! size, mtime, ctime and inode with the chunks it was cut into. A file whose stat is
//! unchanged (and whose chunks the repository still has) is not read again: an incremental
//! costs one stat per unchanged file.
//!
//! Entries are keyed by a keyed hash of the item and path (MAC domain `Path`), so the cache
//! holds no file names; the whole cache is MAC-authenticated, and a cache that does not
//! verify is ignored (it only costs re-reading). The cache lives where the files are (the
//! source server): [`FsStatCache`] keeps one file per account and destination.

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{AccountId, ChunkId, DestinationId, IdHasherBuilder, ItemKind};
use crate::ports::{MacDomain, ServerKeys};
use crate::repo::{Extent, Xattr};

use super::fsat::FileStat;

const MAGIC: &[u8; 8] = b"BKUPSTAT";
/// Version 2 adds a file's data ranges and extended attributes (a version 1 cache is
/// ignored: the files are read once more).
const VERSION: u16 = 2;

/// Where stat caches are kept (opaque bytes per account and destination).
#[async_trait]
pub trait StatCacheStore: Send + Sync + Debug {
    /// The cache of the last backup of `account` to `destination`, if any.
    async fn load(&self, account: AccountId, destination: DestinationId)
    -> Result<Option<Vec<u8>>>;
    /// Replaces that cache.
    async fn save(
        &self,
        account: AccountId,
        destination: DestinationId,
        bytes: Vec<u8>,
    ) -> Result<()>;
    /// Drops every cache of `account` (for example after a key reset).
    async fn clear(&self, account: AccountId) -> Result<()>;
}

/// Stat caches as files: `DIR/<account>/<destination>.statcache`, replaced atomically.
#[derive(Debug, Clone)]
pub struct FsStatCache {
    dir: PathBuf,
}

impl FsStatCache {
    /// Caches under `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, account: AccountId, destination: DestinationId) -> PathBuf {
        self.dir
            .join(account.to_string())
            .join(format!("{destination}.statcache"))
    }
}

#[async_trait]
impl StatCacheStore for FsStatCache {
    async fn load(
        &self,
        account: AccountId,
        destination: DestinationId,
    ) -> Result<Option<Vec<u8>>> {
        let path = self.path(account, destination);
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    async fn save(
        &self,
        account: AccountId,
        destination: DestinationId,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let path = self.path(account, destination);
        let root = self.dir.clone();
        let dir = self.dir.join(account.to_string());
        // Private whatever the umask: directories 0700, files 0600 (the cache names no
        // file, but its size and timing tell about the account's files).
        tokio::task::spawn_blocking(move || -> Result<()> {
            for d in [&root, &dir] {
                private_dir(d)?;
            }
            let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
            write_private(&tmp, &bytes)?;
            std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
        })
        .await
        .map_err(super::backup::join_error)?
    }

    async fn clear(&self, account: AccountId) -> Result<()> {
        let dir = self.dir.join(account.to_string());
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(dir, e)),
        }
    }
}

/// Creates `dir` (and its parents) if missing and sets it to 0700.
pub(crate) fn private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(dir, e))
}

/// Writes a new file 0600 (set through the handle, so the umask plays no part).
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// What is remembered of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CachedFile {
    pub(crate) size: u64,
    pub(crate) mtime_ns: i64,
    pub(crate) ctime_ns: i64,
    pub(crate) inode: u64,
    pub(crate) chunks: Vec<ChunkId>,
    /// A sparse file's data ranges.
    pub(crate) extents: Option<Vec<Extent>>,
    /// Extended attributes (a change to them changes the ctime, so they are current
    /// whenever the stat is).
    pub(crate) xattrs: Vec<Xattr>,
}

impl CachedFile {
    pub(crate) fn stat(
        stat: &FileStat,
        chunks: Vec<ChunkId>,
        extents: Option<Vec<Extent>>,
        xattrs: Vec<Xattr>,
    ) -> Self {
        Self {
            size: stat.size,
            mtime_ns: stat.mtime_ns,
            ctime_ns: stat.ctime_ns,
            inode: stat.ino,
            chunks,
            extents,
            xattrs,
        }
    }

    /// Whether `stat` describes the same file content as this entry.
    pub(crate) fn unchanged(&self, stat: &FileStat) -> bool {
        self.size == stat.size
            && self.mtime_ns == stat.mtime_ns
            && self.ctime_ns == stat.ctime_ns
            && self.inode == stat.ino
    }

    /// The bytes the chunks hold (the size, or a sparse file's data).
    pub(crate) fn stored_len(&self) -> u64 {
        match &self.extents {
            Some(x) => x.iter().map(|e| e.len).sum(),
            None => self.size,
        }
    }
}

/// The cache of one backup, keyed by the keyed hash of item and path.
#[derive(Debug, Default)]
pub(crate) struct StatCache {
    pub(crate) entries: HashMap<[u8; 32], CachedFile, IdHasherBuilder>,
}

impl StatCache {
    /// An empty cache with room for `n` files.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            entries: HashMap::with_capacity_and_hasher(n, IdHasherBuilder::default()),
        }
    }
}

/// The key of a file: keyed hash of the item code and the path bytes under the item root.
pub(crate) fn key(keys: &ServerKeys, kind: ItemKind, rel: &[u8]) -> [u8; 32] {
    let mut h = keys.mac_hasher(MacDomain::Path);
    h.update(&[kind.code()]);
    h.update(rel);
    *h.finalize().as_bytes()
}

impl StatCache {
    /// Parses a stored cache; anything that does not verify gives an empty cache.
    pub(crate) fn decode(keys: &ServerKeys, bytes: &[u8]) -> Self {
        Self::try_decode(keys, bytes).unwrap_or_default()
    }

    fn try_decode(keys: &ServerKeys, bytes: &[u8]) -> Option<Self> {
        if bytes.len() < 10 + 32 || &bytes[..8] != MAGIC {
            return None;
        }
        if u16::from_le_bytes([bytes[8], bytes[9]]) != VERSION {
            return None;
        }
        let (body, tag) = bytes.split_at(bytes.len() - 32);
        let mut t = [0u8; 32];
        t.copy_from_slice(tag);
        if !keys.verify_mac(MacDomain::Path, body, &t) {
            return None;
        }
        let entries: Vec<([u8; 32], CachedFile)> = postcard::from_bytes(&body[10..]).ok()?;
        Some(Self {
            entries: entries.into_iter().collect(),
        })
    }

    /// Serializes and MACs the cache.
    pub(crate) fn encode(&self, keys: &ServerKeys) -> Result<Vec<u8>> {
        let entries: Vec<(&[u8; 32], &CachedFile)> = self.entries.iter().collect();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&postcard::to_stdvec(&entries).map_err(|e| Error::Internal {
            reason: format!("encoding the stat cache: {e}"),
        })?);
        let tag = keys.mac(MacDomain::Path, &out);
        out.extend_from_slice(&tag);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_round_trips_and_rejects_tampering() {
        let keys = ServerKeys::new([1; 32], [2; 32], 3);
        let mut c = StatCache::default();
        c.entries.insert(
            key(&keys, ItemKind::HomeDir, b"a/b"),
            CachedFile {
                size: 5,
                mtime_ns: 6,
                ctime_ns: 7,
                inode: 8,
                chunks: vec![ChunkId([9; 32])],
                extents: Some(vec![Extent { offset: 1, len: 2 }]),
                xattrs: vec![Xattr {
                    name: b"user.a".to_vec(),
                    value: b"b".to_vec(),
                }],
            },
        );
        let bytes = c.encode(&keys).unwrap();
        assert_eq!(StatCache::decode(&keys, &bytes).entries, c.entries);
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert!(StatCache::decode(&keys, &bad).entries.is_empty());
        let other = ServerKeys::new([1; 32], [3; 32], 3);
        assert!(StatCache::decode(&other, &bytes).entries.is_empty());
        assert_ne!(
            key(&keys, ItemKind::HomeDir, b"a"),
            key(&keys, ItemKind::Email, b"a")
        );
    }
}
