//! Index objects: the trailers of several packs gathered in one object, so that loading an
//! account's blob locations takes a few reads instead of one per pack. Always rebuildable
//! from the pack trailers.
//!
//! ```text
//! "BKUPINDX" | version u16 | pack count u32
//! per pack:  pack id [32] | pack length u64 | trailer length u32 | trailer bytes
//! MAC [32]   keyed BLAKE3 (index domain) of every preceding byte; also the object's name
//! ```

use super::format::{ByteReader, FORMAT_VERSION, INDEX_MAGIC, len_u32};
use super::pack::PackTrailer;
use crate::error::{Error, Result};
use crate::model::{ChunkId, PackId};
use crate::ports::{MacDomain, ServerKeys};

/// The index version written: 2, whose trailers may list groups (version 1 is still read).
pub const INDEX_VERSION: u16 = 2;

/// One pack as an index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedPack {
    /// Pack id.
    pub id: PackId,
    /// Pack length in bytes.
    pub len: u64,
    /// Its trailer.
    pub trailer: PackTrailer,
}

/// Encodes an index object; returns its id (the MAC) and bytes.
pub fn encode_index(keys: &ServerKeys, packs: &[IndexedPack]) -> Result<(ChunkId, Vec<u8>)> {
    let mut out = Vec::new();
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    out.extend_from_slice(&len_u32(packs.len(), "index")?.to_le_bytes());
    for p in packs {
        let t = p.trailer.encode()?;
        out.extend_from_slice(&p.id.0);
        out.extend_from_slice(&p.len.to_le_bytes());
        out.extend_from_slice(&len_u32(t.len(), "trailer")?.to_le_bytes());
        out.extend_from_slice(&t);
    }
    let mac = keys.mac(MacDomain::Index, &out);
    out.extend_from_slice(&mac);
    Ok((ChunkId(mac), out))
}

/// Parses and authenticates an index object named `id`.
pub fn decode_index(keys: &ServerKeys, id: &ChunkId, bytes: &[u8]) -> Result<Vec<IndexedPack>> {
    let object = format!("index {id}");
    if bytes.len() < 32 {
        return Err(Error::integrity(&object, "truncated"));
    }
    let (body, mac) = bytes.split_at(bytes.len() - 32);
    let mut tag = [0u8; 32];
    tag.copy_from_slice(mac);
    if tag != id.0 || !keys.verify_mac(MacDomain::Index, body, &tag) {
        return Err(Error::integrity(
            &object,
            "index does not authenticate (tampered, renamed or from another account)",
        ));
    }
    let mut r = ByteReader::new(body, &object);
    r.magic_and_versions(INDEX_MAGIC, &[FORMAT_VERSION, INDEX_VERSION])?;
    let count = r.u32()? as usize;
    let mut packs = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let pid = ChunkId(r.array()?);
        let len = r.u64()?;
        let tlen = r.u32()? as usize;
        let trailer = PackTrailer::decode(r.bytes(tlen)?, &object, None)?;
        packs.push(IndexedPack {
            id: pid,
            len,
            trailer,
        });
    }
    r.finish()?;
    Ok(packs)
}
