//! The engine: backup of one account, restore of a plan, dry runs, with progress events.
//!
//! Stages live in separate files so that they can be parallelised independently:
//! [`chunker`](self) (FastCDC), `walk` (tree walk into tree blobs), `packer` (dedup,
//! compress, seal, pack), `upload` (bounded concurrent puts), `reader` (pack fetch and blob
//! authentication), `fs_write` (safe writes under the target), `restore` and `backup`
//! (orchestration).

mod backup;
mod chunker;
mod fs_write;
pub(crate) mod fsat;
mod owners;
mod packer;
mod progress;
mod prune;
mod reader;
mod repack;
mod report;
mod restore;
mod restore_file;
mod restore_tree;
mod stat_cache;
mod upload;
mod verify;
mod walk;

pub use backup::{
    BackupRequest, CommitGuard, DEFAULT_COMPRESSION_LEVEL, DEFAULT_GROUP_COMPRESSION_LEVEL, backup,
};
pub use progress::{
    NoProgress, Progress, ProgressCounters, ProgressEvent, ProgressSink, no_progress,
};
pub use prune::{
    CLOCK_MARGIN, DEFAULT_GRACE, DEFAULT_MAX_UNUSED, DEFAULT_REPACK_BELOW, PruneOptions,
    PruneReport, SnapshotUsage, StorageUsage, prune, storage_usage,
};
pub use report::{BackupReport, ENTRIES_LISTED, EntryReport, EntryReports};
pub use restore::{RestoreReport, dry_run, restore};
pub use stat_cache::{FsStatCache, StatCacheStore};
pub use verify::{AffectedSnapshot, VerifyOptions, VerifyProblem, VerifyReport, verify};
