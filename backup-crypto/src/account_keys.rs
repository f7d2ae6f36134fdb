//! One account's keys: server-held hash keys and, for encrypted modes, an X25519 keypair.

use std::fmt;
use std::sync::Arc;

use backup_core::model::{AccountId, EncryptionMode, OwnerKey};
use backup_core::ports::{ContentOpener, ContentSealer, PlainCrypto, ServerKeys};
use rand::Rng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};
use crate::owner_key;
use crate::seal::{X25519Opener, X25519Sealer};
use crate::text::encode_hex;

const KEY_ID_CONTEXT: &str = "backup-crypto 2026-01 account key id v1";
const KEY_ID_DEDUP_CONTEXT: &str = "backup-crypto 2026-01 account key id v1 dedup commitment";

/// The server-held secrets of an account (none of them decrypts content).
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct HashKeys {
    pub(crate) dedup: [u8; 32],
    pub(crate) mac: [u8; 32],
    pub(crate) chunker_seed: u64,
}

impl HashKeys {
    fn random(rng: &mut impl Rng) -> Self {
        let mut keys = Self {
            dedup: [0; 32],
            mac: [0; 32],
            chunker_seed: 0,
        };
        rng.fill_bytes(&mut keys.dedup);
        rng.fill_bytes(&mut keys.mac);
        keys.chunker_seed = rng.next_u64();
        keys
    }

    fn server_keys(&self) -> ServerKeys {
        ServerKeys::new(self.dedup, self.mac, self.chunker_seed)
    }
}

/// The keys of one account.
///
/// - every mode: the dedup key, the header MAC key and the chunker seed (server-held);
/// - `ServerKey`: the X25519 keypair, secret included;
/// - `OwnerKey`: the X25519 public key only; the secret went to the owner once, as
///   [`OwnerKey`] text, when the keys were generated;
/// - `None`: no keypair.
///
/// Stored wrapped by the master key ([`AccountKeys::to_envelope`]). Not `Clone`; `Debug`
/// shows the account, mode and key id only; secrets are zeroized on drop.
pub struct AccountKeys {
    pub(crate) account: AccountId,
    pub(crate) mode: EncryptionMode,
    pub(crate) hash: HashKeys,
    pub(crate) public: Option<PublicKey>,
    /// Kept in `ServerKey` mode only.
    pub(crate) secret: Option<StaticSecret>,
}

impl AccountKeys {
    /// Generates new keys for `account` in `mode`.
    ///
    /// In [`EncryptionMode::OwnerKey`] mode the account secret is returned, this one time,
    /// as the owner's [`OwnerKey`] text, and is not kept: hand it to the owner, then drop it.
    /// Other modes return `None` for the owner key.
    pub fn generate(account: AccountId, mode: EncryptionMode) -> Result<(Self, Option<OwnerKey>)> {
        let mut rng = rand::rng();
        let hash = HashKeys::random(&mut rng);
        let (public, secret, owner) = match mode {
            EncryptionMode::None => (None, None, None),
            EncryptionMode::ServerKey => {
                let secret = StaticSecret::random_from_rng(&mut rng);
                (Some(PublicKey::from(&secret)), Some(secret), None)
            }
            EncryptionMode::OwnerKey => {
                let secret = StaticSecret::random_from_rng(&mut rng);
                let owner = owner_key::export(account, &secret);
                (Some(PublicKey::from(&secret)), None, Some(owner))
            }
        };
        Ok((
            Self {
                account,
                mode,
                hash,
                public,
                secret,
            },
            owner,
        ))
    }

    /// The account these keys belong to.
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// The encryption mode.
    pub fn mode(&self) -> EncryptionMode {
        self.mode
    }

    /// The account's X25519 public key (`None` in mode `None`).
    pub fn public_key_bytes(&self) -> Option<[u8; 32]> {
        self.public.map(|pk| pk.to_bytes())
    }

    /// A short stable id of these keys (16 hex digits): BLAKE3 over the account id, the
    /// mode and the public key (in mode `None`, a one-way commitment to the dedup key
    /// instead). It names the envelope object, does not change when the envelope is
    /// re-written, and changes when the keys are reset.
    pub fn key_id(&self) -> String {
        let mut h = blake3::Hasher::new_derive_key(KEY_ID_CONTEXT);
        h.update(self.account.as_bytes());
        h.update(&[crate::envelope::mode_byte(self.mode)]);
        match &self.public {
            Some(pk) => h.update(pk.as_bytes()),
            None => h.update(&blake3::derive_key(KEY_ID_DEDUP_CONTEXT, &self.hash.dedup)),
        };
        encode_hex(&h.finalize().as_bytes()[..8])
    }

    /// What a writer needs: the server-held keys and, for encrypted modes, a sealer that
    /// holds the account public key only (it cannot open what it seals). Mode `None` gives
    /// [`PlainCrypto`].
    pub fn sealer(&self) -> Arc<dyn ContentSealer> {
        let keys = self.hash.server_keys();
        match self.public {
            Some(pk) => Arc::new(X25519Sealer::new(keys, pk)),
            None => Arc::new(PlainCrypto::new(keys)),
        }
    }

    /// What a reader needs to open the account's content.
    ///
    /// - `None` mode: [`PlainCrypto`] (`owner_key` is ignored);
    /// - `ServerKey`: the stored secret (`owner_key` is ignored);
    /// - `OwnerKey`: the owner's key, checked with [`AccountKeys::verify_owner_key`];
    ///   without one, [`Error::KeyRequired`].
    pub fn opener(&self, owner_key: Option<&OwnerKey>) -> Result<Arc<dyn ContentOpener>> {
        match (self.mode, self.public) {
            (EncryptionMode::None, _) => Ok(Arc::new(PlainCrypto::new(self.hash.server_keys()))),
            (EncryptionMode::ServerKey, Some(pk)) => {
                let secret = self.secret.clone().ok_or_else(|| {
                    Error::crypto(format!(
                        "account {} uses a server-held key but its keys hold no secret",
                        self.account
                    ))
                })?;
                Ok(Arc::new(X25519Opener::new(secret, pk)))
            }
            (EncryptionMode::OwnerKey, Some(pk)) => {
                let key = owner_key.ok_or(Error::KeyRequired {
                    account: self.account,
                })?;
                let secret = self.owner_secret(key)?;
                Ok(Arc::new(X25519Opener::new(secret, pk)))
            }
            (mode, None) => Err(Error::crypto(format!(
                "account {} is in mode {} but its keys hold no public key",
                self.account,
                mode.as_str()
            ))),
        }
    }

    /// Checks that `key` is this account's current owner key: it must parse (a typo is
    /// [`Error::Malformed`]), name this account (else [`Error::WrongKey`] naming the
    /// account it belongs to) and match the stored public key (else [`Error::WrongKey`]).
    pub fn verify_owner_key(&self, key: &OwnerKey) -> Result<()> {
        self.owner_secret(key).map(drop)
    }

    fn owner_secret(&self, key: &OwnerKey) -> Result<StaticSecret> {
        let (account, secret) = owner_key::parse(key)?;
        if account != self.account {
            return Err(Error::wrong_key(format!(
                "this owner key belongs to account {account}, not to account {}",
                self.account
            )));
        }
        match self.public {
            Some(pk) if PublicKey::from(&secret) == pk => Ok(secret),
            Some(_) => Err(Error::wrong_key(format!(
                "this owner key names account {account} but is not its current key \
                 (were the account's keys reset since it was exported?)"
            ))),
            None => Err(Error::wrong_key(format!(
                "account {account} is not encrypted with an owner-held key"
            ))),
        }
    }
}

impl fmt::Debug for AccountKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountKeys")
            .field("account", &self.account)
            .field("mode", &self.mode)
            .field("key_id", &self.key_id())
            .field("secrets", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_keeps_the_secret_only_in_server_mode() {
        let a = AccountId::new();
        let (k, owner) = AccountKeys::generate(a, EncryptionMode::None).unwrap();
        assert!(owner.is_none() && k.public.is_none() && k.secret.is_none());
        assert!(!k.sealer().is_encrypted());

        let (k, owner) = AccountKeys::generate(a, EncryptionMode::ServerKey).unwrap();
        assert!(owner.is_none());
        let secret = k.secret.as_ref().unwrap();
        assert_eq!(PublicKey::from(secret), k.public.unwrap());
        assert!(k.sealer().is_encrypted());

        let (k, owner) = AccountKeys::generate(a, EncryptionMode::OwnerKey).unwrap();
        assert!(k.secret.is_none());
        let (named, secret) = owner_key::parse(&owner.unwrap()).unwrap();
        assert_eq!(named, a);
        assert_eq!(Some(PublicKey::from(&secret)), k.public);
    }

    #[test]
    fn fresh_keys_differ() {
        let a = AccountId::new();
        let (x, _) = AccountKeys::generate(a, EncryptionMode::ServerKey).unwrap();
        let (y, _) = AccountKeys::generate(a, EncryptionMode::ServerKey).unwrap();
        assert_ne!(x.hash.dedup, y.hash.dedup);
        assert_ne!(x.hash.mac, y.hash.mac);
        assert_ne!(x.public_key_bytes(), y.public_key_bytes());
        assert_ne!(x.key_id(), y.key_id());
        let (n1, _) = AccountKeys::generate(a, EncryptionMode::None).unwrap();
        let (n2, _) = AccountKeys::generate(a, EncryptionMode::None).unwrap();
        assert_ne!(n1.key_id(), n2.key_id());
        assert_eq!(n1.key_id().len(), 16);
    }

    #[test]
    fn debug_is_redacted() {
        for mode in [
            EncryptionMode::None,
            EncryptionMode::ServerKey,
            EncryptionMode::OwnerKey,
        ] {
            let (k, _) = AccountKeys::generate(AccountId::new(), mode).unwrap();
            let dbg = format!("{k:?} {k:#?}");
            let mut secrets = vec![encode_hex(&k.hash.dedup), encode_hex(&k.hash.mac)];
            secrets.push(k.hash.chunker_seed.to_string());
            if let Some(s) = &k.secret {
                secrets.push(encode_hex(s.as_bytes()));
            }
            for s in secrets {
                let prefix = s.get(..12).unwrap_or(&s);
                assert!(!dbg.contains(prefix), "{dbg} leaks {s}");
            }
            assert!(dbg.contains(&k.account.to_string()) && dbg.contains("<redacted>"));
        }
    }
}
