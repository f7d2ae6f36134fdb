//! The key envelope: an account's keys wrapped by the master key, as stored in the catalog
//! and in the repository.
//!
//! Layout (version 1, all integers little-endian):
//!
//! | offset | size   | field                                                     |
//! |--------|--------|-----------------------------------------------------------|
//! | 0      | 8      | magic `BKUPKEYS`                                          |
//! | 8      | 2      | format version, `1`                                       |
//! | 10     | 16     | account UUID                                              |
//! | 26     | 1      | mode: 0 none, 1 server key, 2 owner key                   |
//! | 27     | 1      | public key present: 0 or 1 (1 exactly in encrypted modes)|
//! | 28     | 32     | X25519 public key (zeros when absent)                     |
//! | 60     | 24     | random XChaCha20-Poly1305 nonce                           |
//! | 84     | n + 16 | ciphertext and tag                                        |
//!
//! The plaintext (`n` = 72 or 104 bytes) is `dedup key (32) || header MAC key (32) ||
//! chunker seed (u64, 8)`, followed in server-key mode only by the X25519 secret (32). The
//! AEAD key is `blake3::derive_key("backup-crypto 2026-01 key envelope v1 wrapping key",
//! master key)`; the associated data is bytes 0..84, so every plaintext field is
//! authenticated too. Envelopes are 172 bytes (none, owner key) or 204 bytes (server key).

use backup_core::model::{AccountId, EncryptionMode};
use chacha20poly1305::{AeadInOut, KeyInit, XChaCha20Poly1305};
use rand::Rng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::account_keys::{AccountKeys, HashKeys};
use crate::error::{Error, Result};
use crate::master::MasterKey;

/// Magic bytes opening every envelope.
const MAGIC: &[u8; 8] = b"BKUPKEYS";
const VERSION: u16 = 1;
/// Length of the authenticated plaintext header (everything before the ciphertext).
const HEADER_LEN: usize = 84;
const NONCE_AT: usize = 60;
const TAG_LEN: usize = 16;
const HASH_SECRETS_LEN: usize = 32 + 32 + 8;

pub(crate) fn mode_byte(mode: EncryptionMode) -> u8 {
    match mode {
        EncryptionMode::None => 0,
        EncryptionMode::ServerKey => 1,
        EncryptionMode::OwnerKey => 2,
    }
}

fn mode_from_byte(b: u8) -> Option<EncryptionMode> {
    match b {
        0 => Some(EncryptionMode::None),
        1 => Some(EncryptionMode::ServerKey),
        2 => Some(EncryptionMode::OwnerKey),
        _ => None,
    }
}

fn secrets_len(mode: EncryptionMode) -> usize {
    match mode {
        EncryptionMode::ServerKey => HASH_SECRETS_LEN + 32,
        _ => HASH_SECRETS_LEN,
    }
}

fn cipher(master: &MasterKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new((&*master.wrapping_key()).into())
}

impl AccountKeys {
    /// Wraps these keys with the master key (format: see the `envelope` module docs). Each
    /// call uses a fresh nonce, so the bytes differ while [`AccountKeys::key_id`] does not.
    pub fn to_envelope(&self, master: &MasterKey) -> Result<Vec<u8>> {
        let len = HEADER_LEN + secrets_len(self.mode) + TAG_LEN;
        // Reserved once: the plaintext secrets are never left behind by a reallocation.
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(self.account.as_bytes());
        out.push(mode_byte(self.mode));
        match &self.public {
            Some(pk) => {
                out.push(1);
                out.extend_from_slice(pk.as_bytes());
            }
            None => {
                out.push(0);
                out.extend_from_slice(&[0; 32]);
            }
        }
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        out.extend_from_slice(&nonce);
        debug_assert_eq!(out.len(), HEADER_LEN);

        out.extend_from_slice(&self.hash.dedup);
        out.extend_from_slice(&self.hash.mac);
        out.extend_from_slice(&self.hash.chunker_seed.to_le_bytes());
        if self.mode == EncryptionMode::ServerKey {
            let secret = self.secret.as_ref().ok_or_else(|| {
                Error::crypto(format!(
                    "account {} uses a server-held key but its keys hold no secret",
                    self.account
                ))
            })?;
            out.extend_from_slice(secret.as_bytes());
        }
        let (aad, body) = out.split_at_mut(HEADER_LEN);
        let tag = cipher(master)
            .encrypt_inout_detached((&nonce).into(), aad, body.into())
            .map_err(|_| Error::crypto("cannot wrap the account keys"))?;
        out.extend_from_slice(&tag);
        debug_assert_eq!(out.len(), len);
        // Only ciphertext is left: hand the bytes out without the wiping wrapper.
        Ok(std::mem::take(&mut *out))
    }

    /// Unwraps an envelope written by [`AccountKeys::to_envelope`] for `account`.
    ///
    /// Errors: bytes that are not an envelope, truncated, altered, or wrapped by another
    /// master key are [`Error::Integrity`] (an unknown version is
    /// [`Error::UnsupportedVersion`]); a valid envelope of another account is
    /// [`Error::WrongKey`].
    pub fn from_envelope(master: &MasterKey, account: AccountId, bytes: &[u8]) -> Result<Self> {
        let object = || format!("key envelope of account {account}");
        let bad = |reason: String| Error::integrity(object(), reason);

        if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(bad("not a key envelope (magic bytes missing)".into()));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                object: object(),
                version,
            });
        }
        if bytes.len() < HEADER_LEN {
            return Err(bad(format!("truncated: {} bytes", bytes.len())));
        }
        let mode = mode_from_byte(bytes[26])
            .ok_or_else(|| bad(format!("unknown encryption mode {}", bytes[26])))?;
        let public = match (bytes[27], mode.is_encrypted()) {
            (0, false) => None,
            (1, true) => {
                let mut pk = [0u8; 32];
                pk.copy_from_slice(&bytes[28..60]);
                Some(PublicKey::from(pk))
            }
            (flag, _) => {
                return Err(bad(format!(
                    "public key flag {flag} does not fit mode {}",
                    mode.as_str()
                )));
            }
        };
        let expected = HEADER_LEN + secrets_len(mode) + TAG_LEN;
        if bytes.len() != expected {
            return Err(bad(format!(
                "{} bytes, expected {expected} for mode {}",
                bytes.len(),
                mode.as_str()
            )));
        }

        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&bytes[NONCE_AT..HEADER_LEN]);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&bytes[expected - TAG_LEN..]);
        let mut secrets = Zeroizing::new(bytes[HEADER_LEN..expected - TAG_LEN].to_vec());
        cipher(master)
            .decrypt_inout_detached(
                (&nonce).into(),
                &bytes[..HEADER_LEN],
                secrets.as_mut_slice().into(),
                (&tag).into(),
            )
            .map_err(|_| {
                bad(
                    "does not authenticate: the master key may be wrong, or the envelope \
                     was altered or damaged"
                        .into(),
                )
            })?;

        let mut stored = [0u8; 16];
        stored.copy_from_slice(&bytes[10..26]);
        if &stored != account.as_bytes() {
            return Err(Error::wrong_key(format!(
                "the key envelope belongs to account {}, not to account {account}",
                format_uuid(&stored)
            )));
        }

        let mut hash = HashKeys {
            dedup: [0; 32],
            mac: [0; 32],
            chunker_seed: 0,
        };
        hash.dedup.copy_from_slice(&secrets[..32]);
        hash.mac.copy_from_slice(&secrets[32..64]);
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&secrets[64..72]);
        hash.chunker_seed = u64::from_le_bytes(seed);
        let secret = if mode == EncryptionMode::ServerKey {
            let mut raw = Zeroizing::new([0u8; 32]);
            raw.copy_from_slice(&secrets[72..104]);
            let secret = StaticSecret::from(*raw);
            if Some(PublicKey::from(&secret)) != public {
                return Err(bad(
                    "the stored secret does not match the stored public key".into(),
                ));
            }
            Some(secret)
        } else {
            None
        };
        Ok(Self {
            account,
            mode,
            hash,
            public,
            secret,
        })
    }
}

/// Hyphenated lower-case form of 16 UUID bytes.
fn format_uuid(bytes: &[u8; 16]) -> String {
    backup_core::model::AccountId::from_bytes(*bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_as_documented() {
        let master = MasterKey::generate();
        let account = AccountId::new();
        for (mode, len) in [
            (EncryptionMode::None, 172),
            (EncryptionMode::ServerKey, 204),
            (EncryptionMode::OwnerKey, 172),
        ] {
            let (keys, _) = AccountKeys::generate(account, mode).unwrap();
            let env = keys.to_envelope(&master).unwrap();
            assert_eq!(env.len(), len);
            assert_eq!(&env[..8], b"BKUPKEYS");
            assert_eq!(&env[8..10], &[1, 0]);
            assert_eq!(&env[10..26], account.as_bytes());
            assert_eq!(env[26], mode_byte(mode));
            assert_eq!(env[27], u8::from(mode.is_encrypted()));
            match keys.public_key_bytes() {
                Some(pk) => assert_eq!(&env[28..60], &pk),
                None => assert_eq!(&env[28..60], &[0; 32]),
            }
            // No secret appears in clear.
            assert!(
                !env.windows(32)
                    .any(|w| w == keys.hash.dedup || w == keys.hash.mac)
            );
            if let Some(s) = &keys.secret {
                assert!(!env.windows(32).any(|w| w == s.as_bytes()));
            }
        }
    }

    #[test]
    fn uuid_formatting_matches_core() {
        let a = AccountId::new();
        assert_eq!(format_uuid(a.as_bytes()), a.to_string());
    }

    #[test]
    fn round_trip_keeps_every_secret() {
        let master = MasterKey::generate();
        let (keys, _) = AccountKeys::generate(AccountId::new(), EncryptionMode::ServerKey).unwrap();
        let back =
            AccountKeys::from_envelope(&master, keys.account, &keys.to_envelope(&master).unwrap())
                .unwrap();
        assert_eq!(back.hash.dedup, keys.hash.dedup);
        assert_eq!(back.hash.mac, keys.hash.mac);
        assert_eq!(back.hash.chunker_seed, keys.hash.chunker_seed);
        assert_eq!(
            back.secret.as_ref().map(StaticSecret::to_bytes),
            keys.secret.as_ref().map(StaticSecret::to_bytes)
        );
    }
}
