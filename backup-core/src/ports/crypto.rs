//! Crypto ports: what a writer holds ([`ContentSealer`]) and what a reader holds
//! ([`ContentOpener`]), plus the server-held keyed hashes shared by both ([`ServerKeys`]).
//!
//! The split protects owner-held-key accounts: a server holding only the sealer can back up,
//! deduplicate, verify and collect garbage, but has no secret that opens content.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::Result;
use crate::model::ChunkId;

/// What a keyed MAC is about; each domain uses its own derived key, so a tag made for one
/// kind of object never verifies for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MacDomain {
    /// Whole pack objects (the pack id).
    Pack,
    /// Pack trailers.
    Trailer,
    /// Snapshot objects.
    Snapshot,
    /// Index objects.
    Index,
    /// Key-less path hashes (stat cache keys).
    Path,
    /// Account records (the settings a disaster recovery restores).
    Account,
    /// The list of packs found damaged.
    Damage,
    /// The garbage collector's state (packs condemned and when they may go).
    Collection,
    /// Snapshot locks kept on the destination.
    Lock,
}

impl MacDomain {
    const ALL: [MacDomain; 9] = [
        MacDomain::Pack,
        MacDomain::Trailer,
        MacDomain::Snapshot,
        MacDomain::Index,
        MacDomain::Path,
        MacDomain::Account,
        MacDomain::Damage,
        MacDomain::Collection,
        MacDomain::Lock,
    ];

    fn context(self) -> &'static str {
        match self {
            MacDomain::Pack => "backup-engine 2026 repository v1 pack id",
            MacDomain::Trailer => "backup-engine 2026 repository v1 pack trailer mac",
            MacDomain::Snapshot => "backup-engine 2026 repository v1 snapshot mac",
            MacDomain::Index => "backup-engine 2026 repository v1 index mac",
            MacDomain::Path => "backup-engine 2026 repository v1 path hash",
            MacDomain::Account => "backup-engine 2026 repository v1 account record mac",
            MacDomain::Damage => "backup-engine 2026 repository v1 damaged packs mac",
            MacDomain::Collection => "backup-engine 2026 repository v1 collection state mac",
            MacDomain::Lock => "backup-engine 2026 repository v1 snapshot lock mac",
        }
    }

    fn slot(self) -> usize {
        Self::ALL.iter().position(|d| *d == self).unwrap_or(0)
    }
}

/// Server-held per-account secrets: the dedup key (keyed BLAKE3 chunk ids), the header MAC
/// key (from which one key per [`MacDomain`] is derived) and the chunker seed. None of them
/// decrypts content. Zeroized on drop; `Debug` is redacted.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct ServerKeys {
    dedup: [u8; 32],
    macs: [[u8; 32]; 9],
    chunker_seed: u64,
}

impl ServerKeys {
    /// Builds the keys from the dedup key, the header MAC key and the chunker seed.
    pub fn new(dedup_key: [u8; 32], mac_key: [u8; 32], chunker_seed: u64) -> Self {
        let mut macs = [[0u8; 32]; 9];
        for d in MacDomain::ALL {
            macs[d.slot()] = blake3::derive_key(d.context(), &mac_key);
        }
        let mut mac_key = mac_key;
        mac_key.zeroize();
        Self {
            dedup: dedup_key,
            macs,
            chunker_seed,
        }
    }

    /// Fixed all-zero keys for unencrypted repositories that only need checksums
    /// ([`PlainCrypto::checksums_only`]).
    pub fn zero() -> Self {
        Self::new([0; 32], [0; 32], 0)
    }

    /// The chunk id of a plaintext blob: keyed BLAKE3 with the dedup key.
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.dedup, plaintext).as_bytes())
    }

    /// Seed that varies chunk boundaries per account (not a secret key, but server-held).
    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }

    /// A keyed hasher for `domain`, for MACs over data that arrives in pieces.
    pub fn mac_hasher(&self, domain: MacDomain) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.macs[domain.slot()])
    }

    /// The MAC of `data` in `domain`.
    pub fn mac(&self, domain: MacDomain, data: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.macs[domain.slot()], data).as_bytes()
    }

    /// Checks a MAC in constant time.
    pub fn verify_mac(&self, domain: MacDomain, data: &[u8], tag: &[u8; 32]) -> bool {
        blake3::keyed_hash(&self.macs[domain.slot()], data) == blake3::Hash::from_bytes(*tag)
    }
}

impl fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerKeys(<redacted>)")
    }
}

/// Seals blobs for one pack or snapshot object. The session's [`SealSession::header`] is
/// stored once in the object (for example an ephemeral public key) and handed back to
/// [`ContentOpener::open_session`].
pub trait SealSession: Send + Sync {
    /// Bytes to store once per object; at most 65,535 bytes.
    fn header(&self) -> &[u8];
    /// Bytes a sealed item has before its ciphertext (a nonce): callers of
    /// [`SealSession::seal_at`] leave this much room before the plaintext.
    fn prefix_len(&self) -> usize;
    /// Seals, where it lies, the plaintext that follows `start + prefix_len()` in `buf`:
    /// writes the prefix over the room left at `start`, encrypts the plaintext in place and
    /// appends the tag, binding `aad`. `buf[..start]` is left as it is; on error `buf` is
    /// truncated to `start`. Lets a pack writer seal blobs inside the pack's buffer, with
    /// no copy.
    fn seal_at(&self, aad: &[u8], buf: &mut Vec<u8>, start: usize) -> Result<()>;
    /// Seals `buf` in place (plaintext in, sealed bytes out), binding `aad`.
    fn seal(&self, aad: &[u8], buf: &mut Vec<u8>) -> Result<()> {
        let prefix = self.prefix_len();
        // Room for the prefix and a tag, then the plaintext moves up once.
        buf.reserve_exact(prefix + 32);
        buf.splice(0..0, std::iter::repeat_n(0, prefix));
        self.seal_at(aad, buf, 0)
    }
}

/// Opens blobs of one object, given the header its session stored.
pub trait OpenSession: Send + Sync {
    /// Opens `buf` in place (sealed in, plaintext out), checking `aad`; a blob that does not
    /// authenticate is [`crate::Error::Integrity`].
    fn open(&self, aad: &[u8], buf: &mut Vec<u8>) -> Result<()>;
}

/// What a writer holds for an account: server-held keys and the means to seal. It holds no
/// secret that can open what it sealed.
pub trait ContentSealer: Send + Sync + fmt::Debug + 'static {
    /// The server-held keyed hashes.
    fn server_keys(&self) -> &ServerKeys;
    /// Whether sealed content is encrypted (false for [`PlainCrypto`]).
    fn is_encrypted(&self) -> bool;
    /// Starts sealing one object.
    fn begin(&self) -> Result<Box<dyn SealSession>>;
}

/// What a reader holds for an account: the means to open sealed content.
pub trait ContentOpener: Send + Sync + fmt::Debug + 'static {
    /// Starts opening one object from the header its sealing session stored. A header the
    /// opener cannot use (another scheme, malformed) is [`crate::Error::Integrity`].
    fn open_session(&self, header: &[u8]) -> Result<Box<dyn OpenSession>>;
}

/// No encryption: blobs are stored as they are and authenticated by their keyed chunk ids
/// (checked on every read) and the object MACs. Implements both ports.
#[derive(Debug)]
pub struct PlainCrypto {
    keys: ServerKeys,
}

impl PlainCrypto {
    /// Plain sealing with the account's server-held keys.
    pub fn new(keys: ServerKeys) -> Self {
        Self { keys }
    }

    /// Plain sealing with fixed zero keys: checksums only, no protection against a writer
    /// that forges data (for tests and throw-away repositories).
    pub fn checksums_only() -> Self {
        Self::new(ServerKeys::zero())
    }
}

struct PlainSession;

impl SealSession for PlainSession {
    fn header(&self) -> &[u8] {
        &[]
    }
    fn prefix_len(&self) -> usize {
        0
    }
    fn seal_at(&self, _aad: &[u8], buf: &mut Vec<u8>, start: usize) -> Result<()> {
        if start > buf.len() {
            return Err(crate::Error::invalid(
                "seal",
                "start lies past the buffer's end",
            ));
        }
        Ok(())
    }
}

impl OpenSession for PlainSession {
    fn open(&self, _aad: &[u8], _buf: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }
}

impl ContentSealer for PlainCrypto {
    fn server_keys(&self) -> &ServerKeys {
        &self.keys
    }
    fn is_encrypted(&self) -> bool {
        false
    }
    fn begin(&self) -> Result<Box<dyn SealSession>> {
        Ok(Box::new(PlainSession))
    }
}

impl ContentOpener for PlainCrypto {
    fn open_session(&self, header: &[u8]) -> Result<Box<dyn OpenSession>> {
        if header.is_empty() {
            Ok(Box::new(PlainSession))
        } else {
            Err(crate::Error::integrity(
                "seal header",
                "object is encrypted but the account is opened as unencrypted",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_use_separate_keys() {
        let k = ServerKeys::new([1; 32], [2; 32], 7);
        let a = k.mac(MacDomain::Pack, b"x");
        let b = k.mac(MacDomain::Snapshot, b"x");
        assert_ne!(a, b);
        assert!(k.verify_mac(MacDomain::Pack, b"x", &a));
        assert!(!k.verify_mac(MacDomain::Snapshot, b"x", &a));
        let mut h = k.mac_hasher(MacDomain::Pack);
        h.update(b"x");
        assert_eq!(*h.finalize().as_bytes(), a);
    }

    #[test]
    fn chunk_ids_are_keyed() {
        let a = ServerKeys::new([1; 32], [2; 32], 7);
        let b = ServerKeys::new([3; 32], [2; 32], 7);
        assert_ne!(a.chunk_id(b"data"), b.chunk_id(b"data"));
        assert_eq!(a.chunk_id(b"data"), a.chunk_id(b"data"));
        assert_eq!(format!("{a:?}"), "ServerKeys(<redacted>)");
    }

    #[test]
    fn plain_refuses_encrypted_objects() {
        let p = PlainCrypto::checksums_only();
        assert!(p.open_session(&[1, 2, 3]).is_err());
        let s = p.begin().unwrap();
        let mut buf = b"abc".to_vec();
        s.seal(b"", &mut buf).unwrap();
        assert_eq!(buf, b"abc");
    }
}
