//! [`MasterKeyVault`]: core's [`KeyVault`] port over the server [`MasterKey`] kept in a state
//! directory.
//!
//! Files in the state directory (mode 0700 when the vault creates it):
//! - [`MASTER_KEY_FILE`] (`master.key`, 0600): the current master key, as text;
//! - [`NEXT_MASTER_KEY_FILE`] (`master.key.next`, 0600): the next key while a rotation is
//!   under way. [`KeyVault::finish_rotation`] renames it over `master.key`.
//!
//! Several processes may share a state directory. Each vault keeps the keys it read in
//! memory and, before each operation, looks at the two files' metadata (size, time, inode),
//! reading a file again only when it changed: so it makes envelopes and records under the
//! newest key on disk, opens those made under a next key another process created, and
//! stops accepting the old key once a rotation is finished, here or elsewhere. The key
//! files are a few dozen bytes; they are read and written synchronously.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use backup_core::model::{AccountId, EncryptionMode, OwnerKey};
use backup_core::ports::{KeyVault, NewKeys, OpenedKeys};
use zeroize::Zeroizing;

use crate::account_keys::AccountKeys;
use crate::error::{Error, Result};
use crate::master::{MasterKey, sync_dir};
use crate::record;

mod files;

use files::{Seen, Stamp, create_private_dir};

/// Name of the current master key file in a state directory.
pub const MASTER_KEY_FILE: &str = "master.key";
/// Name of the next master key file, present while a rotation is under way.
pub const NEXT_MASTER_KEY_FILE: &str = "master.key.next";

/// A [`KeyVault`] holding the server master key.
///
/// Envelopes are [`AccountKeys::to_envelope`] under the master key; records are
/// [`MasterKey::seal_record`]. New envelopes and records are made under the newest key
/// (the next one while a rotation is under way), and both keys open them during a rotation.
///
/// Built from a state directory ([`MasterKeyVault::load`],
/// [`MasterKeyVault::load_or_create`]) a rotation is kept on disk and resumes after a
/// crash at any point, in this process or another. Built from a key alone
/// ([`MasterKeyVault::from_key`]) the next key lives in memory only.
///
/// `Debug` shows the directory and the key fingerprints only.
///
/// ```
/// use backup_core::model::{AccountId, EncryptionMode};
/// use backup_core::ports::KeyVault;
/// use backup_crypto::MasterKeyVault;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> backup_core::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let (vault, _created) = MasterKeyVault::load_or_create(dir.path().join("state"))?;
/// let account = AccountId::new();
/// let keys = vault.generate(account, EncryptionMode::ServerKey).await?;
/// let record = vault.seal_record(account, b"settings").await?;
///
/// // A rotation: begin, re-wrap every envelope and re-seal every record, finish.
/// vault.begin_rotation().await?;
/// let envelope = vault.rewrap(account, &keys.envelope).await?;
/// let settings = vault.open_record(account, &record).await?;
/// let record = vault.seal_record(account, &settings).await?;
/// vault.finish_rotation().await?;
///
/// let opened = vault.open(account, &envelope, None).await?;
/// assert_eq!(opened.key_id, keys.key_id);
/// assert!(opened.opener.is_some());
/// assert_eq!(vault.open_record(account, &record).await?, b"settings");
/// # Ok(())
/// # }
/// ```
pub struct MasterKeyVault {
    dir: Option<PathBuf>,
    keys: RwLock<Keys>,
    /// Serializes looking at the directory and changing it (rotation steps) in this process.
    disk: Mutex<()>,
}

/// The keys in memory. Both are shared so that callers take them out of the lock and work
/// without holding it.
struct Keys {
    current: Arc<MasterKey>,
    /// The `master.key` file `current` was read from (or renamed into place).
    current_stamp: Option<Stamp>,
    next: Option<Arc<MasterKey>>,
    /// The `master.key.next` file last seen, whether or not it gave `next`.
    next_stamp: Option<Stamp>,
}

impl MasterKeyVault {
    /// The vault of the state directory `dir`, which must hold [`MASTER_KEY_FILE`] (else an
    /// I/O error of kind `NotFound` naming the file).
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let path = dir.join(MASTER_KEY_FILE);
        let (key, metadata) = MasterKey::load_with_metadata(&path)?;
        Ok(Self::build(
            Some(dir.to_path_buf()),
            key,
            Some(Stamp::new(&metadata)),
        ))
    }

    /// The vault of `dir`, creating the directory (mode 0700) and a new master key (mode
    /// 0600) if missing. Returns the vault and whether the key was created now. An existing
    /// key file is never replaced; when two processes race, both use the key that reached
    /// the disk.
    pub fn load_or_create(dir: impl AsRef<Path>) -> Result<(Self, bool)> {
        let dir = dir.as_ref();
        create_private_dir(dir)?;
        let (_, created) = MasterKey::load_or_create(dir.join(MASTER_KEY_FILE))?;
        Ok((Self::load(dir)?, created))
    }

    /// A vault over `key` alone, with no state directory: a rotation keeps the next key in
    /// this value only (for tests, or a key that comes from elsewhere, such as a KMS).
    pub fn from_key(key: MasterKey) -> Self {
        Self::build(None, key, None)
    }

    /// Installs an exported master key (its [`MasterKey::to_text`] form) into the state
    /// directory `dir`, creating the directory (mode 0700) if missing; the key file is
    /// mode 0600. Returns `true` if the key was installed now, `false` if `dir` holds this
    /// key already. A different key in `dir` is refused ([`Error::MasterKeyExists`]) and
    /// left untouched.
    pub fn import_text(dir: impl AsRef<Path>, text: &str) -> Result<bool> {
        let dir = dir.as_ref();
        let key = MasterKey::from_text(text)?;
        create_private_dir(dir)?;
        let path = dir.join(MASTER_KEY_FILE);
        match key.save_new(&path) {
            Ok(()) => Ok(true),
            Err(Error::MasterKeyExists { path }) => {
                if MasterKey::load(&path)?.fingerprint() == key.fingerprint() {
                    Ok(false)
                } else {
                    Err(Error::MasterKeyExists { path })
                }
            }
            Err(e) => Err(e),
        }
    }

    fn build(dir: Option<PathBuf>, key: MasterKey, stamp: Option<Stamp>) -> Self {
        Self {
            dir,
            keys: RwLock::new(Keys {
                current: Arc::new(key),
                current_stamp: stamp,
                next: None,
                next_stamp: None,
            }),
            disk: Mutex::new(()),
        }
    }

    /// The state directory (`None` for [`MasterKeyVault::from_key`]).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The fingerprint of the current master key ([`MasterKey::fingerprint`]), as of the
    /// last operation.
    pub fn fingerprint(&self) -> String {
        self.read().current.fingerprint()
    }

    /// The fingerprint of the next master key, if a rotation was under way at the last
    /// operation.
    pub fn next_fingerprint(&self) -> Option<String> {
        self.read().next.as_ref().map(|k| k.fingerprint())
    }

    /// The current master key (as of the last operation) as checksummed text (see
    /// [`MasterKey::to_text`]), for safekeeping off the server;
    /// [`MasterKeyVault::import_text`] installs it. Wiped when dropped.
    pub fn export_text(&self) -> Zeroizing<String> {
        self.read().current.to_text()
    }

    fn read(&self) -> RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Keys> {
        self.keys.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_disk(&self) -> MutexGuard<'_, ()> {
        self.disk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The keys in memory: current first, then next.
    fn known(&self) -> Vec<Arc<MasterKey>> {
        let keys = self.read();
        let mut out = vec![Arc::clone(&keys.current)];
        out.extend(keys.next.clone());
        out
    }

    /// The key new envelopes and records are made under: the next one during a rotation.
    fn newest(&self) -> Result<Arc<MasterKey>> {
        self.refresh()?;
        let keys = self.read();
        Ok(Arc::clone(keys.next.as_ref().unwrap_or(&keys.current)))
    }

    /// Brings the keys in memory up to date with the state directory.
    fn refresh(&self) -> Result<()> {
        let _disk = self.lock_disk();
        self.refresh_locked()
    }

    /// [`MasterKeyVault::refresh`] with `disk` held. A key file is read again only when its
    /// stamp changed; a missing `master.key` leaves the key in memory in use.
    fn refresh_locked(&self) -> Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let (current_known, next_known) = {
            let keys = self.read();
            (keys.current_stamp, keys.next_stamp)
        };
        // The next key first: a rotation finished by another process renames it over
        // `master.key`, so whichever of the two this sees, `master.key` read afterwards is
        // at least as new.
        let next = Seen::look(&dir.join(NEXT_MASTER_KEY_FILE), next_known)?;
        let current = Seen::look(&dir.join(MASTER_KEY_FILE), current_known)?;

        let mut keys = self.write();
        if let Seen::Read(key, stamp) = current {
            if key.fingerprint_bytes() != keys.current.fingerprint_bytes() {
                keys.current = Arc::new(key);
            }
            keys.current_stamp = Some(stamp);
        }
        match next {
            Seen::Unchanged => {}
            Seen::Gone => {
                keys.next = None;
                keys.next_stamp = None;
            }
            Seen::Read(key, stamp) => {
                let same = keys
                    .next
                    .as_ref()
                    .is_some_and(|n| n.fingerprint_bytes() == key.fingerprint_bytes());
                if !same {
                    keys.next = Some(Arc::new(key));
                }
                keys.next_stamp = Some(stamp);
            }
        }
        // A next key that is the current one: the rotation is over.
        if keys
            .next
            .as_ref()
            .is_some_and(|n| n.fingerprint_bytes() == keys.current.fingerprint_bytes())
        {
            keys.next = None;
        }
        Ok(())
    }

    /// Tries `f` with each key the state directory holds now (in `order`). Only integrity
    /// errors (bytes this key does not open) move on to the next key; the first one is
    /// returned if no key works.
    fn with_any_key<T>(
        &self,
        order: impl Fn(&mut Vec<Arc<MasterKey>>),
        f: impl Fn(&MasterKey) -> Result<T>,
    ) -> Result<T> {
        self.refresh()?;
        let mut candidates = self.known();
        order(&mut candidates);
        let mut first_error = None;
        for key in candidates {
            match f(&key) {
                Ok(value) => return Ok(value),
                Err(e @ Error::Integrity { .. }) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_error.unwrap_or_else(|| Error::crypto("no master key to try")))
    }

    /// Unwraps an envelope under whichever key opens it.
    fn unwrap_envelope(&self, account: AccountId, envelope: &[u8]) -> Result<AccountKeys> {
        self.with_any_key(
            |_| {},
            |key| AccountKeys::from_envelope(key, account, envelope),
        )
    }

    fn begin_rotation_sync(&self) -> Result<()> {
        let _disk = self.lock_disk();
        self.refresh_locked()?;
        if self.read().next.is_some() {
            return Ok(());
        }
        let Some(dir) = &self.dir else {
            self.write().next = Some(Arc::new(MasterKey::generate()));
            return Ok(());
        };
        let path = dir.join(NEXT_MASTER_KEY_FILE);
        MasterKey::load_or_create(&path)?;
        // Read back what reached the disk, with its stamp (another process may have won).
        self.refresh_locked()?;
        if self.read().next.is_none() {
            return Err(Error::crypto(format!(
                "{} disappeared while the rotation began",
                path.display()
            )));
        }
        Ok(())
    }

    fn finish_rotation_sync(&self) -> Result<()> {
        let _disk = self.lock_disk();
        self.refresh_locked()?;
        let Some(dir) = &self.dir else {
            let mut keys = self.write();
            if let Some(next) = keys.next.take() {
                keys.current = next;
            }
            return Ok(());
        };
        let next_path = dir.join(NEXT_MASTER_KEY_FILE);
        let (next, next_file) = {
            let keys = self.read();
            (keys.next.clone(), keys.next_stamp.is_some())
        };
        let Some(next) = next else {
            if next_file {
                // A next key file holding the current key: a copy left over, not a rotation.
                fs::remove_file(&next_path).map_err(|e| Error::io(&next_path, e))?;
                let mut keys = self.write();
                keys.next_stamp = None;
            }
            // No rotation under way, or one already finished (by a call that crashed after
            // the rename, or by another process): nothing left to do.
            return Ok(());
        };
        let path = dir.join(MASTER_KEY_FILE);
        fs::rename(&next_path, &path).map_err(|e| Error::io(&next_path, e))?;
        sync_dir(dir);
        let stamp = Stamp::of(&path)?;
        let mut keys = self.write();
        keys.current = next;
        keys.current_stamp = stamp;
        keys.next = None;
        keys.next_stamp = None;
        Ok(())
    }
}

impl fmt::Debug for MasterKeyVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never waits: a writer holding the lock shows as busy.
        let (fingerprint, next) = match self.keys.try_read() {
            Ok(keys) => (
                keys.current.fingerprint(),
                keys.next.as_ref().map(|k| k.fingerprint()),
            ),
            Err(_) => ("<busy>".to_owned(), None),
        };
        f.debug_struct("MasterKeyVault")
            .field("dir", &self.dir)
            .field("fingerprint", &fingerprint)
            .field("next_fingerprint", &next)
            .finish()
    }
}

#[async_trait]
impl KeyVault for MasterKeyVault {
    /// [`AccountKeys::generate`], wrapped under the newest master key (the next one during
    /// a rotation, so that an account created while a rotation runs is readable after it).
    async fn generate(
        &self,
        account: AccountId,
        mode: EncryptionMode,
    ) -> backup_core::Result<NewKeys> {
        let master = self.newest()?;
        let (keys, owner_key) = AccountKeys::generate(account, mode)?;
        Ok(NewKeys {
            envelope: keys.to_envelope(&master)?,
            key_id: keys.key_id(),
            owner_key,
        })
    }

    /// Opens the envelope under the current key or the next one (a rotation under way,
    /// possibly in another process), as the state directory holds them now (a rotation
    /// another process finished replaced the current key). Unencrypted and server-key accounts always get an opener (a given owner
    /// key is ignored); owner-key accounts get none without an owner key and the opener
    /// with the right one, while a key that is not the account's current owner key is
    /// [`backup_core::Error::WrongKey`] (a mistyped one is `Invalid`).
    async fn open(
        &self,
        account: AccountId,
        envelope: &[u8],
        owner_key: Option<&OwnerKey>,
    ) -> backup_core::Result<OpenedKeys> {
        let keys = self.unwrap_envelope(account, envelope)?;
        let opener = match (keys.mode(), owner_key) {
            (EncryptionMode::OwnerKey, None) => None,
            (_, owner_key) => Some(keys.opener(owner_key)?),
        };
        Ok(OpenedKeys {
            key_id: keys.key_id(),
            sealer: keys.sealer(),
            opener,
        })
    }

    /// Creates `master.key.next` (mode 0600), or loads it if a rotation was begun already
    /// (here or in another process), so that calling it again after a crash resumes with
    /// the same next key.
    async fn begin_rotation(&self) -> backup_core::Result<()> {
        Ok(self.begin_rotation_sync()?)
    }

    /// Opens the envelope under the current or the next key and wraps it under the next
    /// one (under the current one when no rotation is under way). Re-wrapping an envelope
    /// twice is harmless.
    async fn rewrap(&self, account: AccountId, envelope: &[u8]) -> backup_core::Result<Vec<u8>> {
        let newest = self.newest()?;
        let keys = self.unwrap_envelope(account, envelope)?;
        Ok(keys.to_envelope(&newest)?)
    }

    /// Renames `master.key.next` over `master.key` and uses it from now on. Without a
    /// rotation under way (one finished by a call that crashed after the rename, or by
    /// another process) there is nothing to do.
    async fn finish_rotation(&self) -> backup_core::Result<()> {
        Ok(self.finish_rotation_sync()?)
    }

    /// Nothing to do: this vault keeps no per-account state. Every copy of an account's
    /// envelope is stored by the service (catalog and destinations), which deletes them;
    /// without an envelope, the master key opens nothing of the account.
    async fn shred(&self, _account: AccountId) -> backup_core::Result<()> {
        Ok(())
    }

    /// [`MasterKey::seal_record`] under the newest key (the next one during a rotation).
    async fn seal_record(
        &self,
        account: AccountId,
        plaintext: &[u8],
    ) -> backup_core::Result<Vec<u8>> {
        Ok(self.newest()?.seal_record(account, plaintext)?)
    }

    /// [`MasterKey::open_record`] under the key the record names first, then the other.
    async fn open_record(&self, account: AccountId, sealed: &[u8]) -> backup_core::Result<Vec<u8>> {
        let named = record::named_key(sealed);
        Ok(self.with_any_key(
            |keys| keys.sort_by_key(|k| Some(k.fingerprint_bytes()) != named),
            |key| key.open_record(account, sealed),
        )?)
    }
}
