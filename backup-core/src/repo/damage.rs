//! The damaged-pack list of an account: packs a data verification found damaged (bytes that
//! no longer match the pack's id, a trailer or blob that fails authentication).
//!
//! ```text
//! "BKUPDMGD" | version u16 (1) | postcard Vec<[u8;32]> (pack ids, sorted, unique)
//! MAC [32]   keyed BLAKE3 (damage domain) of every preceding byte
//! ```
//! A backup stores again every blob it would have reused from a listed pack, and a restore
//! reads a blob from a listed pack only when no other pack holds it, so the next backup
//! heals what the damage touched for every later restore, old snapshots included.

use std::collections::BTreeSet;

use super::format::{ByteReader, decode, encode};
use crate::error::{Error, Result};
use crate::model::PackId;
use crate::ports::{MacDomain, ServerKeys};

/// Magic of the damaged-pack list.
pub const DAMAGE_MAGIC: &[u8; 8] = b"BKUPDMGD";
const DAMAGE_VERSION: u16 = 1;

/// Encodes and MACs a damaged-pack list.
pub fn encode_damage(keys: &ServerKeys, packs: &BTreeSet<PackId>) -> Result<Vec<u8>> {
    let mut out = DAMAGE_MAGIC.to_vec();
    out.extend_from_slice(&DAMAGE_VERSION.to_le_bytes());
    out.extend_from_slice(&encode(&packs.iter().collect::<Vec<_>>())?);
    let mac = keys.mac(MacDomain::Damage, &out);
    out.extend_from_slice(&mac);
    Ok(out)
}

/// Authenticates and parses a damaged-pack list.
pub fn decode_damage(keys: &ServerKeys, bytes: &[u8]) -> Result<BTreeSet<PackId>> {
    let object = "damaged-pack list";
    if bytes.len() < 32 {
        return Err(Error::integrity(object, "truncated"));
    }
    let (body, mac) = bytes.split_at(bytes.len() - 32);
    let mut tag = [0u8; 32];
    tag.copy_from_slice(mac);
    if !keys.verify_mac(MacDomain::Damage, body, &tag) {
        return Err(Error::integrity(object, "does not authenticate"));
    }
    let mut r = ByteReader::new(body, object);
    r.magic_and_versions(DAMAGE_MAGIC, &[DAMAGE_VERSION])?;
    let rest = r.bytes(r.remaining())?;
    let packs: Vec<PackId> = decode(rest, object)?;
    Ok(packs.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChunkId;

    #[test]
    fn round_trips_and_refuses_tampering() {
        let keys = ServerKeys::new([1; 32], [2; 32], 3);
        let packs: BTreeSet<PackId> = [ChunkId([5; 32]), ChunkId([1; 32])].into();
        let bytes = encode_damage(&keys, &packs).unwrap();
        assert_eq!(decode_damage(&keys, &bytes).unwrap(), packs);
        let mut bad = bytes.clone();
        bad[12] ^= 1;
        assert!(decode_damage(&keys, &bad).is_err());
        let other = ServerKeys::new([1; 32], [9; 32], 3);
        assert!(decode_damage(&other, &bytes).is_err());
        assert!(decode_damage(&keys, &[0; 10]).is_err());
    }
}
