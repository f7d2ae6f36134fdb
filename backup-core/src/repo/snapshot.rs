//! Snapshot objects: a server-readable, MAC-authenticated header and sealed metadata.
//!
//! ```text
//! "BKUPSNAP" | version u16
//! header length u32 | header (postcard SnapshotHeader)
//! seal header length u16 | seal header
//! sealed length u32 | sealed metadata (postcard SnapshotMeta, sealed, AAD = snapshot id)
//! MAC [32]   keyed BLAKE3 (snapshot domain) of every preceding byte
//! ```
//! The header names the snapshot and account (checked against the object's name and the
//! account reading it, so an old header served under a new id is refused) and lists every
//! blob the snapshot references, so the server can verify structure (and, later, collect
//! garbage) without the content key. The sealed part holds each item's root tree.

use serde::{Deserialize, Serialize};

use super::format::{ByteReader, FORMAT_VERSION, SNAPSHOT_MAGIC, decode, encode, len_u32};
use crate::error::{Error, Result};
use crate::model::{
    AccountId, BackupStats, ChunkId, DestinationId, ItemKind, ItemStats, JobId, Snapshot,
    SnapshotId, SnapshotItem, SnapshotKind,
};
use crate::ports::{ContentOpener, MacDomain, SealSession, ServerKeys};

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotHeader {
    id: SnapshotId,
    account: AccountId,
    job: Option<JobId>,
    destination: DestinationId,
    created_ms: i64,
    kind: u8,
    items: Vec<(u8, ItemStats)>,
    stats: BackupStats,
    encrypted: bool,
    references: Vec<ChunkId>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotMeta {
    roots: Vec<(u8, ChunkId)>,
}

/// A snapshot as stored: the catalog view, the blobs it references and each item's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotObject {
    /// The catalog view.
    pub snapshot: Snapshot,
    /// Every blob (data and tree) the snapshot needs, sorted.
    pub references: Vec<ChunkId>,
    /// Root tree of each item; `None` when read without the content key.
    pub roots: Option<Vec<(ItemKind, ChunkId)>>,
}

impl SnapshotObject {
    /// Encodes the object, sealing the roots with `session`.
    pub fn encode(&self, keys: &ServerKeys, session: &dyn SealSession) -> Result<Vec<u8>> {
        let s = &self.snapshot;
        let roots = self
            .roots
            .as_ref()
            .ok_or_else(|| Error::invalid("snapshot object", "roots are required to write"))?;
        let header = SnapshotHeader {
            id: s.id,
            account: s.account,
            job: s.job,
            destination: s.destination,
            created_ms: s.created.timestamp_millis(),
            kind: s.kind.code(),
            items: s.items.iter().map(|i| (i.kind.code(), i.stats)).collect(),
            stats: s.stats,
            encrypted: s.encrypted,
            references: self.references.clone(),
        };
        let header = encode(&header)?;
        let mut sealed = encode(&SnapshotMeta {
            roots: roots.iter().map(|(k, id)| (k.code(), *id)).collect(),
        })?;
        session.seal(s.id.as_bytes(), &mut sealed)?;
        let seal_header = session.header();

        let mut out = Vec::with_capacity(header.len() + sealed.len() + 96);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&len_u32(header.len(), "snapshot header")?.to_le_bytes());
        out.extend_from_slice(&header);
        let h = u16::try_from(seal_header.len())
            .map_err(|_| Error::invalid("seal header", "longer than 65535 bytes"))?;
        out.extend_from_slice(&h.to_le_bytes());
        out.extend_from_slice(seal_header);
        out.extend_from_slice(&len_u32(sealed.len(), "snapshot metadata")?.to_le_bytes());
        out.extend_from_slice(&sealed);
        let mac = keys.mac(MacDomain::Snapshot, &out);
        out.extend_from_slice(&mac);
        Ok(out)
    }

    /// Parses and authenticates a snapshot object stored as `id` for `account`. With an
    /// opener the roots are opened too; without one they are `None`.
    pub fn decode(
        keys: &ServerKeys,
        opener: Option<&dyn ContentOpener>,
        account: AccountId,
        id: SnapshotId,
        bytes: &[u8],
    ) -> Result<Self> {
        let object = format!("snapshot {id}");
        if bytes.len() < 32 {
            return Err(Error::integrity(&object, "truncated"));
        }
        let (body, mac) = bytes.split_at(bytes.len() - 32);
        let mut tag = [0u8; 32];
        tag.copy_from_slice(mac);
        if !keys.verify_mac(MacDomain::Snapshot, body, &tag) {
            return Err(Error::integrity(
                &object,
                "snapshot does not authenticate (tampered, or from another account)",
            ));
        }
        let mut r = ByteReader::new(body, &object);
        r.magic_and_version(SNAPSHOT_MAGIC)?;
        let hlen = r.u32()? as usize;
        let header: SnapshotHeader = decode(r.bytes(hlen)?, &object)?;
        let slen = usize::from(r.u16()?);
        let seal_header = r.bytes(slen)?;
        let mlen = r.u32()? as usize;
        let sealed = r.bytes(mlen)?;
        r.finish()?;

        if header.id != id {
            return Err(Error::integrity(
                &object,
                format!("object holds snapshot {}, not {id}", header.id),
            ));
        }
        if header.account != account {
            return Err(Error::integrity(
                &object,
                "snapshot belongs to another account",
            ));
        }
        let created = chrono::DateTime::from_timestamp_millis(header.created_ms)
            .ok_or_else(|| Error::integrity(&object, "creation time out of range"))?;
        let kind = SnapshotKind::from_code(header.kind)
            .ok_or_else(|| Error::integrity(&object, "unknown snapshot kind"))?;
        let mut items = Vec::with_capacity(header.items.len());
        for (code, stats) in &header.items {
            let kind = ItemKind::from_code(*code)
                .ok_or_else(|| Error::integrity(&object, format!("unknown item kind {code}")))?;
            items.push(SnapshotItem {
                kind,
                stats: *stats,
            });
        }
        let roots = match opener {
            None => None,
            Some(opener) => {
                let session = opener.open_session(seal_header)?;
                let mut buf = sealed.to_vec();
                session.open(id.as_bytes(), &mut buf)?;
                let meta: SnapshotMeta = decode(&buf, &object)?;
                let mut roots = Vec::with_capacity(meta.roots.len());
                for (code, tree) in meta.roots {
                    let kind = ItemKind::from_code(code).ok_or_else(|| {
                        Error::integrity(&object, format!("unknown item kind {code}"))
                    })?;
                    roots.push((kind, tree));
                }
                Some(roots)
            }
        };
        Ok(Self {
            snapshot: Snapshot {
                id,
                account,
                job: header.job,
                destination: header.destination,
                created,
                kind,
                items,
                encrypted: header.encrypted,
                locked: false,
                stats: header.stats,
            },
            references: header.references,
            roots,
        })
    }
}
