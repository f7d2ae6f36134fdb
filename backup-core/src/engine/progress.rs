//! Progress reporting for long operations.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::{ItemKind, ItemStats};

/// One step of a backup, restore or dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
#[non_exhaustive]
pub enum ProgressEvent {
    /// Work on an item started (the "current item").
    ItemStarted {
        /// Which item.
        kind: ItemKind,
    },
    /// Content bytes were read (backup) or written (restore).
    Bytes {
        /// How many, since the previous event.
        bytes: u64,
    },
    /// One file or document is done.
    FileDone,
    /// An item is done.
    ItemFinished {
        /// Which item.
        kind: ItemKind,
        /// Its counts.
        stats: ItemStats,
    },
}

/// Receives progress events; called from worker threads, so it must be cheap.
pub trait Progress: Send + Sync + fmt::Debug {
    /// One event.
    fn event(&self, event: ProgressEvent);
}

/// Shared handle on a progress receiver.
pub type ProgressSink = Arc<dyn Progress>;

/// Ignores every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: ProgressEvent) {}
}

/// A sink that ignores every event.
pub fn no_progress() -> ProgressSink {
    Arc::new(NoProgress)
}

/// Counts events; read the totals at any time from another thread.
#[derive(Debug, Default)]
pub struct ProgressCounters {
    /// Bytes so far.
    pub bytes: AtomicU64,
    /// Files so far.
    pub files: AtomicU64,
    /// Items finished.
    pub items: AtomicU64,
}

impl Progress for ProgressCounters {
    fn event(&self, event: ProgressEvent) {
        match event {
            ProgressEvent::Bytes { bytes } => {
                self.bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            ProgressEvent::FileDone => {
                self.files.fetch_add(1, Ordering::Relaxed);
            }
            ProgressEvent::ItemFinished { .. } => {
                self.items.fetch_add(1, Ordering::Relaxed);
            }
            ProgressEvent::ItemStarted { .. } => {}
        }
    }
}
