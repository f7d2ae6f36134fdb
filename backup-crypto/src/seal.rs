//! Sealing and opening content: X25519 + BLAKE3 `derive_key` + XChaCha20-Poly1305.
//!
//! - Session (one per pack or snapshot object): a fresh ephemeral X25519 secret `e`;
//!   `shared = X25519(e, account_pk)`; `key = blake3::derive_key(SEAL_CONTEXT,
//!   shared || e_pk || account_pk)`. Header (stored once per object, 33 bytes):
//!   `scheme (1 byte, 1 = x25519-xchacha20poly1305 v1) || e_pk (32 bytes)`.
//! - Blob: `nonce (24 random bytes) || ciphertext || tag (16 bytes)`, the caller's AAD bound.
//!
//! The sealer holds only the account's public key: whoever holds it can write but not read.

use std::fmt;

use backup_core::ports::{ContentOpener, ContentSealer, OpenSession, SealSession, ServerKeys};
use backup_core::{Error, Result};
use chacha20poly1305::{AeadInOut, KeyInit, XChaCha20Poly1305};
use rand::Rng;
use x25519_dalek::{EphemeralSecret, PublicKey, SharedSecret, StaticSecret};
use zeroize::Zeroizing;

/// Scheme byte of the v1 construction.
pub(crate) const SCHEME_X25519_XCHACHA_V1: u8 = 1;
const SEAL_CONTEXT: &str = "backup-crypto 2026-01 seal v1 x25519-xchacha20poly1305 content key";
const HEADER_LEN: usize = 1 + 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a sealed blob has beyond its plaintext.
pub(crate) const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// The content key of one session.
fn content_key(shared: &SharedSecret, eph: &PublicKey, account: &PublicKey) -> XChaCha20Poly1305 {
    let mut h = blake3::Hasher::new_derive_key(SEAL_CONTEXT);
    h.update(shared.as_bytes());
    h.update(eph.as_bytes());
    h.update(account.as_bytes());
    let key = Zeroizing::new(*h.finalize().as_bytes());
    XChaCha20Poly1305::new((&*key).into())
}

/// Writer side of an encrypted account: server-held keys and the account public key.
pub(crate) struct X25519Sealer {
    keys: ServerKeys,
    account_pk: PublicKey,
}

impl X25519Sealer {
    pub(crate) fn new(keys: ServerKeys, account_pk: PublicKey) -> Self {
        Self { keys, account_pk }
    }
}

impl fmt::Debug for X25519Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X25519Sealer")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl ContentSealer for X25519Sealer {
    fn server_keys(&self) -> &ServerKeys {
        &self.keys
    }

    fn is_encrypted(&self) -> bool {
        true
    }

    fn begin(&self) -> Result<Box<dyn SealSession>> {
        let eph = EphemeralSecret::random_from_rng(&mut rand::rng());
        let eph_pk = PublicKey::from(&eph);
        let shared = eph.diffie_hellman(&self.account_pk);
        if !shared.was_contributory() {
            return Err(Error::Crypto {
                reason: "the account public key is a low-order point: its key envelope is corrupt"
                    .into(),
            });
        }
        let mut header = [0u8; HEADER_LEN];
        header[0] = SCHEME_X25519_XCHACHA_V1;
        header[1..].copy_from_slice(eph_pk.as_bytes());
        Ok(Box::new(X25519SealSession {
            header,
            aead: content_key(&shared, &eph_pk, &self.account_pk),
        }))
    }
}

/// One object's sealing session. The AEAD key is wiped on drop.
struct X25519SealSession {
    header: [u8; HEADER_LEN],
    aead: XChaCha20Poly1305,
}

impl SealSession for X25519SealSession {
    fn header(&self) -> &[u8] {
        &self.header
    }

    fn seal(&self, aad: &[u8], buf: &mut Vec<u8>) -> Result<()> {
        let n = buf.len();
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        // One reservation for nonce and tag, then shift the plaintext to make room for
        // the nonce and encrypt it where it lies.
        buf.reserve_exact(OVERHEAD);
        buf.resize(n + NONCE_LEN, 0);
        buf.copy_within(..n, NONCE_LEN);
        buf[..NONCE_LEN].copy_from_slice(&nonce);
        match self
            .aead
            .encrypt_inout_detached((&nonce).into(), aad, (&mut buf[NONCE_LEN..]).into())
        {
            Ok(tag) => {
                buf.extend_from_slice(&tag);
                Ok(())
            }
            Err(_) => {
                buf.clear();
                Err(Error::Crypto {
                    reason: format!("cannot seal a blob of {n} bytes (too long for the cipher)"),
                })
            }
        }
    }
}

/// Reader side of an encrypted account: the account secret (server-held, or the owner's
/// key given for this restore) and its public key.
pub(crate) struct X25519Opener {
    secret: StaticSecret,
    account_pk: PublicKey,
}

impl X25519Opener {
    pub(crate) fn new(secret: StaticSecret, account_pk: PublicKey) -> Self {
        Self { secret, account_pk }
    }
}

impl fmt::Debug for X25519Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("X25519Opener(<redacted>)")
    }
}

impl ContentOpener for X25519Opener {
    fn open_session(&self, header: &[u8]) -> Result<Box<dyn OpenSession>> {
        let bad = |reason: String| Err(Error::integrity("seal header", reason));
        match header.first() {
            None => {
                return bad(
                    "the object is not encrypted, but this account's content must be".into(),
                );
            }
            Some(&SCHEME_X25519_XCHACHA_V1) => {}
            Some(other) => return bad(format!("unknown sealing scheme {other}")),
        }
        let Ok(eph) = <[u8; 32]>::try_from(&header[1..]) else {
            return bad(format!(
                "{} bytes, expected {HEADER_LEN} for scheme {SCHEME_X25519_XCHACHA_V1}",
                header.len()
            ));
        };
        let eph_pk = PublicKey::from(eph);
        let shared = self.secret.diffie_hellman(&eph_pk);
        if !shared.was_contributory() {
            return bad("the ephemeral public key is a low-order point".into());
        }
        Ok(Box::new(X25519OpenSession {
            aead: content_key(&shared, &eph_pk, &self.account_pk),
        }))
    }
}

/// One object's opening session. The AEAD key is wiped on drop.
struct X25519OpenSession {
    aead: XChaCha20Poly1305,
}

impl OpenSession for X25519OpenSession {
    /// On any error `buf` is left empty, so nothing in it can be taken for plaintext.
    fn open(&self, aad: &[u8], buf: &mut Vec<u8>) -> Result<()> {
        let len = buf.len();
        if len < OVERHEAD {
            buf.clear();
            return Err(Error::integrity(
                "sealed blob",
                format!("truncated: {len} bytes, a sealed blob has at least {OVERHEAD}"),
            ));
        }
        let end = len - TAG_LEN;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&buf[..NONCE_LEN]);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&buf[end..]);
        let opened = self.aead.decrypt_inout_detached(
            (&nonce).into(),
            aad,
            (&mut buf[NONCE_LEN..end]).into(),
            (&tag).into(),
        );
        if opened.is_err() {
            buf.clear();
            return Err(Error::integrity(
                "sealed blob",
                "does not authenticate: it was altered or truncated, sealed for another \
                 account or key, or read with the wrong associated data",
            ));
        }
        buf.copy_within(NONCE_LEN..end, 0);
        buf.truncate(end - NONCE_LEN);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (X25519Sealer, X25519Opener) {
        let secret = StaticSecret::random_from_rng(&mut rand::rng());
        let pk = PublicKey::from(&secret);
        (
            X25519Sealer::new(ServerKeys::new([1; 32], [2; 32], 3), pk),
            X25519Opener::new(secret, pk),
        )
    }

    #[test]
    fn layout_and_round_trip() {
        let (sealer, opener) = pair();
        let s = sealer.begin().unwrap();
        assert_eq!(s.header().len(), HEADER_LEN);
        assert_eq!(s.header()[0], 1);
        let mut buf = b"hello world".to_vec();
        s.seal(b"aad", &mut buf).unwrap();
        assert_eq!(buf.len(), 11 + OVERHEAD);
        assert!(!buf.windows(5).any(|w| w == b"hello"));
        let o = opener.open_session(s.header()).unwrap();
        o.open(b"aad", &mut buf).unwrap();
        assert_eq!(buf, b"hello world");
    }

    #[test]
    fn sessions_use_fresh_ephemeral_keys_and_nonces() {
        let (sealer, _) = pair();
        let a = sealer.begin().unwrap();
        let b = sealer.begin().unwrap();
        assert_ne!(a.header(), b.header());
        let (mut x, mut y) = (b"same".to_vec(), b"same".to_vec());
        a.seal(b"", &mut x).unwrap();
        a.seal(b"", &mut y).unwrap();
        assert_ne!(x, y);
    }

    #[test]
    fn low_order_points_are_refused() {
        let (_, opener) = pair();
        let mut header = [0u8; HEADER_LEN];
        header[0] = 1;
        let e = opener.open_session(&header).err().unwrap();
        assert_eq!(e.kind(), backup_core::ErrorKind::Integrity, "{e}");

        let sealer = X25519Sealer::new(ServerKeys::zero(), PublicKey::from([0; 32]));
        let e = sealer.begin().err().unwrap();
        assert!(matches!(e, Error::Crypto { .. }), "{e}");
    }

    #[test]
    fn debug_is_redacted() {
        let secret = StaticSecret::from([0xcd; 32]);
        let pk = PublicKey::from(&secret);
        let o = X25519Opener::new(secret, pk);
        let s = X25519Sealer::new(ServerKeys::new([0xcd; 32], [0xcd; 32], 1), pk);
        let dbg = format!("{o:?} {s:?} {o:#?} {s:#?}");
        assert!(!dbg.contains("cdcd") && !dbg.contains("205"), "{dbg}");
    }
}
