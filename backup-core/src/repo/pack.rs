//! Packs: sealed blobs back to back, then a trailer that lists them, then a fixed footer.
//!
//! ```text
//! header   "BKUPPACK" | version u16 | pack kind u8 | 0u8                      12 bytes
//! blobs    sealed blobs and sealed groups of small blobs, back to back
//! trailer  pack kind u8 | seal header len u16 | seal header | count u32 | entries (52 B each)
//! footer   trailer len u32 | trailer MAC [32] | "BKUPTRLR"                    44 bytes
//! ```
//! The pack id (its object name) is the keyed BLAKE3 (pack domain) of every byte, so the
//! server can verify a pack without the content key. The trailer alone locates and opens
//! every blob, so indexes can always be rebuilt from trailers.
//!
//! Small data blobs are packed in groups (version 2): their plaintexts, concatenated in
//! trailer order, are compressed as one zstd frame and sealed once. Compressing a few hundred
//! KiB at a time instead of each small file alone is both faster and smaller (matches
//! across files, one set of entropy tables), and a reader decompresses at most one group
//! (at most [`GROUP_MAX_LEN`] bytes) to reach any member.

use std::collections::HashMap;

use super::format::{ByteReader, FORMAT_VERSION, PACK_MAGIC, TRAILER_MAGIC, len_u32};
use crate::error::{Error, Result};
use crate::model::{ChunkId, IdHasherBuilder, PackId};
use crate::ports::{MacDomain, OpenSession, SealSession, ServerKeys};

/// Length of the fixed footer at the end of every pack.
pub const FOOTER_LEN: usize = 44;
/// Length of the fixed header at the start of every pack.
pub const HEADER_LEN: usize = 12;
/// Length of one trailer entry.
pub const ENTRY_LEN: usize = 52;
/// The pack version written (version 2 may hold groups; version 1 packs are still read).
pub const PACK_VERSION: u16 = 2;
/// The largest plaintext a group may hold, all members together (a reader's bound).
pub const GROUP_MAX_LEN: u32 = 4 << 20;
/// Writers put data blobs smaller than this in groups.
pub(crate) const GROUP_MEMBER_MAX: usize = 64 << 10;
/// Writers close a group before it would pass this many plaintext bytes.
pub(crate) const GROUP_TARGET: usize = 256 << 10;

/// What a blob holds; data and trees live in separate packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobKind {
    /// File content.
    Data,
    /// Directory listings and other metadata.
    Tree,
}

impl BlobKind {
    fn code(self) -> u8 {
        match self {
            BlobKind::Data => 1,
            BlobKind::Tree => 2,
        }
    }

    fn from_code(code: u8, object: &str) -> Result<Self> {
        match code {
            1 => Ok(BlobKind::Data),
            2 => Ok(BlobKind::Tree),
            c => Err(Error::integrity(object, format!("unknown blob kind {c}"))),
        }
    }
}

/// How a blob's plaintext was encoded before sealing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Stored as is (compression did not shrink it).
    None,
    /// zstd frame.
    Zstd,
    /// Member of a group: the plaintexts of consecutive trailer entries sharing one offset
    /// and stored length, concatenated in trailer order, compressed as one zstd frame and
    /// sealed once.
    ZstdGroup,
}

impl Compression {
    fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 1,
            Compression::ZstdGroup => 2,
        }
    }

    fn from_code(code: u8, object: &str) -> Result<Self> {
        match code {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Zstd),
            2 => Ok(Compression::ZstdGroup),
            c => Err(Error::integrity(object, format!("unknown compression {c}"))),
        }
    }
}

/// One blob as listed in a trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrailerEntry {
    /// Chunk id (keyed BLAKE3 of the plaintext).
    pub id: ChunkId,
    /// Data or tree.
    pub kind: BlobKind,
    /// Encoding before sealing.
    pub compression: Compression,
    /// Offset of the sealed blob (or of its sealed group) in the pack.
    pub offset: u64,
    /// Length of the sealed blob (or of its sealed group).
    pub stored_len: u32,
    /// Length of the plaintext.
    pub raw_len: u32,
    /// For a group member: where its plaintext starts in the group's plaintext. Derived from
    /// the trailer's order when it is parsed (not stored); 0 otherwise.
    pub group_start: u32,
    /// For a group member: the length of the group's whole plaintext. Derived like
    /// `group_start`; 0 otherwise.
    pub group_len: u32,
}

/// The AAD a group is sealed with: its offset in the pack (a group has no single chunk id;
/// its members' ids are bound by the trailer MAC and checked after decompression).
fn group_aad(offset: u64) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..5].copy_from_slice(b"group");
    aad[5..].copy_from_slice(&offset.to_le_bytes());
    aad
}

impl TrailerEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.0);
        out.push(self.kind.code());
        out.push(self.compression.code());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.stored_len.to_le_bytes());
        out.extend_from_slice(&self.raw_len.to_le_bytes());
    }

    fn decode(r: &mut ByteReader<'_>, object: &str) -> Result<Self> {
        let id = ChunkId(r.array()?);
        let kind = BlobKind::from_code(r.u8()?, object)?;
        let compression = Compression::from_code(r.u8()?, object)?;
        let _reserved = r.u16()?;
        Ok(Self {
            id,
            kind,
            compression,
            offset: r.u64()?,
            stored_len: r.u32()?,
            raw_len: r.u32()?,
            group_start: 0,
            group_len: 0,
        })
    }
}

/// Sets `group_start` and `group_len` of every group member: a group is a run of
/// consecutive [`Compression::ZstdGroup`] entries with the same offset and stored length.
fn derive_groups(entries: &mut [TrailerEntry], object: &str) -> Result<()> {
    let mut i = 0;
    while i < entries.len() {
        let first = entries[i];
        if first.compression != Compression::ZstdGroup {
            i += 1;
            continue;
        }
        let mut end = i;
        let mut total: u32 = 0;
        while let Some(e) = entries.get_mut(end)
            && e.compression == Compression::ZstdGroup
            && e.offset == first.offset
            && e.stored_len == first.stored_len
        {
            e.group_start = total;
            total = total
                .checked_add(e.raw_len)
                .filter(|t| *t <= GROUP_MAX_LEN)
                .ok_or_else(|| {
                    Error::integrity(object, format!("group longer than {GROUP_MAX_LEN} bytes"))
                })?;
            end += 1;
        }
        for e in &mut entries[i..end] {
            e.group_len = total;
        }
        i = end;
    }
    Ok(())
}

/// A parsed trailer: everything needed to locate and open the pack's blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackTrailer {
    /// Data or tree pack.
    pub kind: BlobKind,
    /// The sealing session header (empty when unencrypted).
    pub seal_header: Vec<u8>,
    /// The blobs.
    pub entries: Vec<TrailerEntry>,
}

impl PackTrailer {
    /// Encodes the trailer bytes (without the footer).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out =
            Vec::with_capacity(7 + self.seal_header.len() + self.entries.len() * ENTRY_LEN);
        out.push(self.kind.code());
        let h = u16::try_from(self.seal_header.len())
            .map_err(|_| Error::invalid("seal header", "longer than 65535 bytes"))?;
        out.extend_from_slice(&h.to_le_bytes());
        out.extend_from_slice(&self.seal_header);
        out.extend_from_slice(&len_u32(self.entries.len(), "trailer entries")?.to_le_bytes());
        for e in &self.entries {
            e.encode(&mut out);
        }
        Ok(out)
    }

    /// Parses trailer bytes (without the footer). `pack_len`, when known, bounds the offsets.
    pub fn decode(bytes: &[u8], object: &str, body_end: Option<u64>) -> Result<Self> {
        let mut r = ByteReader::new(bytes, object);
        let kind = BlobKind::from_code(r.u8()?, object)?;
        let h = usize::from(r.u16()?);
        let seal_header = r.bytes(h)?.to_vec();
        let count = r.u32()? as usize;
        if count.checked_mul(ENTRY_LEN) != Some(r.remaining()) {
            return Err(r.fail(format!("{count} entries do not fill the trailer")));
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let e = TrailerEntry::decode(&mut r, object)?;
            if e.kind != kind {
                return Err(Error::integrity(object, "blob kind differs from pack kind"));
            }
            let end = e.offset.checked_add(u64::from(e.stored_len));
            match (end, body_end) {
                (None, _) => return Err(Error::integrity(object, "blob offset overflows")),
                (Some(end), Some(limit)) if e.offset < HEADER_LEN as u64 || end > limit => {
                    return Err(Error::integrity(object, "blob lies outside the pack body"));
                }
                _ => {}
            }
            entries.push(e);
        }
        r.finish()?;
        derive_groups(&mut entries, object)?;
        Ok(Self {
            kind,
            seal_header,
            entries,
        })
    }
}

/// Parses the 44-byte footer: the trailer length, after checking the magic.
fn parse_footer(footer: &[u8], object: &str) -> Result<(u32, [u8; 32])> {
    let mut r = ByteReader::new(footer, object);
    let len = r.u32()?;
    let mac = r.array::<32>()?;
    if &r.array::<8>()? != TRAILER_MAGIC {
        return Err(Error::integrity(object, "bad trailer magic"));
    }
    Ok((len, mac))
}

/// How many bytes at the end of a pack hold the trailer and footer, from the footer alone.
pub fn trailer_span(footer: &[u8], object: &str) -> Result<usize> {
    if footer.len() < FOOTER_LEN {
        return Err(Error::integrity(object, "pack shorter than its footer"));
    }
    let (len, _) = parse_footer(&footer[footer.len() - FOOTER_LEN..], object)?;
    Ok(len as usize + FOOTER_LEN)
}

/// Parses and authenticates the trailer from the last bytes of a pack (`tail` must hold at
/// least [`trailer_span`] bytes; `pack_len` is the whole pack's length).
pub fn read_trailer(
    keys: &ServerKeys,
    tail: &[u8],
    pack_len: u64,
    object: &str,
) -> Result<PackTrailer> {
    let span = trailer_span(tail, object)?;
    if tail.len() < span || (pack_len as usize) < span + HEADER_LEN {
        return Err(Error::integrity(object, "trailer longer than the pack"));
    }
    let footer = &tail[tail.len() - FOOTER_LEN..];
    let (_, mac) = parse_footer(footer, object)?;
    let trailer = &tail[tail.len() - span..tail.len() - FOOTER_LEN];
    if !keys.verify_mac(MacDomain::Trailer, trailer, &mac) {
        return Err(Error::integrity(
            object,
            "trailer does not authenticate (tampered, or from another account)",
        ));
    }
    let body_end = pack_len - span as u64;
    PackTrailer::decode(trailer, object, Some(body_end))
}

/// Parses a whole pack: checks its id (keyed hash of every byte), header and trailer.
pub fn read_pack(keys: &ServerKeys, id: &PackId, bytes: &[u8]) -> Result<PackTrailer> {
    let object = format!("pack {id}");
    let mut h = keys.mac_hasher(MacDomain::Pack);
    h.update(bytes);
    if h.finalize() != blake3::Hash::from_bytes(id.0) {
        return Err(Error::integrity(
            &object,
            "pack does not match its id (tampered, truncated or from another account)",
        ));
    }
    check_pack(keys, &object, bytes)
}

/// Parses a whole pack's header and authenticated trailer without hashing every byte: for
/// reading blobs, which are authenticated one by one (see `AccountRepo::get_pack_for_reading`).
pub fn read_pack_unhashed(keys: &ServerKeys, id: &PackId, bytes: &[u8]) -> Result<PackTrailer> {
    check_pack(keys, &format!("pack {id}"), bytes)
}

fn check_pack(keys: &ServerKeys, object: &str, bytes: &[u8]) -> Result<PackTrailer> {
    let mut r = ByteReader::new(bytes, object);
    r.magic_and_versions(PACK_MAGIC, &[FORMAT_VERSION, PACK_VERSION])?;
    let kind = BlobKind::from_code(r.u8()?, object)?;
    let trailer = read_trailer(keys, bytes, bytes.len() as u64, object)?;
    if trailer.kind != kind {
        return Err(Error::integrity(
            object,
            "header and trailer disagree on kind",
        ));
    }
    Ok(trailer)
}

/// Room kept after a blob for the seal's tag and before it for its nonce, at most.
const SEAL_ROOM: usize = 64;

/// The plaintext length of a group of `members`: 1 to [`GROUP_MAX_LEN`] bytes.
fn group_total(members: &[(ChunkId, u32)]) -> Result<u32> {
    members
        .iter()
        .try_fold(0u32, |t, (_, len)| t.checked_add(*len))
        .filter(|t| *t <= GROUP_MAX_LEN && !members.is_empty())
        .ok_or_else(|| {
            Error::invalid(
                "group",
                format!("needs 1 to {GROUP_MAX_LEN} bytes of members"),
            )
        })
}

/// Builds one pack in memory.
pub struct PackWriter {
    kind: BlobKind,
    session: Box<dyn SealSession>,
    buf: Vec<u8>,
    entries: Vec<TrailerEntry>,
}

impl std::fmt::Debug for PackWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackWriter")
            .field("kind", &self.kind)
            .field("len", &self.buf.len())
            .field("blobs", &self.entries.len())
            .finish()
    }
}

/// A finished pack, ready to upload.
#[derive(Debug)]
pub struct FinishedPack {
    /// Its id (and object name).
    pub id: PackId,
    /// Every byte.
    pub bytes: Vec<u8>,
    /// Its trailer.
    pub trailer: PackTrailer,
}

impl PackWriter {
    /// Starts a pack of `kind` sealed by `session`.
    pub fn new(kind: BlobKind, session: Box<dyn SealSession>, capacity: usize) -> Self {
        Self::with_buffer(kind, session, Vec::new(), capacity)
    }

    /// Like [`PackWriter::new`], writing into `buf` (emptied first): a finished pack's
    /// buffer handed back, so that its memory is used again rather than a new buffer's pages
    /// faulted in.
    pub fn with_buffer(
        kind: BlobKind,
        session: Box<dyn SealSession>,
        mut buf: Vec<u8>,
        capacity: usize,
    ) -> Self {
        buf.clear();
        buf.reserve(capacity);
        buf.extend_from_slice(PACK_MAGIC);
        buf.extend_from_slice(&PACK_VERSION.to_le_bytes());
        buf.push(kind.code());
        buf.push(0);
        Self {
            kind,
            session,
            buf,
            entries: Vec::new(),
        }
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a blob of `len` plaintext bytes fits in the room reserved for this pack
    /// (adding it does not move the pack's bytes to a larger buffer).
    pub fn fits(&self, len: usize) -> bool {
        self.buf.len().saturating_add(len).saturating_add(SEAL_ROOM) <= self.buf.capacity()
    }

    /// Adds a blob already encoded (compressed or not) for sealing. Groups are added with
    /// [`PackWriter::add_group`].
    pub fn add(
        &mut self,
        id: ChunkId,
        compression: Compression,
        raw_len: usize,
        encoded: &[u8],
    ) -> Result<()> {
        if compression == Compression::ZstdGroup {
            return Err(Error::invalid("blob", "a group is added with add_group"));
        }
        let offset = self.begin_blob(encoded.len());
        self.buf.extend_from_slice(encoded);
        self.end_blob(offset, id, compression, raw_len)
    }

    /// Adds a blob from its plaintext: compressed by `codec` straight into the pack when
    /// that saves at least 1/32 of it (see [`BlobCodec::encode`]), else stored as is; sealed
    /// where it lies. Returns how it was encoded.
    pub fn add_plaintext(
        &mut self,
        codec: &mut BlobCodec,
        id: ChunkId,
        plaintext: &[u8],
    ) -> Result<Compression> {
        let offset = self.begin_blob(plaintext.len());
        let compression = if codec.compress_blob(plaintext, &mut self.buf) {
            Compression::Zstd
        } else {
            self.buf.extend_from_slice(plaintext);
            Compression::None
        };
        self.end_blob(offset, id, compression, plaintext.len())?;
        Ok(compression)
    }

    /// Adds a group: `members` (chunk id and plaintext length, in the order their plaintexts
    /// were concatenated) and `compressed`, the zstd frame of that concatenation (see
    /// [`BlobCodec::encode_group`]).
    pub fn add_group(&mut self, members: &[(ChunkId, u32)], compressed: &[u8]) -> Result<()> {
        let total = group_total(members)?;
        let offset = self.begin_blob(compressed.len());
        self.buf.extend_from_slice(compressed);
        self.end_group(offset, members, total)
    }

    /// Adds a group from its members' concatenated plaintexts, compressed by `codec` straight
    /// into the pack. Returns false, adding nothing, when compressing them together does not
    /// save 1/32 of them (the caller then adds each member on its own).
    pub fn add_group_plaintext(
        &mut self,
        codec: &mut BlobCodec,
        members: &[(ChunkId, u32)],
        plaintext: &[u8],
    ) -> Result<bool> {
        let total = group_total(members)?;
        if total as usize != plaintext.len() {
            return Err(Error::invalid(
                "group",
                "members' lengths differ from the plaintext's",
            ));
        }
        let offset = self.begin_blob(plaintext.len());
        if !codec.compress_group(plaintext, &mut self.buf) {
            self.buf.truncate(offset);
            return Ok(false);
        }
        self.end_group(offset, members, total)?;
        Ok(true)
    }

    /// Starts a blob of at most about `len` bytes: reserves its room and leaves room for the
    /// seal's prefix. Returns the blob's offset.
    fn begin_blob(&mut self, len: usize) -> usize {
        let offset = self.buf.len();
        let prefix = self.session.prefix_len();
        self.buf
            .reserve(len.saturating_add(prefix).saturating_add(SEAL_ROOM));
        self.buf.resize(offset + prefix, 0);
        offset
    }

    /// Seals the blob begun at `offset` (its encoded bytes follow the prefix room) and
    /// lists it. On error the pack is cut back to `offset`.
    fn end_blob(
        &mut self,
        offset: usize,
        id: ChunkId,
        compression: Compression,
        raw_len: usize,
    ) -> Result<()> {
        let raw_len = len_u32(raw_len, "blob").inspect_err(|_| self.buf.truncate(offset))?;
        let stored_len = self.seal_blob(offset, &id.0)?;
        self.entries.push(TrailerEntry {
            id,
            kind: self.kind,
            compression,
            offset: offset as u64,
            stored_len,
            raw_len,
            group_start: 0,
            group_len: 0,
        });
        Ok(())
    }

    /// Seals the group begun at `offset` and lists its members. On error the pack is cut
    /// back to `offset`.
    fn end_group(&mut self, offset: usize, members: &[(ChunkId, u32)], total: u32) -> Result<()> {
        let stored_len = self.seal_blob(offset, &group_aad(offset as u64))?;
        let mut start = 0;
        for (id, raw_len) in members {
            self.entries.push(TrailerEntry {
                id: *id,
                kind: self.kind,
                compression: Compression::ZstdGroup,
                offset: offset as u64,
                stored_len,
                raw_len: *raw_len,
                group_start: start,
                group_len: total,
            });
            start += raw_len;
        }
        Ok(())
    }

    /// Seals in place what follows `offset` and returns its sealed length; on error the
    /// pack is cut back to `offset`.
    fn seal_blob(&mut self, offset: usize, aad: &[u8]) -> Result<u32> {
        let sealed = self
            .session
            .seal_at(aad, &mut self.buf, offset)
            .and_then(|()| len_u32(self.buf.len() - offset, "blob"));
        sealed.inspect_err(|_| self.buf.truncate(offset))
    }

    /// Writes trailer and footer and computes the pack id.
    pub fn finish(self, keys: &ServerKeys) -> Result<FinishedPack> {
        let trailer = PackTrailer {
            kind: self.kind,
            seal_header: self.session.header().to_vec(),
            entries: self.entries,
        };
        finish_pack(keys, self.buf, trailer)
    }
}

/// Appends `trailer` and the footer to a pack's header and blobs, and computes its id.
fn finish_pack(keys: &ServerKeys, mut buf: Vec<u8>, trailer: PackTrailer) -> Result<FinishedPack> {
    let encoded = trailer.encode()?;
    let mac = keys.mac(MacDomain::Trailer, &encoded);
    buf.extend_from_slice(&encoded);
    buf.extend_from_slice(&len_u32(encoded.len(), "trailer")?.to_le_bytes());
    buf.extend_from_slice(&mac);
    buf.extend_from_slice(TRAILER_MAGIC);
    let mut h = keys.mac_hasher(MacDomain::Pack);
    h.update(&buf);
    let id = ChunkId(*h.finalize().as_bytes());
    Ok(FinishedPack {
        id,
        bytes: buf,
        trailer,
    })
}

/// A compacted pack and, for each entry of the old pack, its index in the new one (`None`
/// for entries left out).
pub type Compacted = (FinishedPack, Vec<Option<usize>>);

/// The end (exclusive) of the run of entries from `start` that are one span: the members
/// of the group at `start`, or `start + 1` for a blob outside groups.
pub(crate) fn group_end(entries: &[TrailerEntry], start: usize) -> usize {
    let Some(first) = entries.get(start) else {
        return start;
    };
    if first.compression != Compression::ZstdGroup {
        return start + 1;
    }
    let mut end = start;
    while entries
        .get(end)
        .is_some_and(|e| e.compression == Compression::ZstdGroup && e.offset == first.offset)
    {
        end += 1;
    }
    end
}

/// Why a pack could not be compacted by [`compact_pack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactRefusal {
    /// No entry is kept: the pack is garbage as a whole.
    NothingKept,
    /// A kept blob is a member of a sealed group: its seal binds the group's offset, so it
    /// cannot move without the content key.
    SealedGroup,
}

/// Copies the kept entries of a pack into a smaller pack, sealed bytes as they are: the new
/// pack keeps the old one's seal header, so neither the content key nor the owner's key is
/// needed. A group moves whole (all its members, kept or not) and only when it is unsealed
/// (unencrypted accounts): a sealed group is bound to its offset. `keep[i]` says whether
/// entry `i` of `trailer` is kept; the result lists, for each kept entry, its index in the
/// new pack. `source` is the whole pack, whose trailer (bounds included) was checked.
pub fn compact_pack(
    keys: &ServerKeys,
    source: &[u8],
    trailer: &PackTrailer,
    keep: &[bool],
) -> std::result::Result<Result<Compacted>, CompactRefusal> {
    let entries = &trailer.entries;
    let kept = |i: usize| keep.get(i).copied().unwrap_or(false);
    if !(0..entries.len()).any(kept) {
        return Err(CompactRefusal::NothingKept);
    }
    // A group moves whole when any member is kept.
    let mut take = vec![false; entries.len()];
    let mut i = 0;
    while i < entries.len() {
        let e = entries[i];
        if e.compression != Compression::ZstdGroup {
            take[i] = kept(i);
            i += 1;
            continue;
        }
        let end = group_end(entries, i);
        if (i..end).any(kept) {
            if !trailer.seal_header.is_empty() {
                return Err(CompactRefusal::SealedGroup);
            }
            take[i..end].iter_mut().for_each(|t| *t = true);
        }
        i = end;
    }
    Ok(copy_entries(keys, source, trailer, &take))
}

fn copy_entries(
    keys: &ServerKeys,
    source: &[u8],
    trailer: &PackTrailer,
    take: &[bool],
) -> Result<Compacted> {
    let mut buf = Vec::with_capacity(source.len());
    buf.extend_from_slice(PACK_MAGIC);
    buf.extend_from_slice(&PACK_VERSION.to_le_bytes());
    buf.push(trailer.kind.code());
    buf.push(0);
    let mut entries = Vec::new();
    let mut index = vec![None; trailer.entries.len()];
    // The new offset of each copied span, by old offset (group members share a span).
    let mut moved: Option<(u64, u64)> = None;
    for (i, e) in trailer.entries.iter().enumerate() {
        if !take[i] {
            continue;
        }
        let offset = match moved {
            Some((old, new)) if old == e.offset && e.compression == Compression::ZstdGroup => new,
            _ => {
                let start = e.offset as usize;
                let span = start
                    .checked_add(e.stored_len as usize)
                    .and_then(|end| source.get(start..end))
                    .ok_or_else(|| {
                        Error::integrity(format!("blob {}", e.id), "lies outside the pack")
                    })?;
                let new = buf.len() as u64;
                buf.extend_from_slice(span);
                moved = Some((e.offset, new));
                new
            }
        };
        index[i] = Some(entries.len());
        entries.push(TrailerEntry { offset, ..*e });
    }
    let trailer = PackTrailer {
        kind: trailer.kind,
        seal_header: trailer.seal_header.clone(),
        entries,
    };
    Ok((finish_pack(keys, buf, trailer)?, index))
}

/// Appends the zstd frame of `plaintext` (by `compressor`) to `out` when it saves at least
/// 1/32 of it; returns whether it did (`out` is left as it was otherwise). zstd writes
/// straight into `out`'s spare room and stops when that is full, so incompressible data
/// fails fast when `out` has no more room than the frame may take.
fn compress_append(
    compressor: &mut zstd::bulk::Compressor<'static>,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    let start = out.len();
    let limit = plaintext.len() - plaintext.len() / 32;
    out.reserve(limit);
    let mut cursor = std::io::Cursor::new(&mut *out);
    cursor.set_position(start as u64);
    match compressor.compress_to_buffer(plaintext, &mut cursor) {
        Ok(n) if n <= limit => true,
        _ => {
            out.truncate(start);
            false
        }
    }
}

/// Blobs from this size on are sampled before a full compression attempt.
pub(crate) const SAMPLED_FROM: usize = 256 * 1024;
/// Size of each sampled window.
pub(crate) const SAMPLE_LEN: usize = 16 * 1024;

/// Reusable zstd contexts for encoding and decoding blobs (one per worker thread).
pub struct BlobCodec {
    compressor: zstd::bulk::Compressor<'static>,
    /// For groups of small blobs (see [`BlobCodec::with_group_level`]).
    group_compressor: zstd::bulk::Compressor<'static>,
    decompressor: zstd::bulk::Decompressor<'static>,
    sample: Vec<u8>,
}

impl std::fmt::Debug for BlobCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobCodec")
    }
}

impl BlobCodec {
    /// Contexts compressing blobs and groups at zstd `level`.
    pub fn new(level: i32) -> Result<Self> {
        Self::with_group_level(level, level)
    }

    /// Contexts compressing single blobs at zstd `level` and groups of small blobs (at most
    /// [`GROUP_MAX_LEN`] bytes, usually a few hundred KiB) at `group_level`.
    pub fn with_group_level(level: i32, group_level: i32) -> Result<Self> {
        let internal = |e: std::io::Error| Error::Internal {
            reason: format!("zstd context: {e}"),
        };
        Ok(Self {
            compressor: zstd::bulk::Compressor::new(level).map_err(internal)?,
            group_compressor: zstd::bulk::Compressor::new(group_level).map_err(internal)?,
            decompressor: zstd::bulk::Decompressor::new().map_err(internal)?,
            sample: Vec::with_capacity(SAMPLE_LEN),
        })
    }

    /// Encodes a blob's plaintext: zstd when that saves at least 1/32 of it, else as is.
    /// Incompressible data costs little: large blobs are sampled first, and the output
    /// buffer is bounded by the size worth keeping. (Pack writers encode straight into the
    /// pack with [`PackWriter::add_plaintext`].)
    pub fn encode(&mut self, plaintext: &[u8]) -> (Compression, Vec<u8>) {
        let mut out = Vec::new();
        if self.compress_blob(plaintext, &mut out) {
            return (Compression::Zstd, out);
        }
        (Compression::None, plaintext.to_vec())
    }

    /// Compresses the concatenated plaintexts of a group; `None` when that does not save
    /// 1/32 of them (the members are then stored one by one).
    pub fn encode_group(&mut self, plaintext: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.compress_group(plaintext, &mut out).then_some(out)
    }

    /// Appends the zstd frame of a blob's plaintext to `out` when it saves at least 1/32
    /// of it (large blobs are sampled first, tiny ones never compressed); returns whether it
    /// did. `out` is left as it was otherwise.
    pub(crate) fn compress_blob(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> bool {
        plaintext.len() >= 128
            && self.sample_compresses(plaintext)
            && compress_append(&mut self.compressor, plaintext, out)
    }

    /// Like [`BlobCodec::compress_blob`] for the concatenated plaintexts of a group, at the
    /// group level.
    pub(crate) fn compress_group(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> bool {
        compress_append(&mut self.group_compressor, plaintext, out)
    }

    /// For blobs of at least [`SAMPLED_FROM`] bytes, whether three windows of
    /// [`SAMPLE_LEN`] (start, middle, end) compress by the same 1/32: incompressible data
    /// (media, archives, encrypted files) then costs three small attempts instead of a full
    /// pass. Smaller blobs always get the full attempt.
    fn sample_compresses(&mut self, plaintext: &[u8]) -> bool {
        let len = plaintext.len();
        if len < SAMPLED_FROM {
            return true;
        }
        let limit = 3 * (SAMPLE_LEN - SAMPLE_LEN / 32);
        let mut out = 0;
        for at in [0, len / 2 - SAMPLE_LEN / 2, len - SAMPLE_LEN] {
            self.sample.clear();
            match self
                .compressor
                .compress_to_buffer(&plaintext[at..at + SAMPLE_LEN], &mut self.sample)
            {
                Ok(n) => out += n,
                // The window did not fit in its own size: incompressible.
                Err(_) => out += SAMPLE_LEN,
            }
        }
        out <= limit
    }

    /// Opens, decodes and authenticates one sealed blob: after opening and decompressing, its
    /// keyed hash must equal `entry.id`. `sealed` is the entry's span of the pack (for a
    /// group member, the whole group, which is opened and decompressed for this one blob:
    /// readers of several members use [`BlobCodec::open_group`] and [`BlobCodec::member`]).
    pub fn open_blob(
        &mut self,
        keys: &ServerKeys,
        session: &dyn OpenSession,
        entry: &TrailerEntry,
        mut sealed: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let object = || format!("blob {}", entry.id);
        if entry.compression == Compression::ZstdGroup {
            let group = self.open_group(session, entry, sealed)?;
            return Self::member(keys, entry, &group);
        }
        session.open(&entry.id.0, &mut sealed)?;
        let plain = match entry.compression {
            Compression::None | Compression::ZstdGroup => sealed,
            Compression::Zstd => self
                .decompressor
                .decompress(&sealed, entry.raw_len as usize)
                .map_err(|e| Error::integrity(object(), format!("does not decompress: {e}")))?,
        };
        if plain.len() != entry.raw_len as usize {
            return Err(Error::integrity(
                object(),
                "length differs from the trailer",
            ));
        }
        if keys.chunk_id(&plain) != entry.id {
            return Err(Error::integrity(object(), "content does not match its id"));
        }
        Ok(plain)
    }

    /// Opens and decompresses the group holding member `entry` (`sealed` is the group's span
    /// of the pack). The AEAD authenticates the group; each member is checked against its id
    /// when taken out with [`BlobCodec::member`].
    pub fn open_group(
        &mut self,
        session: &dyn OpenSession,
        entry: &TrailerEntry,
        mut sealed: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let object = || format!("group at {} of blob {}", entry.offset, entry.id);
        if entry.compression != Compression::ZstdGroup {
            return Err(Error::invalid("blob", "not a group member"));
        }
        session.open(&group_aad(entry.offset), &mut sealed)?;
        let plain = self
            .decompressor
            .decompress(&sealed, entry.group_len as usize)
            .map_err(|e| Error::integrity(object(), format!("does not decompress: {e}")))?;
        if plain.len() != entry.group_len as usize {
            return Err(Error::integrity(
                object(),
                "length differs from the trailer",
            ));
        }
        Ok(plain)
    }

    /// Takes member `entry` out of its opened group and checks it against its id.
    pub fn member(keys: &ServerKeys, entry: &TrailerEntry, group: &[u8]) -> Result<Vec<u8>> {
        let start = entry.group_start as usize;
        let plain = start
            .checked_add(entry.raw_len as usize)
            .and_then(|end| group.get(start..end))
            .ok_or_else(|| {
                Error::integrity(format!("blob {}", entry.id), "lies outside its group")
            })?;
        if keys.chunk_id(plain) != entry.id {
            return Err(Error::integrity(
                format!("blob {}", entry.id),
                "content does not match its id",
            ));
        }
        Ok(plain.to_vec())
    }

    /// Opens every blob of a pack in trailer order, each group once, and passes each entry
    /// with its plaintext (or why it could not be opened) to `f`. `pack` is the whole pack,
    /// whose trailer (bounds included) was checked.
    pub fn open_all(
        &mut self,
        keys: &ServerKeys,
        session: &dyn OpenSession,
        pack: &[u8],
        entries: &[TrailerEntry],
        mut f: impl FnMut(&TrailerEntry, Result<Vec<u8>>),
    ) {
        let span = |e: &TrailerEntry| {
            let start = e.offset as usize;
            pack.get(start..start.saturating_add(e.stored_len as usize))
                .map(<[u8]>::to_vec)
                .ok_or_else(|| Error::integrity(format!("blob {}", e.id), "lies outside the pack"))
        };
        // The open group: its offset and plaintext, or why it failed.
        let mut group: Option<(u64, std::result::Result<Vec<u8>, String>)> = None;
        for e in entries {
            if e.compression != Compression::ZstdGroup {
                let result = span(e).and_then(|sealed| self.open_blob(keys, session, e, sealed));
                f(e, result);
                continue;
            }
            if group.as_ref().is_none_or(|(at, _)| *at != e.offset) {
                let opened = span(e)
                    .and_then(|sealed| self.open_group(session, e, sealed))
                    .map_err(|err| err.to_string());
                group = Some((e.offset, opened));
            }
            let result = match group.as_ref().map(|(_, g)| g) {
                Some(Ok(plain)) => Self::member(keys, e, plain),
                Some(Err(why)) => Err(Error::integrity(format!("blob {}", e.id), why.clone())),
                None => Err(Error::Internal {
                    reason: "group not opened".into(),
                }),
            };
            f(e, result);
        }
    }
}

/// Opens one sealed span (a blob, or a whole group) without decoding it: the stored
/// encoding comes back (a zstd frame for compressed blobs and groups). The AEAD
/// authenticates it; the chunk ids are not checked (the caller checked the whole pack
/// against its id).
pub fn unseal(
    session: &dyn OpenSession,
    entry: &TrailerEntry,
    mut sealed: Vec<u8>,
) -> Result<Vec<u8>> {
    if entry.compression == Compression::ZstdGroup {
        session.open(&group_aad(entry.offset), &mut sealed)?;
    } else {
        session.open(&entry.id.0, &mut sealed)?;
    }
    Ok(sealed)
}

/// Where each blob of a set of packs lives. Each blob costs one small map entry (its pack's
/// and its entry's positions) next to the trailers, which hold every entry once.
#[derive(Debug, Default, Clone)]
pub struct BlobLocator {
    /// Per blob: its pack's position in `packs` and its entry's in that trailer.
    blobs: HashMap<ChunkId, (usize, usize), IdHasherBuilder>,
    packs: Vec<(PackId, PackTrailer)>,
    pack_positions: HashMap<PackId, usize, IdHasherBuilder>,
    /// Packs found damaged: a blob is located in one only when no other pack holds it.
    damaged: std::collections::HashSet<PackId, IdHasherBuilder>,
}

impl BlobLocator {
    /// An empty locator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a pack's trailer (a pack added again is ignored: its id fixes its trailer).
    pub fn add_pack(&mut self, id: PackId, trailer: PackTrailer) {
        if self.pack_positions.contains_key(&id) {
            return;
        }
        let pack = self.packs.len();
        let damaged = self.damaged.contains(&id);
        for (entry, e) in trailer.entries.iter().enumerate() {
            match self.blobs.entry(e.id) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert((pack, entry));
                }
                // A sound copy takes the place of one in a damaged pack.
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    let held_by = self.packs[o.get().0].0;
                    if !damaged && self.damaged.contains(&held_by) {
                        o.insert((pack, entry));
                    }
                }
            }
        }
        self.pack_positions.insert(id, pack);
        self.packs.push((id, trailer));
    }

    /// Marks packs as damaged (before their trailers are added: a blob they hold is then
    /// located in another pack whenever one holds it).
    pub fn set_damaged(&mut self, packs: impl IntoIterator<Item = PackId>) {
        self.damaged.extend(packs);
    }

    /// Whether `pack` was found damaged.
    pub fn is_damaged(&self, pack: &PackId) -> bool {
        self.damaged.contains(pack)
    }

    /// Whether a blob is known.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.blobs.contains_key(id)
    }

    /// Where a blob is: the first pack added that holds it, and its entry there.
    pub fn locate(&self, id: &ChunkId) -> Option<(&PackId, &TrailerEntry)> {
        let &(pack, entry) = self.blobs.get(id)?;
        let (pack_id, trailer) = self.packs.get(pack)?;
        Some((pack_id, trailer.entries.get(entry)?))
    }

    /// A pack's trailer.
    pub fn pack(&self, id: &PackId) -> Option<&PackTrailer> {
        let &pack = self.pack_positions.get(id)?;
        self.packs.get(pack).map(|(_, trailer)| trailer)
    }

    /// Marks packs as not to be reused by a backup (condemned by a collector), as damaged
    /// packs are: [`BlobLocator::is_damaged`] is true for them.
    pub fn exclude(&mut self, packs: impl IntoIterator<Item = PackId>) {
        self.damaged.extend(packs);
    }

    /// Whether a pack is known.
    pub fn has_pack(&self, id: &PackId) -> bool {
        self.pack_positions.contains_key(id)
    }

    /// Every pack with its trailer, in the order they were added.
    pub fn packs(&self) -> impl Iterator<Item = (&PackId, &PackTrailer)> {
        self.packs.iter().map(|(id, trailer)| (id, trailer))
    }

    /// Number of blobs.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
}

#[cfg(test)]
mod tests;
