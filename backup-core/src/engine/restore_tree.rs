//! Restoring one tree item in two passes:
//! 1. **plan**: read every tree blob of the selection (names are checked here, so a crafted
//!    name is refused before anything is written) and list directories, files and links in
//!    walk order;
//! 2. **write**: create directories, write files chunk by chunk, recreate links; then prune
//!    (replace restores) and set directory times deepest first.
//!
//! Reading trees first keeps tree packs and data packs out of each other's cache, so each
//! data pack is fetched about once: files are written in the order the backup packed them.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::fs_write::{
    SafeDirs, create_temp, finish_dir, finish_file, open_temp, prune, temp_path, write_symlink,
};
use super::progress::{ProgressEvent, ProgressSink};
use super::reader::BlobReader;
use super::restore_file::RestoreFile;
use crate::error::Result;
use crate::model::{ChunkId, ItemStats, PackId, PathSelection};
use crate::repo::Node;

/// Index of a directory in [`TreePlan::dirs`]; the target root is 0.
type DirIndex = u32;

/// A directory the plan reaches: restored itself when `selected`, else only a parent.
struct PlanDir {
    parent: DirIndex,
    name: Box<[u8]>,
    selected: bool,
    mode: u32,
    mtime_ns: i64,
}

/// A file to restore; its chunks are `TreePlan::chunks[chunks]`.
struct PlanFile {
    dir: DirIndex,
    name: Box<[u8]>,
    size: u64,
    chunks: Range<usize>,
    mode: u32,
    mtime_ns: i64,
}

/// A symbolic link to recreate.
struct PlanLink {
    dir: DirIndex,
    name: Box<[u8]>,
    target: Box<[u8]>,
}

/// What pass 1 found, kept compact (a restore of millions of files holds it all): each
/// directory once, files and links by directory index and name, chunk ids in one array.
pub(crate) struct TreePlan {
    /// Walk order: a parent comes before its children. Index 0 is the target root.
    dirs: Vec<PlanDir>,
    files: Vec<PlanFile>,
    links: Vec<PlanLink>,
    chunks: Vec<ChunkId>,
    /// A replace restore: every directory loses the entries the snapshot does not have.
    replace: bool,
}

impl TreePlan {
    fn dir_index(&self) -> Result<DirIndex> {
        DirIndex::try_from(self.dirs.len()).map_err(|_| crate::Error::Internal {
            reason: "more directories than a restore can hold".into(),
        })
    }
}

/// Pass 1: reads the trees under `root` and lists what the selection restores.
pub(crate) fn plan(
    reader: &mut BlobReader,
    root: &ChunkId,
    paths: &PathSelection,
    replace: bool,
) -> Result<TreePlan> {
    let mut plan = TreePlan {
        dirs: vec![PlanDir {
            parent: 0,
            name: Box::default(),
            selected: false,
            mode: 0,
            mtime_ns: 0,
        }],
        files: Vec::new(),
        links: Vec::new(),
        chunks: Vec::new(),
        replace,
    };
    plan_dir(reader, root, paths, 0, &mut Vec::new(), &mut plan)?;
    Ok(plan)
}

/// The path of `components` relative to the item root, as selections match it.
fn rel_path(components: &[Vec<u8>]) -> String {
    let parts: Vec<String> = components
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    parts.join("/")
}

fn plan_dir(
    reader: &mut BlobReader,
    tree_id: &ChunkId,
    paths: &PathSelection,
    dir: DirIndex,
    components: &mut Vec<Vec<u8>>,
    plan: &mut TreePlan,
) -> Result<()> {
    let tree = reader.tree(tree_id)?;
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
            Node::Dir { tree, .. } if paths.may_select_below(&rel) => {
                let index = plan.dir_index()?;
                plan.dirs.push(PlanDir {
                    parent: dir,
                    name: name(),
                    selected: paths.selects(&rel),
                    mode: entry.mode,
                    mtime_ns: entry.mtime_ns,
                });
                plan_dir(reader, &tree, paths, index, components, plan)?;
            }
            Node::File { size, chunks } if paths.selects(&rel) => {
                let start = plan.chunks.len();
                plan.chunks.extend_from_slice(&chunks);
                plan.files.push(PlanFile {
                    dir,
                    name: name(),
                    size,
                    chunks: start..plan.chunks.len(),
                    mode: entry.mode,
                    mtime_ns: entry.mtime_ns,
                });
            }
            Node::Symlink { target } if paths.selects(&rel) => {
                plan.links.push(PlanLink {
                    dir,
                    name: name(),
                    target: target.into_boxed_slice(),
                });
            }
            _ => {}
        }
        components.pop();
    }
    Ok(())
}

/// The paths of the plan's directories, each made sure of (created, or checked to be a
/// real directory) on first use.
struct DirPaths<'a> {
    plan: &'a TreePlan,
    safe: &'a mut SafeDirs,
    paths: Vec<Option<PathBuf>>,
}

impl<'a> DirPaths<'a> {
    fn new(plan: &'a TreePlan, safe: &'a mut SafeDirs) -> Self {
        Self {
            plan,
            safe,
            paths: vec![None; plan.dirs.len()],
        }
    }

    /// The components of directory `dir` below the root.
    fn components(&self, mut dir: DirIndex) -> Vec<&'a [u8]> {
        let mut components = Vec::new();
        while dir != 0 {
            let d = &self.plan.dirs[dir as usize];
            components.push(&*d.name);
            dir = d.parent;
        }
        components.reverse();
        components
    }

    /// Directory `dir`, created (with any missing parents) if needed.
    fn ensure(&mut self, dir: DirIndex) -> Result<&PathBuf> {
        if self.paths[dir as usize].is_none() {
            let path = self.safe.ensure(&self.components(dir))?;
            self.paths[dir as usize] = Some(path);
        }
        self.paths[dir as usize]
            .as_ref()
            .ok_or_else(|| crate::Error::Internal {
                reason: "restore directory lost".into(),
            })
    }
}

/// The files being written: their directories and the names of their temporary siblings.
struct Files<'a> {
    plan: &'a TreePlan,
    dirs: &'a [Option<PathBuf>],
    /// Makes this restore's temporary names unique (with each file's index).
    token: String,
}

impl Files<'_> {
    fn dir(&self, file: usize) -> &Path {
        self.dirs[self.plan.files[file].dir as usize]
            .as_deref()
            .unwrap_or(Path::new(""))
    }

    fn tmp(&self, file: usize) -> PathBuf {
        let f = &self.plan.files[file];
        temp_path(self.dir(file), &f.name, &format!("{}-{file}", self.token))
    }

    /// Checks that `written` bytes make the whole file, sets its mode and time and moves it
    /// into place.
    fn finish(&self, file: usize, handle: Option<std::fs::File>, written: u64) -> Result<()> {
        let f = &self.plan.files[file];
        if written != f.size {
            return Err(crate::Error::integrity(
                self.dir(file)
                    .join(std::ffi::OsStr::from_bytes(&f.name))
                    .display()
                    .to_string(),
                format!("chunks hold {written} bytes, the tree says {}", f.size),
            ));
        }
        finish_file(
            handle,
            self.dir(file),
            &f.name,
            &self.tmp(file),
            f.mode,
            f.mtime_ns,
        )
    }
}

/// Open temporary files kept between writes (a small cache: large files get many chunks).
const OPEN_FILES: usize = 64;

/// Pass 2: writes what `plan` lists under `safe`'s root. Directories first, then every file
/// into an exclusive temporary sibling, pack by pack (each pack is fetched once, each blob
/// opened once however many files share it, written with positioned writes), each file moved
/// into place as soon as it is complete; links last, so no write goes through one. On any
/// failure every temporary file is removed, so no file that failed authentication is left
/// anywhere.
pub(crate) fn write(
    plan: TreePlan,
    reader: &mut BlobReader,
    safe: &mut SafeDirs,
    progress: &ProgressSink,
) -> Result<ItemStats> {
    let mut stats = ItemStats::default();
    let mut dirs = DirPaths::new(&plan, safe);
    for (i, d) in plan.dirs.iter().enumerate().skip(1) {
        if d.selected {
            dirs.ensure(i as DirIndex)?;
            stats.dirs += 1;
        }
    }
    for f in &plan.files {
        dirs.ensure(f.dir)?;
    }
    let paths = std::mem::take(&mut dirs.paths);
    let files = Files {
        plan: &plan,
        dirs: &paths,
        token: uuid::Uuid::new_v4().simple().to_string(),
    };
    if let Err(e) = write_data(reader, &files, progress) {
        // Files already moved into place are complete and authenticated; the rest go.
        for file in 0..plan.files.len() {
            let _ = std::fs::remove_file(files.tmp(file));
        }
        return Err(e);
    }
    stats.files = plan.files.len() as u64;
    stats.bytes = plan.files.iter().map(|f| f.size).sum();
    dirs.paths = paths;
    for link in &plan.links {
        write_symlink(dirs.ensure(link.dir)?, &link.name, &link.target)?;
        stats.symlinks += 1;
    }
    if plan.replace {
        // Each directory keeps exactly the names its tree lists (all of them are planned: a
        // replace restore selects everything).
        let mut keep: Vec<HashSet<&[u8]>> = vec![HashSet::new(); plan.dirs.len()];
        for d in plan.dirs.iter().skip(1) {
            keep[d.parent as usize].insert(&d.name);
        }
        for f in &plan.files {
            keep[f.dir as usize].insert(&f.name);
        }
        for l in &plan.links {
            keep[l.dir as usize].insert(&l.name);
        }
        for (i, keep) in keep.iter().enumerate() {
            prune(dirs.ensure(i as DirIndex)?, keep)?;
        }
    }
    // Children change their parent's mtime: set directory times deepest first.
    for (i, d) in plan.dirs.iter().enumerate().skip(1).rev() {
        if d.selected {
            finish_dir(dirs.ensure(i as DirIndex)?, d.mode, d.mtime_ns)?;
        }
    }
    Ok(stats)
}

/// Where one blob goes: chunk id, plaintext length, file index, offset in the file, and the
/// blob's place in its pack (offset, start in its group).
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
            let (pack, len, place) = reader.locate(id)?;
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
            (Some(slot), false) => Some(slot),
            _ => None,
        });
    }
    for (file, h) in home.iter().enumerate() {
        if h.is_none() {
            create_temp(&files.tmp(file))?;
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
    let failed = AtomicBool::new(false);
    let shared = Shared {
        by_pack: &by_pack,
        home: &home,
        files,
        written: &written,
        next: &next,
        failed: &failed,
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
                Err(crate::Error::Internal {
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
        if h.is_none() {
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
    failed: &'a AtomicBool,
    progress: &'a ProgressSink,
}

impl Shared<'_> {
    /// Takes packs until none is left (or another thread failed).
    fn run(&self, reader: &mut BlobReader) -> Result<()> {
        let mut open: HashMap<usize, RestoreFile> = HashMap::new();
        let mut scratch = Vec::new();
        while !self.failed.load(Ordering::Relaxed) {
            let slot = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(needs) = self.by_pack.get(slot) else {
                return Ok(());
            };
            if let Err(e) = self.write_pack(reader, slot, needs, &mut open, &mut scratch) {
                self.failed.store(true, Ordering::Relaxed);
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
        // The files this pack completes, created on their first chunk.
        let mut owned: HashMap<usize, RestoreFile> = HashMap::new();
        let mut i = 0;
        while i < needs.len() {
            let (id, len, _, _, _) = needs[i];
            let data = reader.read(&id)?;
            if data.len() != len as usize {
                return Err(crate::Error::integrity(
                    format!("blob {id}"),
                    "length differs from the index",
                ));
            }
            while i < needs.len() && needs[i].0 == id {
                let (_, _, file, offset, _) = needs[i];
                // The temporary name is derived only to open a file or to report an error.
                let f = if self.home[file] == Some(slot) {
                    match owned.entry(file) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(e) => e.insert(RestoreFile::new(
                            create_temp(&self.files.tmp(file))?,
                            self.files.plan.files[file].size,
                        )),
                    }
                } else {
                    if !open.contains_key(&file) && open.len() >= OPEN_FILES {
                        open.clear();
                    }
                    match open.entry(file) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(e) => {
                            let tmp = self.files.tmp(file);
                            e.insert(RestoreFile::new(
                                open_temp(&tmp)?,
                                self.files.plan.files[file].size,
                            ))
                        }
                    }
                };
                f.write_all_at(&data, offset, scratch)
                    .map_err(|e| crate::Error::io(self.files.tmp(file), e))?;
                self.written[file].fetch_add(data.len() as u64, Ordering::Relaxed);
                self.progress.event(ProgressEvent::Bytes {
                    bytes: data.len() as u64,
                });
                i += 1;
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
