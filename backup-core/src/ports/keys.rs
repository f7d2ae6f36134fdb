//! The key vault port: where account keys are made, wrapped, opened and shredded.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{AccountId, EncryptionMode, OwnerKey};
use crate::ports::{ContentOpener, ContentSealer};

/// Keys made for an account.
#[derive(Debug)]
pub struct NewKeys {
    /// The wrapped keys, to store in the catalog and on every destination (opaque).
    pub envelope: Vec<u8>,
    /// The name the envelope has on destinations (`keys/<key_id>`): letters, digits, `-`.
    pub key_id: String,
    /// For [`EncryptionMode::OwnerKey`]: the owner's private key, handed out once and never
    /// kept.
    pub owner_key: Option<OwnerKey>,
}

/// An opened envelope: what the account's operations need.
#[derive(Debug, Clone)]
pub struct OpenedKeys {
    /// The envelope's name on destinations.
    pub key_id: String,
    /// Seals content (every account has one: it holds no secret that opens content).
    pub sealer: Arc<dyn ContentSealer>,
    /// Opens content: for unencrypted and server-key accounts always, for owner-key
    /// accounts only when the owner's (correct) key was given.
    pub opener: Option<Arc<dyn ContentOpener>>,
}

/// Makes, wraps and opens account keys under a secret the vault holds (a master key, a
/// KMS). Envelopes are opaque bytes the service stores; the vault alone can open them.
///
/// Rotation of the vault's own secret runs in three steps the service drives:
/// [`KeyVault::begin_rotation`], [`KeyVault::rewrap`] of every envelope (and
/// [`KeyVault::seal_record`] of every record), [`KeyVault::finish_rotation`]. While a
/// rotation is under way (in this process or another), `open` and `open_record` accept
/// envelopes and records under either secret.
#[async_trait]
pub trait KeyVault: Send + Sync + Debug + 'static {
    /// Makes keys for an account.
    async fn generate(&self, account: AccountId, mode: EncryptionMode) -> Result<NewKeys>;
    /// Opens an envelope. An envelope of another account, or one no secret of the vault
    /// opens, is an error; a wrong owner key is [`crate::Error::WrongKey`]; no owner key
    /// for an owner-key account gives no opener (writing needs none).
    async fn open(
        &self,
        account: AccountId,
        envelope: &[u8],
        owner_key: Option<&OwnerKey>,
    ) -> Result<OpenedKeys>;
    /// Starts (or resumes) a rotation of the vault's secret.
    async fn begin_rotation(&self) -> Result<()>;
    /// The envelope wrapped under the newest secret: the next one during a rotation.
    async fn rewrap(&self, account: AccountId, envelope: &[u8]) -> Result<Vec<u8>>;
    /// Makes the next secret the current one, ending a rotation.
    async fn finish_rotation(&self) -> Result<()>;
    /// Forgets anything the vault itself keeps about the account's keys (a vault that
    /// keeps per-account state must make it unrecoverable). The service calls it during a
    /// key reset, after deleting every envelope it stored.
    async fn shred(&self, account: AccountId) -> Result<()>;
    /// Encrypts and authenticates a record about the account (its settings on a
    /// destination), under a key derived from the vault's newest secret, so the storage
    /// provider reads nothing of it.
    async fn seal_record(&self, account: AccountId, plaintext: &[u8]) -> Result<Vec<u8>>;
    /// Opens a record [`KeyVault::seal_record`] made for this account; anything else is
    /// [`crate::Error::Integrity`].
    async fn open_record(&self, account: AccountId, sealed: &[u8]) -> Result<Vec<u8>>;
}
