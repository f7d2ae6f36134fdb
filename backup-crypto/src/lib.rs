//! # backup-crypto
//!
//! The key hierarchy of backup-core: a server [`MasterKey`] wraps each account's
//! [`AccountKeys`] (keyed-hash secrets and an X25519 keypair) into a key envelope; content is
//! sealed with per-object ephemeral X25519 keys and AES-256-GCM (where the CPU runs it in
//! hardware) or XChaCha20-Poly1305, implementing core's
//! [`ContentSealer`](backup_core::ports::ContentSealer) and
//! [`ContentOpener`](backup_core::ports::ContentOpener) ports.
//!
//! ```
//! use backup_core::model::{AccountId, EncryptionMode};
//! use backup_crypto::{AccountKeys, MasterKey};
//!
//! # fn main() -> Result<(), backup_core::Error> {
//! let master = MasterKey::generate();
//! let account = AccountId::new();
//!
//! // Owner-held key: the secret is handed out once; the server keeps the public key only.
//! let (keys, owner_key) = AccountKeys::generate(account, EncryptionMode::OwnerKey)?;
//! let owner_key = owner_key.expect("owner-key mode exports the key");
//! let envelope = keys.to_envelope(&master)?; // store in the catalog and the repository
//!
//! // A backup worker: unwraps the envelope, seals a blob.
//! let keys = AccountKeys::from_envelope(&master, account, &envelope)?;
//! let sealer = keys.sealer();
//! let session = sealer.begin()?;
//! let mut blob = b"<h1>hi</h1>".to_vec();
//! session.seal(b"chunk 1", &mut blob)?;
//! let header = session.header().to_vec(); // stored once per pack or snapshot
//!
//! // The server alone cannot read it back...
//! assert!(keys.opener(None).is_err());
//! // ...the owner can.
//! let opener = keys.opener(Some(&owner_key))?;
//! opener.open_session(&header)?.open(b"chunk 1", &mut blob)?;
//! assert_eq!(blob, b"<h1>hi</h1>");
//! # Ok(())
//! # }
//! ```
//!
//! Map of the crate:
//! - [`master`]: [`MasterKey`] (generate, text form, key file);
//! - [`account_keys`]: [`AccountKeys`] (generate, sealer, opener, owner key check);
//! - [`envelope`]: the key envelope byte format ([`AccountKeys::to_envelope`] /
//!   [`AccountKeys::from_envelope`]);
//! - [`owner_key`]: the owner key text format, [`owner_key_account`];
//! - [`record`]: the account record byte format ([`MasterKey::seal_record`] /
//!   [`MasterKey::open_record`]);
//! - [`seal`]: the sealing construction (header and blob layout);
//! - [`vault`]: [`MasterKeyVault`], core's
//!   [`KeyVault`](backup_core::ports::KeyVault) port over the master key in a state
//!   directory (key files, rotation);
//! - [`error`]: [`Error`], mapped onto [`backup_core::Error`].
//!
//! Secrets are never `Copy`, have redacted `Debug`, and are zeroized on drop.

pub mod account_keys;
pub mod envelope;
pub mod error;
pub mod master;
pub mod owner_key;
pub mod record;
pub mod seal;
mod text;
pub mod vault;

pub use account_keys::AccountKeys;
pub use error::{Error, Result};
pub use master::MasterKey;
pub use owner_key::owner_key_account;
pub use vault::MasterKeyVault;
