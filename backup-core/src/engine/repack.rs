//! Rewriting mostly dead packs: the live blobs go into new packs, the dead ones are left
//! behind with the old pack, which the collector then condemns.
//!
//! Two ways, by what the collector holds:
//! - **With the content key** (unencrypted and server-key accounts): the old pack is
//!   checked whole against its id, each live blob's seal is opened, and the blob is sealed
//!   again in a new session, its encoding kept (never decompressed); a group whose members
//!   are all live moves whole the same way. Only the live members of a partly dead group
//!   are decompressed (each checked against its chunk id) and grouped again. Live blobs of
//!   several old packs share new packs.
//! - **Without it** (owner-key accounts): each old pack's live blobs are copied, sealed
//!   bytes as they are, into one smaller pack with the old seal header
//!   ([`compact_pack`]); a live member of a sealed group cannot move (its seal binds its
//!   offset), so such a pack is left as it is.

use std::collections::{HashMap, HashSet};

use super::backup::{DEFAULT_COMPRESSION_LEVEL, DEFAULT_GROUP_COMPRESSION_LEVEL};
use super::prune::{PruneOptions, may_write};
use crate::error::{Error, Result};
use crate::model::{ChunkId, PackId};
use crate::repo::{
    AccountRepo, BlobCodec, BlobKind, CompactRefusal, Compression, GROUP_MEMBER_MAX, GROUP_TARGET,
    IndexedPack, PackTrailer, PackWriter, TrailerEntry, compact_pack, group_end, unseal,
};

/// Where each entry of a repacked pack went: `map[i]` is the new pack and entry of entry
/// `i` (`None` for a dead entry).
pub(crate) type Moves = HashMap<PackId, Vec<Option<(PackId, usize)>>>;

/// What a repack wrote.
#[derive(Debug, Default)]
pub(crate) struct Repacked {
    /// Old pack to new places of its entries.
    pub(crate) moves: Moves,
    /// The packs written (for an index).
    pub(crate) written: Vec<IndexedPack>,
    /// Old packs left as they are: a live member of a sealed group, no key to move it.
    pub(crate) skipped: u64,
    /// Old packs found damaged (not repacked; verification reports them).
    pub(crate) damaged: u64,
}

/// Repacks `packs` (each with `keep[i]`: entry `i` is live), checking `opts` (cancel,
/// lease) before each pack it puts.
pub(crate) async fn repack(
    repo: &AccountRepo,
    packs: &[(PackId, Vec<bool>)],
    opts: &PruneOptions,
) -> Result<Repacked> {
    if repo.opener().is_some() {
        reencode(repo, packs, opts).await
    } else {
        copy_sealed(repo, packs, opts).await
    }
}

async fn copy_sealed(
    repo: &AccountRepo,
    packs: &[(PackId, Vec<bool>)],
    opts: &PruneOptions,
) -> Result<Repacked> {
    let mut out = Repacked::default();
    for (pack, keep) in packs {
        let Some((bytes, trailer)) = fetch(repo, pack, &mut out).await? else {
            continue;
        };
        match compact_pack(repo.sealer().server_keys(), &bytes, &trailer, keep) {
            Err(CompactRefusal::SealedGroup) => out.skipped += 1,
            Err(CompactRefusal::NothingKept) => {}
            Ok(result) => {
                let (new, map) = result?;
                if new.id == *pack {
                    continue;
                }
                may_write(opts).await?;
                let id = new.id;
                out.written.push(repo.put_pack(new).await?);
                let map = map.into_iter().map(|m| m.map(|i| (id, i))).collect();
                out.moves.insert(*pack, map);
            }
        }
    }
    Ok(out)
}

/// A whole pack checked against its id; `None` (counted) when it is damaged.
async fn fetch(
    repo: &AccountRepo,
    pack: &PackId,
    out: &mut Repacked,
) -> Result<Option<(bytes::Bytes, PackTrailer)>> {
    match repo.get_pack(pack).await {
        Ok(p) => Ok(Some(p)),
        Err(e @ Error::Integrity { .. }) => {
            tracing::warn!(%pack, error = %e, "pack damaged; not repacked");
            out.damaged += 1;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A blob taken out of an old pack: (old pack, old entry, id, plaintext).
type Live = (PackId, usize, ChunkId, Vec<u8>);

/// A pack being written, and where its entries came from.
struct Open {
    writer: PackWriter,
    entries: usize,
    /// (old pack, old entry, id) of each new entry, in order.
    sources: Vec<(PackId, usize, ChunkId)>,
}

/// Writes live blobs into new packs, one open pack per blob kind.
struct Writers<'a> {
    repo: &'a AccountRepo,
    opts: &'a PruneOptions,
    pack_size: usize,
    codec: BlobCodec,
    open: HashMap<BlobKind, Open>,
    /// Where each blob written so far went.
    placed: HashMap<ChunkId, (PackId, usize)>,
    out: Repacked,
}

impl Writers<'_> {
    /// Finishes the open pack of `kind`, if any, and records where its blobs went.
    async fn finish(&mut self, kind: BlobKind) -> Result<()> {
        let Some(open) = self.open.remove(&kind) else {
            return Ok(());
        };
        if open.entries == 0 {
            return Ok(());
        }
        let finished = open.writer.finish(self.repo.sealer().server_keys())?;
        let id = finished.id;
        may_write(self.opts).await?;
        self.out.written.push(self.repo.put_pack(finished).await?);
        for (new, (pack, entry, blob)) in open.sources.into_iter().enumerate() {
            if let Some(slot) = self.out.moves.get_mut(&pack).and_then(|m| m.get_mut(entry)) {
                *slot = Some((id, new));
            }
            self.placed.insert(blob, (id, new));
        }
        Ok(())
    }

    /// Makes sure an open pack of `kind` has room for about `room` more bytes.
    async fn make_room(&mut self, kind: BlobKind, room: usize) -> Result<()> {
        let full = self
            .open
            .get(&kind)
            .is_some_and(|o| o.entries > 0 && o.writer.len() + room > self.pack_size);
        if full {
            self.finish(kind).await?;
        }
        if !self.open.contains_key(&kind) {
            let session = self.repo.sealer().begin()?;
            let writer = PackWriter::new(kind, session, self.pack_size + (1 << 16));
            self.open.insert(
                kind,
                Open {
                    writer,
                    entries: 0,
                    sources: Vec::new(),
                },
            );
        }
        Ok(())
    }

    fn lost() -> Error {
        Error::Internal {
            reason: "repack writer lost".into(),
        }
    }

    /// Writes one blob on its own (compressed when that saves enough).
    async fn single(&mut self, kind: BlobKind, blob: Live) -> Result<()> {
        let (pack, entry, id, plain) = blob;
        self.make_room(kind, plain.len()).await?;
        let open = self.open.get_mut(&kind).ok_or_else(Self::lost)?;
        open.writer.add_plaintext(&mut self.codec, id, &plain)?;
        open.sources.push((pack, entry, id));
        open.entries += 1;
        Ok(())
    }

    /// Writes a blob as it was stored (its encoding kept), sealed in the new pack.
    async fn encoded(
        &mut self,
        pack: PackId,
        entry: usize,
        e: TrailerEntry,
        encoded: Vec<u8>,
    ) -> Result<()> {
        self.make_room(e.kind, encoded.len()).await?;
        let open = self.open.get_mut(&e.kind).ok_or_else(Self::lost)?;
        open.writer
            .add(e.id, e.compression, e.raw_len as usize, &encoded)?;
        open.sources.push((pack, entry, e.id));
        open.entries += 1;
        Ok(())
    }

    /// Writes a wholly live group as it was stored (its zstd frame kept).
    async fn whole_group(
        &mut self,
        pack: PackId,
        members: Vec<(usize, TrailerEntry)>,
        frame: Vec<u8>,
    ) -> Result<()> {
        let kind = members.first().map_or(BlobKind::Data, |(_, e)| e.kind);
        self.make_room(kind, frame.len()).await?;
        let ids: Vec<(ChunkId, u32)> = members.iter().map(|(_, e)| (e.id, e.raw_len)).collect();
        let open = self.open.get_mut(&kind).ok_or_else(Self::lost)?;
        open.writer.add_group(&ids, &frame)?;
        for (entry, e) in members {
            open.sources.push((pack, entry, e.id));
            open.entries += 1;
        }
        Ok(())
    }

    /// Writes small data blobs as one group (each on its own when grouping saves too
    /// little).
    async fn group(&mut self, members: Vec<Live>) -> Result<()> {
        if members.len() < 2 {
            for m in members {
                self.single(BlobKind::Data, m).await?;
            }
            return Ok(());
        }
        let total: usize = members.iter().map(|m| m.3.len()).sum();
        self.make_room(BlobKind::Data, total).await?;
        let mut plain = Vec::with_capacity(total);
        let mut ids = Vec::with_capacity(members.len());
        for (_, _, id, p) in &members {
            plain.extend_from_slice(p);
            ids.push((*id, p.len() as u32));
        }
        let open = self.open.get_mut(&BlobKind::Data).ok_or_else(Self::lost)?;
        if open
            .writer
            .add_group_plaintext(&mut self.codec, &ids, &plain)?
        {
            for (pack, entry, id, _) in members {
                open.sources.push((pack, entry, id));
                open.entries += 1;
            }
            return Ok(());
        }
        for m in members {
            self.single(BlobKind::Data, m).await?;
        }
        Ok(())
    }
}

/// A live blob (or group) taken out of an old pack.
enum Taken {
    /// A blob outside groups, as stored (compressed or not): entry index, entry, bytes.
    Encoded(usize, TrailerEntry, Vec<u8>),
    /// A group whose members are all live: (entry index, entry) of each, and its frame.
    Group(Vec<(usize, TrailerEntry)>, Vec<u8>),
    /// A live member of a group that also holds dead ones: entry index, kind, id, plaintext.
    Plain(usize, BlobKind, ChunkId, Vec<u8>),
}

/// The live blobs of a pack (checked whole against its id): blobs and wholly live groups
/// as stored (only their seal is opened), the live members of partly dead groups
/// decompressed (each checked against its id) to be grouped again.
fn take_live(
    codec: &mut BlobCodec,
    keys: &crate::ports::ServerKeys,
    session: &dyn crate::ports::OpenSession,
    bytes: &[u8],
    trailer: &PackTrailer,
    keep: &[bool],
) -> Result<Vec<Taken>> {
    let entries = &trailer.entries;
    let kept = |i: usize| keep.get(i).copied().unwrap_or(false);
    let span = |e: &TrailerEntry| {
        let start = e.offset as usize;
        bytes
            .get(start..start.saturating_add(e.stored_len as usize))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::integrity(format!("blob {}", e.id), "lies outside the pack"))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let e = entries[i];
        if e.compression != Compression::ZstdGroup {
            if kept(i) {
                out.push(Taken::Encoded(i, e, unseal(session, &e, span(&e)?)?));
            }
            i += 1;
            continue;
        }
        let end = group_end(entries, i);
        let live: Vec<usize> = (i..end).filter(|j| kept(*j)).collect();
        if live.len() == end - i {
            let members = (i..end).map(|j| (j, entries[j])).collect();
            out.push(Taken::Group(members, unseal(session, &e, span(&e)?)?));
        } else if !live.is_empty() {
            let group = codec.open_group(session, &e, span(&e)?)?;
            for j in live {
                let m = &entries[j];
                out.push(Taken::Plain(
                    j,
                    m.kind,
                    m.id,
                    BlobCodec::member(keys, m, &group)?,
                ));
            }
        }
        i = end;
    }
    Ok(out)
}

/// The content-key way: every live blob unsealed and sealed again in new packs.
async fn reencode(
    repo: &AccountRepo,
    packs: &[(PackId, Vec<bool>)],
    opts: &PruneOptions,
) -> Result<Repacked> {
    let opener = repo.require_opener()?.clone();
    let keys = repo.sealer().server_keys();
    let mut w = Writers {
        repo,
        opts,
        pack_size: repo.repository().config().pack_size as usize,
        codec: BlobCodec::with_group_level(
            DEFAULT_COMPRESSION_LEVEL,
            DEFAULT_GROUP_COMPRESSION_LEVEL,
        )?,
        open: HashMap::new(),
        placed: HashMap::new(),
        out: Repacked::default(),
    };
    // A blob in two old packs is written once; the second place is an alias.
    let mut written: HashSet<ChunkId> = HashSet::new();
    let mut aliases: Vec<(PackId, usize, ChunkId)> = Vec::new();
    let mut group: Vec<Live> = Vec::new();
    let mut group_len = 0;
    for (pack, keep) in packs {
        let Some((bytes, trailer)) = fetch(repo, pack, &mut w.out).await? else {
            continue;
        };
        let session = opener.open_session(&trailer.seal_header)?;
        let live = match take_live(&mut w.codec, keys, session.as_ref(), &bytes, &trailer, keep) {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(%pack, error = %e, "a live blob does not open; pack not repacked");
                w.out.damaged += 1;
                continue;
            }
        };
        drop(bytes);
        w.out.moves.insert(*pack, vec![None; trailer.entries.len()]);
        for blob in live {
            match blob {
                // Stored as it was: sealed again, never decompressed.
                Taken::Encoded(entry, e, encoded) if !written.contains(&e.id) => {
                    written.insert(e.id);
                    w.encoded(*pack, entry, e, encoded).await?;
                }
                Taken::Group(entries, frame)
                    if entries.iter().all(|(_, e)| !written.contains(&e.id)) =>
                {
                    written.extend(entries.iter().map(|(_, e)| e.id));
                    w.whole_group(*pack, entries, frame).await?;
                }
                Taken::Encoded(entry, e, _) => aliases.push((*pack, entry, e.id)),
                Taken::Group(entries, _) => {
                    aliases.extend(entries.iter().map(|(i, e)| (*pack, *i, e.id)));
                }
                Taken::Plain(entry, kind, id, plain) => {
                    if !written.insert(id) {
                        aliases.push((*pack, entry, id));
                        continue;
                    }
                    if kind == BlobKind::Data && plain.len() < GROUP_MEMBER_MAX {
                        group_len += plain.len();
                        group.push((*pack, entry, id, plain));
                        if group_len >= GROUP_TARGET {
                            w.group(std::mem::take(&mut group)).await?;
                            group_len = 0;
                        }
                    } else {
                        w.single(kind, (*pack, entry, id, plain)).await?;
                    }
                }
            }
        }
    }
    w.group(group).await?;
    w.finish(BlobKind::Data).await?;
    w.finish(BlobKind::Tree).await?;
    for (pack, entry, id) in aliases {
        let place = w.placed.get(&id).copied();
        if let Some(slot) = w.out.moves.get_mut(&pack).and_then(|m| m.get_mut(entry)) {
            *slot = place;
        }
    }
    // An old pack is replaced only when every live entry found a new place.
    let mut out = w.out;
    out.moves.retain(|pack, map| {
        let keep = &packs.iter().find(|(p, _)| p == pack).map(|(_, k)| k);
        map.iter()
            .enumerate()
            .all(|(i, m)| m.is_some() || !keep.is_some_and(|k| k.get(i).copied().unwrap_or(false)))
    });
    Ok(out)
}
