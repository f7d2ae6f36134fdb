//! Account records: an account's settings as stored on a destination (username, e-mail,
//! exclude globs), encrypted and authenticated under the master key so that the storage
//! provider reads nothing of them.
//!
//! Layout (version 1):
//!
//! | offset | size   | field                                                         |
//! |--------|--------|---------------------------------------------------------------|
//! | 0      | 8      | magic `BKUPREC1` (the last byte is the format version)        |
//! | 8      | 8      | master key fingerprint (binary [`MasterKey::fingerprint`])    |
//! | 16     | 24     | random XChaCha20-Poly1305 nonce                               |
//! | 40     | n + 16 | ciphertext and tag                                            |
//!
//! The AEAD key is per account: `blake3::derive_key("backup-engine 2026 account record key",
//! master key || account id)`. The associated data is bytes 0..16 followed by the account
//! id (16 bytes), so a record of another account, or one whose fingerprint was altered,
//! does not authenticate. The fingerprint is public (it only tells keys apart) and lets a
//! reader holding two keys during a rotation try the right one first.

use backup_core::model::AccountId;
use chacha20poly1305::{AeadInOut, KeyInit, XChaCha20Poly1305};
use rand::Rng;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::master::MasterKey;

const MAGIC: &[u8; 8] = b"BKUPREC1";
const FINGERPRINT_AT: usize = 8;
const NONCE_AT: usize = 16;
const HEADER_LEN: usize = 40;
const TAG_LEN: usize = 16;

fn cipher(master: &MasterKey, account: AccountId) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new((&*master.record_key(account)).into())
}

/// Associated data: the magic, the fingerprint and the account id.
fn aad(header: &[u8], account: AccountId) -> [u8; 32] {
    let mut aad = [0u8; 32];
    aad[..NONCE_AT].copy_from_slice(&header[..NONCE_AT]);
    aad[NONCE_AT..].copy_from_slice(account.as_bytes());
    aad
}

/// The fingerprint of the master key a record names, if the bytes look like a record.
pub(crate) fn named_key(sealed: &[u8]) -> Option<[u8; 8]> {
    if sealed.len() < HEADER_LEN + TAG_LEN || &sealed[..MAGIC.len()] != MAGIC {
        return None;
    }
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&sealed[FINGERPRINT_AT..NONCE_AT]);
    Some(fingerprint)
}

impl MasterKey {
    /// Encrypts and authenticates a record about `account` (layout: see the `record`
    /// module docs). Each call uses a fresh nonce.
    pub fn seal_record(&self, account: AccountId, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.fingerprint_bytes());
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let (header, body) = out.split_at_mut(HEADER_LEN);
        let sealed = cipher(self, account).encrypt_inout_detached(
            (&nonce).into(),
            &aad(header, account),
            body.into(),
        );
        match sealed {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                Ok(out)
            }
            Err(_) => {
                out.zeroize();
                Err(Error::crypto("cannot seal the account record"))
            }
        }
    }

    /// Opens a record [`MasterKey::seal_record`] made for `account` with this key. Anything
    /// else (another account's record, another key's, altered, truncated or extended bytes)
    /// is [`Error::Integrity`].
    pub fn open_record(&self, account: AccountId, sealed: &[u8]) -> Result<Vec<u8>> {
        let object = || format!("account record of account {account}");
        if named_key(sealed).is_none() {
            return Err(Error::integrity(
                object(),
                format!("not an account record ({} bytes)", sealed.len()),
            ));
        }
        let (header, rest) = sealed.split_at(HEADER_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&header[NONCE_AT..]);
        let mut tag_bytes = [0u8; TAG_LEN];
        tag_bytes.copy_from_slice(tag);
        let mut plaintext = Zeroizing::new(ciphertext.to_vec());
        cipher(self, account)
            .decrypt_inout_detached(
                (&nonce).into(),
                &aad(header, account),
                plaintext.as_mut_slice().into(),
                (&tag_bytes).into(),
            )
            .map_err(|_| {
                Error::integrity(
                    object(),
                    "does not authenticate: sealed under another master key or for another \
                     account, or altered",
                )
            })?;
        Ok(std::mem::take(&mut *plaintext))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_as_documented() {
        let master = MasterKey::generate();
        let account = AccountId::new();
        let sealed = master.seal_record(account, b"settings").unwrap();
        assert_eq!(sealed.len(), HEADER_LEN + 8 + TAG_LEN);
        assert_eq!(&sealed[..8], b"BKUPREC1");
        assert_eq!(named_key(&sealed), Some(master.fingerprint_bytes()));
        assert_eq!(master.open_record(account, &sealed).unwrap(), b"settings");
        // An empty record is a record too.
        let empty = master.seal_record(account, b"").unwrap();
        assert_eq!(master.open_record(account, &empty).unwrap(), b"");
    }

    #[test]
    fn record_keys_differ_per_account_and_master_key() {
        let master = MasterKey::from_bytes([1; 32]);
        let (a, b) = (AccountId::new(), AccountId::new());
        assert_ne!(*master.record_key(a), *master.record_key(b));
        assert_ne!(
            *master.record_key(a),
            *MasterKey::from_bytes([2; 32]).record_key(a)
        );
        assert_ne!(*master.record_key(a), *master.wrapping_key());
    }
}
