//! Snapshot objects: a server-readable, MAC-authenticated header and sealed metadata.
//!
//! ```text
//! "BKUPSNAP" | version u16 (3; versions 1 and 2 are still read)
//! header length u32 | header (postcard SnapshotHeader)
//! seal header length u16 | seal header
//! sealed length u32 | sealed metadata (postcard SnapshotMeta, sealed, AAD = snapshot id)
//! MAC [32]   keyed BLAKE3 (snapshot domain) of every preceding byte
//! ```
//! The header names the snapshot and account (checked against the object's name and the
//! account reading it, so an old header served under a new id is refused) and lists every
//! blob the snapshot references, so the server can verify structure (and, later, collect
//! garbage) without the content key. The sealed part holds each item's root tree.
//!
//! Version 2 lists references per pack: the pack's id and a bitmap over its trailer's
//! entries, about one bit per blob instead of version 1's 32-byte blob id, so a snapshot of
//! a million files costs kilobytes, not 32 MB, on every snapshot kept.
//!
//! Version 3 adds the snapshot's status to the header and, to the sealed metadata, each
//! item root's own attributes and the names of the owners its trees record; its tree blobs
//! are [`TreeVersion::V2`] (versions 1 and 2: [`TreeVersion::V1`]).

use serde::{Deserialize, Serialize};

use super::format::{ByteReader, SNAPSHOT_MAGIC, decode, encode, len_u32};
use super::tree::{Attrs, TreeVersion};
use crate::error::{Error, Result};
use crate::model::{
    AccountId, BackupStats, ChunkId, DestinationId, ItemKind, ItemStats, JobId, PackId, Snapshot,
    SnapshotId, SnapshotItem, SnapshotKind, SnapshotStatus,
};
use crate::ports::{ContentOpener, MacDomain, SealSession, ServerKeys};

/// The snapshot object version written for [`References::Packs`].
pub const SNAPSHOT_VERSION: u16 = 3;
/// The version with pack references but no status, root attributes or owner names.
const SNAPSHOT_VERSION_PACKS: u16 = 2;
/// The version whose header lists every referenced blob id ([`References::Blobs`]).
const SNAPSHOT_VERSION_BLOB_IDS: u16 = 1;

/// The server-readable header; `R` is the references' form (by version), `S` the status
/// (`()` before version 3: postcard writes nothing for it).
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotHeader<R, S> {
    id: SnapshotId,
    account: AccountId,
    job: Option<JobId>,
    destination: DestinationId,
    created_ms: i64,
    kind: u8,
    items: Vec<(u8, ItemStats)>,
    stats: BackupStats,
    encrypted: bool,
    references: R,
    status: S,
}

/// The blobs a snapshot uses in one pack: a bitmap over the pack trailer's entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackReference {
    /// The pack.
    pub pack: PackId,
    /// Bit `i` (byte `i / 8`, bit `i % 8`, least significant first) is set when the snapshot
    /// uses entry `i` of the pack's trailer. At least one bit is set; no trailing zero byte.
    bits: Vec<u8>,
}

impl PackReference {
    /// A reference to entries `indices` of `pack`; `None` when there are none.
    pub fn new(pack: PackId, indices: impl IntoIterator<Item = usize>) -> Option<Self> {
        let mut bits = Vec::new();
        for i in indices {
            set_entry_bit(&mut bits, i);
        }
        Self::from_bits(pack, bits)
    }

    /// A reference to all `count` entries of `pack`; `None` when `count` is 0.
    pub fn all(pack: PackId, count: usize) -> Option<Self> {
        let mut bits = vec![0xff; count / 8];
        if !count.is_multiple_of(8) {
            bits.push((1u8 << (count % 8)) - 1);
        }
        Self::from_bits(pack, bits)
    }

    /// A reference from a bitmap as [`PackReference::bits`] describes it (trailing zero
    /// bytes dropped); `None` when no bit is set.
    pub fn from_bits(pack: PackId, mut bits: Vec<u8>) -> Option<Self> {
        while bits.last() == Some(&0) {
            bits.pop();
        }
        (!bits.is_empty()).then_some(Self { pack, bits })
    }

    /// The bitmap: bit `i` set when entry `i` is used.
    pub fn bits(&self) -> &[u8] {
        &self.bits
    }

    /// The trailer entries used, ascending.
    pub fn indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.bits.iter().enumerate().flat_map(|(byte, b)| {
            (0..8)
                .filter(move |bit| b & (1 << bit) != 0)
                .map(move |bit| byte * 8 + bit)
        })
    }

    /// How many entries are used.
    pub fn count(&self) -> usize {
        self.bits.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// Adds the entries `other` uses (both of the same pack).
    fn merge(&mut self, other: &Self) {
        if self.bits.len() < other.bits.len() {
            self.bits.resize(other.bits.len(), 0);
        }
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            *a |= b;
        }
    }
}

/// Sets bit `i` of a [`PackReference`] bitmap, growing it as needed.
pub(crate) fn set_entry_bit(bits: &mut Vec<u8>, i: usize) {
    if bits.len() <= i / 8 {
        bits.resize(i / 8 + 1, 0);
    }
    bits[i / 8] |= 1 << (i % 8);
}

/// Sorts references by pack and merges those of the same pack.
pub fn normalize_references(mut refs: Vec<PackReference>) -> Vec<PackReference> {
    refs.sort_unstable_by_key(|r| r.pack);
    let mut out: Vec<PackReference> = Vec::with_capacity(refs.len());
    for r in refs {
        match out.last_mut() {
            Some(last) if last.pack == r.pack => last.merge(&r),
            _ => out.push(r),
        }
    }
    out
}

/// What a snapshot references, in the form of its object's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum References {
    /// Version 2: per pack, the trailer entries used (sorted by pack, one per pack).
    Packs(Vec<PackReference>),
    /// Version 1: every blob id, sorted and unique.
    Blobs(Vec<ChunkId>),
}

/// The sealed metadata; `X` is what version 3 adds (`()` before).
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotMeta<X> {
    roots: Vec<(u8, ChunkId)>,
    extra: X,
}

/// What version 3 adds to the sealed metadata.
#[derive(Debug, Default, Serialize, Deserialize)]
struct MetaExtra {
    root_attrs: Vec<(u8, Attrs)>,
    users: Vec<(u32, String)>,
    groups: Vec<(u32, String)>,
}

/// The names of the owners a snapshot's trees record, for restores onto another server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnerNames {
    /// User id and name.
    pub users: Vec<(u32, String)>,
    /// Group id and name.
    pub groups: Vec<(u32, String)>,
}

/// What the sealed part of a snapshot object holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotContent {
    /// Root tree of each item.
    pub roots: Vec<(ItemKind, ChunkId)>,
    /// How the snapshot's tree blobs are encoded.
    pub trees: TreeVersion,
    /// The item roots' own attributes (mode, owner, mtime, extended attributes), for the
    /// tree items that have them (version 3).
    pub root_attrs: Vec<(ItemKind, Attrs)>,
    /// Names of the owners recorded in the trees (version 3).
    pub names: OwnerNames,
}

/// A snapshot as stored: the catalog view, the blobs it references and each item's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotObject {
    /// The catalog view.
    pub snapshot: Snapshot,
    /// Every blob (data and tree) the snapshot needs.
    pub references: References,
    /// The sealed part (roots and attributes); `None` when read without the content key.
    pub content: Option<SnapshotContent>,
}

impl SnapshotObject {
    /// Encodes the object, sealing the roots with `session`.
    pub fn encode(&self, keys: &ServerKeys, session: &dyn SealSession) -> Result<Vec<u8>> {
        let s = &self.snapshot;
        let content = self
            .content
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
            references: (),
            status: (),
        };
        let roots = content
            .roots
            .iter()
            .map(|(k, id)| (k.code(), *id))
            .collect();
        // Version 1 is written only for tests of old repositories; it has version 1 trees.
        let (version, header, mut sealed) = match &self.references {
            References::Packs(refs) => (
                SNAPSHOT_VERSION,
                encode(&header.map(|()| refs).with_status(s.status.code()))?,
                encode(&SnapshotMeta {
                    roots,
                    extra: MetaExtra {
                        root_attrs: (content.root_attrs.iter())
                            .map(|(k, a)| (k.code(), a.clone()))
                            .collect(),
                        users: content.names.users.clone(),
                        groups: content.names.groups.clone(),
                    },
                })?,
            ),
            References::Blobs(ids) => (
                SNAPSHOT_VERSION_BLOB_IDS,
                encode(&header.map(|()| ids))?,
                encode(&SnapshotMeta { roots, extra: () })?,
            ),
        };
        session.seal(s.id.as_bytes(), &mut sealed)?;
        let seal_header = session.header();

        let mut out = Vec::with_capacity(header.len() + sealed.len() + 96);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
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
        let version = r.magic_and_versions(
            SNAPSHOT_MAGIC,
            &[
                SNAPSHOT_VERSION_BLOB_IDS,
                SNAPSHOT_VERSION_PACKS,
                SNAPSHOT_VERSION,
            ],
        )?;
        let hlen = r.u32()? as usize;
        let header = r.bytes(hlen)?;
        let header: SnapshotHeader<References, u8> = match version {
            SNAPSHOT_VERSION => {
                let h: SnapshotHeader<Vec<PackReference>, u8> = decode(header, &object)?;
                check_pack_references(&h.references, &object)?;
                h.map(References::Packs)
            }
            SNAPSHOT_VERSION_PACKS => {
                let h: SnapshotHeader<Vec<PackReference>, ()> = decode(header, &object)?;
                check_pack_references(&h.references, &object)?;
                h.map(References::Packs)
                    .with_status(SnapshotStatus::Complete.code())
            }
            _ => {
                let h: SnapshotHeader<Vec<ChunkId>, ()> = decode(header, &object)?;
                h.map(References::Blobs)
                    .with_status(SnapshotStatus::Complete.code())
            }
        };
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
        let status = SnapshotStatus::from_code(header.status)
            .ok_or_else(|| Error::integrity(&object, "unknown snapshot status"))?;
        let item_kind = |code: u8| {
            ItemKind::from_code(code)
                .ok_or_else(|| Error::integrity(&object, format!("unknown item kind {code}")))
        };
        let content = match opener {
            None => None,
            Some(opener) => {
                let session = opener.open_session(seal_header)?;
                let mut buf = sealed.to_vec();
                session.open(id.as_bytes(), &mut buf)?;
                let (meta, trees) = if version == SNAPSHOT_VERSION {
                    let m: SnapshotMeta<MetaExtra> = decode(&buf, &object)?;
                    (m, TreeVersion::V2)
                } else {
                    let m: SnapshotMeta<()> = decode(&buf, &object)?;
                    let m = SnapshotMeta {
                        roots: m.roots,
                        extra: MetaExtra::default(),
                    };
                    (m, TreeVersion::V1)
                };
                let mut content = SnapshotContent {
                    trees,
                    names: OwnerNames {
                        users: meta.extra.users,
                        groups: meta.extra.groups,
                    },
                    ..SnapshotContent::default()
                };
                for (code, tree) in meta.roots {
                    content.roots.push((item_kind(code)?, tree));
                }
                for (code, attrs) in meta.extra.root_attrs {
                    content.root_attrs.push((item_kind(code)?, attrs));
                }
                Some(content)
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
                status,
                items,
                encrypted: header.encrypted,
                locked: false,
                lock_until: None,
                identity: None,
                task: None,
                stats: header.stats,
            },
            references: header.references,
            content,
        })
    }
}

/// Rewrites the pack references of a stored snapshot object (version 2 or 3) through `f`,
/// keeping everything else byte for byte (the sealed metadata included, so no content key
/// is needed), and MACs it again. The object is authenticated first, as
/// [`SnapshotObject::decode`] does. `Ok(None)`: a version 1 object, whose references are
/// blob ids that a repack does not change.
pub fn rewrite_pack_references(
    keys: &ServerKeys,
    account: AccountId,
    id: SnapshotId,
    bytes: &[u8],
    f: impl FnOnce(Vec<PackReference>) -> Result<Vec<PackReference>>,
) -> Result<Option<Vec<u8>>> {
    let object = format!("snapshot {id}");
    // Authenticates the whole object and checks its id and account.
    SnapshotObject::decode(keys, None, account, id, bytes)?;
    let body = &bytes[..bytes.len() - 32];
    let mut r = ByteReader::new(body, &object);
    let version = r.magic_and_versions(
        SNAPSHOT_MAGIC,
        &[
            SNAPSHOT_VERSION_BLOB_IDS,
            SNAPSHOT_VERSION_PACKS,
            SNAPSHOT_VERSION,
        ],
    )?;
    let hlen = r.u32()? as usize;
    let header = r.bytes(hlen)?;
    let rest = r.bytes(r.remaining())?;
    let header = match version {
        SNAPSHOT_VERSION => {
            let h: SnapshotHeader<Vec<PackReference>, u8> = decode(header, &object)?;
            let h = h.try_map(f)?;
            check_pack_references(&h.references, &object)?;
            encode(&h)?
        }
        SNAPSHOT_VERSION_PACKS => {
            let h: SnapshotHeader<Vec<PackReference>, ()> = decode(header, &object)?;
            let h = h.try_map(f)?;
            check_pack_references(&h.references, &object)?;
            encode(&h)?
        }
        _ => return Ok(None),
    };
    let mut out = Vec::with_capacity(bytes.len() + 64);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&len_u32(header.len(), "snapshot header")?.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(rest);
    let mac = keys.mac(MacDomain::Snapshot, &out);
    out.extend_from_slice(&mac);
    Ok(Some(out))
}

impl<S> SnapshotHeader<Vec<PackReference>, S> {
    fn try_map(
        mut self,
        f: impl FnOnce(Vec<PackReference>) -> Result<Vec<PackReference>>,
    ) -> Result<Self> {
        self.references = f(std::mem::take(&mut self.references))?;
        Ok(self)
    }
}

impl<R, S> SnapshotHeader<R, S> {
    /// The same header with its references and status converted.
    fn convert<T, U>(
        self,
        refs: impl FnOnce(R) -> T,
        status: impl FnOnce(S) -> U,
    ) -> SnapshotHeader<T, U> {
        SnapshotHeader {
            id: self.id,
            account: self.account,
            job: self.job,
            destination: self.destination,
            created_ms: self.created_ms,
            kind: self.kind,
            items: self.items,
            stats: self.stats,
            encrypted: self.encrypted,
            references: refs(self.references),
            status: status(self.status),
        }
    }

    fn map<T>(self, f: impl FnOnce(R) -> T) -> SnapshotHeader<T, S> {
        self.convert(f, |s| s)
    }
}

impl<R> SnapshotHeader<R, ()> {
    fn with_status<S>(self, status: S) -> SnapshotHeader<R, S> {
        self.convert(|r| r, |()| status)
    }
}

/// Version 2 references must be canonical: packs strictly ascending, every bitmap with a bit
/// set and no trailing zero byte.
fn check_pack_references(refs: &[PackReference], object: &str) -> Result<()> {
    if refs.windows(2).any(|w| w[0].pack >= w[1].pack) {
        return Err(Error::integrity(
            object,
            "pack references not sorted or not unique",
        ));
    }
    if refs.iter().any(|r| r.bits.last().is_none_or(|b| *b == 0)) {
        return Err(Error::integrity(
            object,
            "a pack reference is empty or not canonical",
        ));
    }
    Ok(())
}
