//! Restoring one tree item in two passes:
//! 1. **plan**: read every tree blob of the selection (names are checked here, so a crafted
//!    name is refused before anything is written) and list directories, files, links and
//!    special files in walk order;
//! 2. **write**: create directories, write files chunk by chunk into the private staging
//!    directory and move each into place when complete, recreate links and special files;
//!    then prune (replace restores) and set directory attributes deepest first.
//!
//! Reading trees first keeps tree packs and data packs out of each other's cache, so each
//! data pack is fetched about once: files are written in the order the backup packed them.
//!
//! Damage costs only what it touches: a tree or blob that fails authentication (or a pack
//! that is gone) leaves out the files that need it, each named in the report, and every
//! other file is restored.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::fs_write::{OwnerPolicy, Staging, apply_attrs, ensure_dir_at, prune};
use super::progress::{ProgressEvent, ProgressSink};
use super::reader::BlobReader;
use super::report::{EntryReport, EntryReports};
use super::restore_file::RestoreFile;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{ChunkId, ItemKind, ItemStats, PackId, PathSelection};
use crate::repo::{Attrs, Extent, LinkId, Node, SpecialKind, TreeVersion};

/// Index of a directory in [`TreePlan::dirs`]; the target root is 0.
type DirIndex = u32;

/// A directory the plan reaches: restored itself when `selected`, else only a parent.
struct PlanDir {
    parent: DirIndex,
    name: Box<[u8]>,
    selected: bool,
    /// Its tree could not be read: nothing below it is restored or pruned.
    damaged: bool,
    attrs: Attrs,
}

/// A file to restore; its chunks are `TreePlan::chunks[chunks]`.
struct PlanFile {
    dir: DirIndex,
    name: Box<[u8]>,
    size: u64,
    chunks: Range<usize>,
    /// A sparse file's data ranges, each with where it starts in the chunks' stream.
    extents: Option<Box<[(Extent, u64)]>>,
    attrs: Attrs,
    /// Another file of the plan this one is a hard link to (its chunks are not written).
    link_to: Option<usize>,
}

impl PlanFile {
    /// Bytes the chunks hold.
    fn stream_len(&self) -> u64 {
        match &self.extents {
            Some(x) => x.iter().map(|(e, _)| e.len).sum(),
            None => self.size,
        }
    }
}

/// A symbolic link or special file to recreate.
struct PlanOther {
    dir: DirIndex,
    name: Box<[u8]>,
    node: Other,
    attrs: Attrs,
}

enum Other {
    Link(Box<[u8]>),
    Special(SpecialKind, u64),
}

/// What pass 1 found, kept compact (a restore of millions of files holds it all): each
/// directory once, files and links by directory index and name, chunk ids in one array.
pub(crate) struct TreePlan {
    kind: ItemKind,
    /// Walk order: a parent comes before its children. Index 0 is the target root.
    dirs: Vec<PlanDir>,
    files: Vec<PlanFile>,
    others: Vec<PlanOther>,
    chunks: Vec<ChunkId>,
    /// A replace restore: every directory loses the entries the snapshot does not have.
    replace: bool,
    /// Subtrees that could not be read (damaged), named.
    failed: EntryReports,
}

impl TreePlan {
    fn dir_index(&self) -> Result<DirIndex> {
        DirIndex::try_from(self.dirs.len()).map_err(|_| Error::Internal {
            reason: "more directories than a restore can hold".into(),
        })
    }

    /// The path of `name` in directory `dir`, relative to the item root (for reports).
    fn path(&self, mut dir: DirIndex, name: &[u8]) -> String {
        let mut parts = vec![String::from_utf8_lossy(name).into_owned()];
        while dir != 0 {
            let d = &self.dirs[dir as usize];
            parts.push(String::from_utf8_lossy(&d.name).into_owned());
            dir = d.parent;
        }
        parts.reverse();
        parts.join("/")
    }
}

/// Whether `e` is damage to stored data (a restore goes on without what it touches), as
/// opposed to a failure of the restore itself (the target's disk, a bug).
pub(crate) fn is_damage(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Integrity | ErrorKind::NotFound | ErrorKind::PathEscapes
    )
}

/// Pass 1: reads the trees under `root` and lists what the selection restores.
pub(crate) fn plan(
    reader: &mut BlobReader,
    kind: ItemKind,
    root: &ChunkId,
    version: TreeVersion,
    paths: &PathSelection,
    replace: bool,
) -> Result<TreePlan> {
    let mut plan = TreePlan {
        kind,
        dirs: vec![PlanDir {
            parent: 0,
            name: Box::default(),
            selected: false,
            damaged: false,
            attrs: Attrs::default(),
        }],
        files: Vec::new(),
        others: Vec::new(),
        chunks: Vec::new(),
        replace,
        failed: EntryReports::default(),
    };
    let mut walk = PlanWalk {
        reader,
        version,
        paths,
        links: HashMap::new(),
    };
    // A root that cannot be read is the whole item: that fails the restore of the item.
    let tree = walk.reader.tree(root, version)?;
    walk.dir(tree, 0, &mut Vec::new(), &mut plan)?;
    Ok(plan)
}

struct PlanWalk<'a> {
    reader: &'a mut BlobReader,
    version: TreeVersion,
    paths: &'a PathSelection,
    /// The first planned file of each hard-link group.
    links: HashMap<LinkId, usize>,
}

/// The path of `components` relative to the item root, as selections match it.
fn rel_path(components: &[Vec<u8>]) -> String {
    let parts: Vec<String> = components
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    parts.join("/")
}

impl PlanWalk<'_> {
    fn dir(
        &mut self,
        tree: crate::repo::Tree,
        dir: DirIndex,
        components: &mut Vec<Vec<u8>>,
        plan: &mut TreePlan,
    ) -> Result<()> {
        for entry in tree.entries {
            components.push(entry.name);
            let rel = rel_path(components);
            let name = || {
                components
                    .last()
                    .cloned()
                    .unwrap_or_default()
                    .into_boxed_slice()
            };
            match entry.node {
                Node::Dir { tree, .. } if self.paths.may_select_below(&rel) => {
                    let index = plan.dir_index()?;
                    let sub = match self.reader.tree(&tree, self.version) {
                        Ok(sub) => Some(sub),
                        Err(e) if is_damage(&e) => {
                            plan.failed.add(EntryReport {
                                item: plan.kind,
                                path: rel.clone(),
                                reason: format!("directory not restored: {e}"),
                            });
                            None
                        }
                        Err(e) => return Err(e),
                    };
                    plan.dirs.push(PlanDir {
                        parent: dir,
                        name: name(),
                        selected: sub.is_some() && self.paths.selects(&rel),
                        damaged: sub.is_none(),
                        attrs: entry.attrs,
                    });
                    if let Some(sub) = sub {
                        self.dir(sub, index, components, plan)?;
                    }
                }
                Node::File {
                    size,
                    chunks,
                    extents,
                    link,
                } if self.paths.selects(&rel) => {
                    let link_to = link.and_then(|l| self.links.get(&l).copied());
                    let start = plan.chunks.len();
                    if link_to.is_none() {
                        plan.chunks.extend_from_slice(&chunks);
                    }
                    let extents = extents.map(|x| {
                        let mut at = 0u64;
                        x.into_iter()
                            .map(|e| {
                                let start = at;
                                at += e.len;
                                (e, start)
                            })
                            .collect()
                    });
                    if let (Some(l), None) = (link, link_to) {
                        self.links.insert(l, plan.files.len());
                    }
                    plan.files.push(PlanFile {
                        dir,
                        name: name(),
                        size,
                        chunks: start..plan.chunks.len(),
                        extents,
                        attrs: entry.attrs,
                        link_to,
                    });
                }
                Node::Symlink { target } if self.paths.selects(&rel) => {
                    plan.others.push(PlanOther {
                        dir,
                        name: name(),
                        node: Other::Link(target.into_boxed_slice()),
                        attrs: entry.attrs,
                    });
                }
                Node::Special { kind, rdev } if self.paths.selects(&rel) => {
                    plan.others.push(PlanOther {
                        dir,
                        name: name(),
                        node: Other::Special(kind, rdev),
                        attrs: entry.attrs,
                    });
                }
                _ => {}
            }
            components.pop();
        }
        Ok(())
    }
}

/// Handles on the plan's directories, each created (or checked to be a real directory,
/// never a link) on first use. A bounded number stay open; one evicted is opened again from
/// its nearest open ancestor, component by component.
struct DirFds<'a> {
    plan: &'a TreePlan,
    inner: Mutex<DirCache>,
}

struct DirCache {
    open: HashMap<DirIndex, Arc<OwnedFd>>,
    order: VecDeque<DirIndex>,
}

/// Directory handles kept open.
const OPEN_DIRS: usize = 128;

impl<'a> DirFds<'a> {
    fn new(plan: &'a TreePlan, root: Arc<OwnedFd>) -> Self {
        let mut open = HashMap::new();
        open.insert(0, root);
        Self {
            plan,
            inner: Mutex::new(DirCache {
                open,
                order: VecDeque::new(),
            }),
        }
    }

    fn get(&self, dir: DirIndex) -> Result<Arc<OwnedFd>> {
        let mut cache = self.inner.lock().map_err(|_| Error::Internal {
            reason: "restore directory cache poisoned".into(),
        })?;
        if let Some(fd) = cache.open.get(&dir) {
            return Ok(fd.clone());
        }
        let mut chain = Vec::new();
        let mut at = dir;
        let mut fd = loop {
            if let Some(fd) = cache.open.get(&at) {
                break fd.clone();
            }
            chain.push(at);
            at = self.plan.dirs[at as usize].parent;
        };
        for &d in chain.iter().rev() {
            fd = Arc::new(ensure_dir_at(&*fd, &self.plan.dirs[d as usize].name)?);
            cache.open.insert(d, fd.clone());
            cache.order.push_back(d);
            while cache.order.len() > OPEN_DIRS {
                if let Some(old) = cache.order.pop_front() {
                    cache.open.remove(&old);
                }
            }
        }
        Ok(fd)
    }
}

/// Open staged files kept between writes (a small cache: large files get many chunks).
const OPEN_FILES: usize = 64;

/// Pass 2: writes what `plan` lists under `root`. Directories first, then every file into
/// the staging directory, pack by pack (each pack is fetched once, each blob opened once
/// however many files share it, written with positioned writes), each file moved into place
/// with its attributes as soon as it is complete; links and special files last. Returns the
/// counts restored and the entries that could not be.
pub(crate) fn write(
    plan: TreePlan,
    reader: &mut BlobReader,
    root: OwnedFd,
    root_attrs: Option<&Attrs>,
    policy: &OwnerPolicy,
    progress: &ProgressSink,
) -> Result<(ItemStats, EntryReports)> {
    let root = Arc::new(root);
    let token = uuid::Uuid::new_v4().simple().to_string();
    let staging = Staging::create(&root, &token)?;
    let result = write_staged(&plan, reader, &root, &staging, policy, progress);
    // Whatever happened, nothing staged stays behind.
    let removed = staging.remove(&root);
    let (stats, failed) = result?;
    removed?;
    if let Some(attrs) = root_attrs {
        apply_attrs(&*root, attrs, policy, b".")?;
    }
    let mut report = plan.failed;
    report.extend(failed);
    Ok((stats, report))
}

fn write_staged(
    plan: &TreePlan,
    reader: &mut BlobReader,
    root: &Arc<OwnedFd>,
    staging: &Staging,
    policy: &OwnerPolicy,
    progress: &ProgressSink,
) -> Result<(ItemStats, EntryReports)> {
    let mut stats = ItemStats::default();
    let dirs = DirFds::new(plan, root.clone());
    for (i, d) in plan.dirs.iter().enumerate().skip(1) {
        if d.selected {
            dirs.get(i as DirIndex)?;
            stats.dirs += 1;
        }
    }
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); plan.files.len()];
    for (i, f) in plan.files.iter().enumerate() {
        if let Some(leader) = f.link_to {
            members[leader].push(i);
        }
    }
    let files = Files {
        plan,
        dirs: &dirs,
        staging,
        policy,
        members: &members,
        failed: (0..plan.files.len())
            .map(|_| AtomicBool::new(false))
            .collect(),
        reasons: Mutex::new(EntryReports::default()),
    };
    write_data(reader, &files, progress)?;
    let mut failed = std::mem::take(&mut *files.reasons.lock().map_err(|_| Error::Internal {
        reason: "restore report poisoned".into(),
    })?);
    for (i, f) in plan.files.iter().enumerate() {
        let leader = f.link_to.unwrap_or(i);
        if !files.failed[leader].load(Ordering::Relaxed) {
            stats.files += 1;
            stats.bytes += f.size;
        } else if f.link_to.is_some() {
            failed.add(EntryReport {
                item: plan.kind,
                path: plan.path(f.dir, &f.name),
                reason: "a hard link to a file that was not restored".into(),
            });
        }
    }
    let root_is_process_root = rustix::process::geteuid().is_root();
    for (i, o) in plan.others.iter().enumerate() {
        let what = plan.path(o.dir, &o.name);
        let name = format!("o{i}");
        let made = match &o.node {
            Other::Link(target) => {
                staging.symlink(&name, target, &o.attrs, policy, what.as_bytes())
            }
            Other::Special(kind, _) if *kind != SpecialKind::Fifo && !root_is_process_root => {
                failed.add(EntryReport {
                    item: plan.kind,
                    path: what,
                    reason: "device nodes are restored only by root".into(),
                });
                continue;
            }
            Other::Special(kind, rdev) => {
                staging.special(&name, *kind, *rdev, &o.attrs, policy, what.as_bytes())
            }
        };
        made?;
        staging.publish(&name, &*dirs.get(o.dir)?, &o.name)?;
        if matches!(o.node, Other::Link(_)) {
            stats.symlinks += 1;
        }
    }
    if plan.replace {
        // Each directory keeps exactly the names its tree lists (all of them are planned: a
        // replace restore selects everything), and the root its staging directory.
        let mut keep: Vec<HashSet<&[u8]>> = vec![HashSet::new(); plan.dirs.len()];
        keep[0].insert(staging.name());
        for d in plan.dirs.iter().skip(1) {
            keep[d.parent as usize].insert(&d.name);
        }
        for f in &plan.files {
            keep[f.dir as usize].insert(&f.name);
        }
        for o in &plan.others {
            keep[o.dir as usize].insert(&o.name);
        }
        for (i, keep) in keep.iter().enumerate() {
            let d = &plan.dirs[i];
            // A directory whose tree could not be read keeps what it has.
            if !d.damaged {
                prune(&*dirs.get(i as DirIndex)?, keep, &d.name)?;
            }
        }
    }
    // Children change their parent's mtime: set directory attributes deepest first.
    for (i, d) in plan.dirs.iter().enumerate().skip(1).rev() {
        if d.selected {
            apply_attrs(&*dirs.get(i as DirIndex)?, &d.attrs, policy, &d.name)?;
        }
    }
    Ok((stats, failed))
}

/// The files being written: their directories, the staging directory, and which failed.
struct Files<'a> {
    plan: &'a TreePlan,
    dirs: &'a DirFds<'a>,
    staging: &'a Staging,
    policy: &'a OwnerPolicy,
    /// Per file, the files that are hard links to it.
    members: &'a [Vec<usize>],
    failed: Vec<AtomicBool>,
    reasons: Mutex<EntryReports>,
}

impl Files<'_> {
    fn tmp(file: usize) -> String {
        format!("{file}")
    }

    /// Marks `file` as not restored, for `reason` (once).
    fn fail(&self, file: usize, reason: String) {
        if !self.failed[file].swap(true, Ordering::Relaxed) {
            let f = &self.plan.files[file];
            if let Ok(mut r) = self.reasons.lock() {
                r.add(EntryReport {
                    item: self.plan.kind,
                    path: self.plan.path(f.dir, &f.name),
                    reason,
                });
            }
        }
    }

    /// Creates the staged file of `file` (sized, so a sparse file's holes stay holes).
    fn create(&self, file: usize) -> Result<std::fs::File> {
        let f = &self.plan.files[file];
        let handle = self.staging.create_file(&Self::tmp(file))?;
        if f.extents.is_some() {
            handle
                .set_len(f.size)
                .map_err(|e| Error::io(Self::tmp(file), e))?;
        }
        Ok(handle)
    }

    /// Checks that `written` bytes make the whole file, gives it its attributes, moves it
    /// into place and links the files that are hard links to it.
    fn finish(&self, file: usize, handle: Option<std::fs::File>, written: u64) -> Result<()> {
        if self.failed[file].load(Ordering::Relaxed) {
            return Ok(());
        }
        let f = &self.plan.files[file];
        if written != f.stream_len() {
            self.fail(
                file,
                format!(
                    "chunks hold {written} bytes, the tree says {}",
                    f.stream_len()
                ),
            );
            return Ok(());
        }
        let tmp = Self::tmp(file);
        let handle = match handle {
            Some(h) => h,
            None => self.staging.open_file(&tmp)?,
        };
        if f.extents.is_none() && written < f.size {
            handle.set_len(f.size).map_err(|e| Error::io(&tmp, e))?;
        }
        let dir = self.dirs.get(f.dir)?;
        self.staging
            .finish_file(&handle, &tmp, &f.attrs, self.policy, &*dir, &f.name)?;
        for &m in &self.members[file] {
            let member = &self.plan.files[m];
            let name = format!("l{m}");
            self.staging.link(&handle, &name)?;
            self.staging
                .publish(&name, &*self.dirs.get(member.dir)?, &member.name)?;
        }
        Ok(())
    }
}

/// Where one blob goes: chunk id, plaintext length, file index, offset in the file's chunk
/// stream, and the blob's place in its pack (offset, start in its group).
type Need = (ChunkId, u32, usize, u64, (u64, u32));

/// Writes every chunk of every pending file, grouped by pack in order of first use, and
/// moves each file into place once complete. Packs are shared out among one thread per core
/// (each with its own reader), so fetching, opening, writing and finishing files overlap;
/// each pack is still fetched once and each blob opened once. A file whose chunks all lie in
/// one pack (most files) is created, written and finished by the thread holding that pack,
/// through one open handle; the others are created first and finished at the end.
fn write_data(reader: &mut BlobReader, files: &Files<'_>, progress: &ProgressSink) -> Result<()> {
    let plan = files.plan;
    // Where each blob goes, grouped by pack, packs in order of first use; each file's pack
    // when it has exactly one.
    let mut slot_of: HashMap<PackId, usize> = HashMap::new();
    let mut by_pack: Vec<Vec<Need>> = Vec::new();
    let mut home: Vec<Option<usize>> = Vec::with_capacity(plan.files.len());
    for (file, f) in plan.files.iter().enumerate() {
        let mut offset = 0u64;
        let mut packs = (None, false);
        for id in &plan.chunks[f.chunks.clone()] {
            let (pack, len, place) = match reader.locate(id) {
                Ok(l) => l,
                Err(e) => {
                    files.fail(file, e.to_string());
                    continue;
                }
            };
            let slot = *slot_of.entry(pack).or_insert_with(|| {
                by_pack.push(Vec::new());
                by_pack.len() - 1
            });
            by_pack[slot].push((*id, len, file, offset, place));
            offset += u64::from(len);
            packs = match packs {
                (None, _) => (Some(slot), false),
                (Some(first), many) => (Some(first), many || first != slot),
            };
        }
        home.push(match packs {
            (Some(slot), false) if !files.failed[file].load(Ordering::Relaxed) => Some(slot),
            _ => None,
        });
    }
    for (file, h) in home.iter().enumerate() {
        if h.is_none() && plan.files[file].link_to.is_none() {
            files.create(file)?;
        }
    }
    // In pack order (a blob's uses side by side, each group opened once).
    for needs in &mut by_pack {
        needs.sort_unstable_by_key(|n| (n.4, n.2, n.3));
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
        .min(by_pack.len().max(1));
    let mut readers = Vec::with_capacity(threads);
    for _ in 1..threads {
        readers.push(reader.fork()?);
    }
    let written: Vec<AtomicU64> = home.iter().map(|_| AtomicU64::new(0)).collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let shared = Shared {
        by_pack: &by_pack,
        home: &home,
        files,
        written: &written,
        next: &next,
        stop: &stop,
        progress,
    };
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = readers
            .iter_mut()
            .map(|r| scope.spawn(|| shared.run(r)))
            .collect();
        let mut results = vec![shared.run(reader)];
        for h in handles {
            results.push(h.join().unwrap_or_else(|_| {
                Err(Error::Internal {
                    reason: "restore writer thread panicked".into(),
                })
            }));
        }
        results
    });
    for r in results {
        r?;
    }
    for (file, (h, w)) in home.iter().zip(&written).enumerate() {
        if h.is_none() && plan.files[file].link_to.is_none() {
            files.finish(file, None, w.load(Ordering::Relaxed))?;
            progress.event(ProgressEvent::FileDone);
        }
    }
    Ok(())
}

/// What the threads of [`write_data`] share.
struct Shared<'a> {
    by_pack: &'a [Vec<Need>],
    /// Per file: the one pack holding all its chunks, if there is one.
    home: &'a [Option<usize>],
    files: &'a Files<'a>,
    written: &'a [AtomicU64],
    next: &'a AtomicUsize,
    /// Set when a thread failed for good (not damage): the others stop.
    stop: &'a AtomicBool,
    progress: &'a ProgressSink,
}

/// Writes `data`, which starts `at` bytes into the file's chunk stream, where it belongs:
/// at the same offset, or for a sparse file into its data ranges.
fn write_stream(
    f: &mut RestoreFile,
    extents: Option<&[(Extent, u64)]>,
    data: &[u8],
    at: u64,
    scratch: &mut Vec<u8>,
) -> std::io::Result<()> {
    let Some(extents) = extents else {
        return f.write_all_at(data, at, scratch);
    };
    let mut done = 0usize;
    let mut i = extents
        .partition_point(|(_, start)| *start <= at)
        .saturating_sub(1);
    while done < data.len() {
        let Some((x, start)) = extents.get(i) else {
            return Err(std::io::Error::other("data past the file's ranges"));
        };
        let pos = at + done as u64;
        let into = pos - start;
        let take = ((x.len - into) as usize).min(data.len() - done);
        f.write_all_at(&data[done..done + take], x.offset + into, scratch)?;
        done += take;
        i += 1;
    }
    Ok(())
}

impl Shared<'_> {
    /// Takes packs until none is left (or another thread failed).
    fn run(&self, reader: &mut BlobReader) -> Result<()> {
        let mut open: HashMap<usize, RestoreFile> = HashMap::new();
        let mut scratch = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            let slot = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(needs) = self.by_pack.get(slot) else {
                return Ok(());
            };
            if let Err(e) = self.write_pack(reader, slot, needs, &mut open, &mut scratch) {
                self.stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(())
    }

    fn write_pack(
        &self,
        reader: &mut BlobReader,
        slot: usize,
        needs: &[Need],
        open: &mut HashMap<usize, RestoreFile>,
        scratch: &mut Vec<u8>,
    ) -> Result<()> {
        let plan = self.files.plan;
        // The files this pack completes, created on their first chunk.
        let mut owned: HashMap<usize, RestoreFile> = HashMap::new();
        let mut i = 0;
        while i < needs.len() {
            let (id, len, _, _, _) = needs[i];
            let data = match reader.read(&id) {
                Ok(d) if d.len() == len as usize => Ok(d),
                Ok(_) => Err(Error::integrity(
                    format!("blob {id}"),
                    "length differs from the index",
                )),
                Err(e) => Err(e),
            };
            let data = match data {
                Ok(d) => d,
                Err(e) if is_damage(&e) => {
                    while i < needs.len() && needs[i].0 == id {
                        self.files.fail(needs[i].2, e.to_string());
                        i += 1;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            while i < needs.len() && needs[i].0 == id {
                let (_, _, file, offset, _) = needs[i];
                i += 1;
                if self.files.failed[file].load(Ordering::Relaxed) {
                    continue;
                }
                let f = if self.home[file] == Some(slot) {
                    match owned.entry(file) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(e) => e.insert(RestoreFile::new(
                            self.files.create(file)?,
                            plan.files[file].size,
                        )),
                    }
                } else {
                    if !open.contains_key(&file) && open.len() >= OPEN_FILES {
                        open.clear();
                    }
                    match open.entry(file) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(e) => e.insert(RestoreFile::new(
                            self.files.staging.open_file(&Files::tmp(file))?,
                            plan.files[file].size,
                        )),
                    }
                };
                write_stream(
                    f,
                    plan.files[file].extents.as_deref(),
                    &data,
                    offset,
                    scratch,
                )
                .map_err(|e| Error::io(Files::tmp(file), e))?;
                self.written[file].fetch_add(data.len() as u64, Ordering::Relaxed);
                self.progress.event(ProgressEvent::Bytes {
                    bytes: data.len() as u64,
                });
            }
        }
        for (file, f) in owned {
            self.files.finish(
                file,
                Some(f.into_file()),
                self.written[file].load(Ordering::Relaxed),
            )?;
            self.progress.event(ProgressEvent::FileDone);
        }
        Ok(())
    }
}
