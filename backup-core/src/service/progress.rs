//! Progress of the server's operations: the engine's events, tagged with the operation they
//! belong to, its phase and the totals when known, as serializable values a panel can
//! forward to a web page (`backupctl --progress json` writes them as JSON lines).

use std::fmt::Debug;
use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

use crate::engine::{Progress, ProgressEvent, ProgressSink};
use crate::model::ItemStats;

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// A backup.
    Backup,
    /// A restore.
    Restore,
    /// A dry run of a restore.
    DryRun,
}

/// Where an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Checking settings, taking the lease, loading what the account has.
    Preparing,
    /// Reading and writing data (the engine's events).
    Running,
    /// Writing the snapshot and the catalog row.
    Committing,
    /// Done.
    Finished,
    /// Stopped by an error or cancellation.
    Failed,
}

/// One progress event of one operation.
#[derive(Debug, Clone, Serialize)]
pub struct OperationEvent {
    /// The operation (one id per call of a server operation).
    pub operation: Uuid,
    /// What it does.
    pub kind: OperationKind,
    /// Where it is.
    pub phase: Phase,
    /// The whole work's counts, when known (a restore knows them from its snapshots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totals: Option<ItemStats>,
    /// The engine's event, in the running phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<ProgressEvent>,
}

/// Receives progress events; called from worker threads, so it must be cheap.
pub trait OperationProgress: Send + Sync + Debug {
    /// One event.
    fn event(&self, event: &OperationEvent);
}

/// Ignores every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoOperationProgress;

impl OperationProgress for NoOperationProgress {
    fn event(&self, _event: &OperationEvent) {}
}

/// A sink ignoring every event.
pub fn no_operation_progress() -> Arc<dyn OperationProgress> {
    Arc::new(NoOperationProgress)
}

/// Tags the engine's events of one operation.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    operation: Uuid,
    kind: OperationKind,
    totals: Option<ItemStats>,
    inner: Arc<dyn OperationProgress>,
}

impl Reporter {
    pub(crate) fn new(kind: OperationKind, inner: Arc<dyn OperationProgress>) -> Self {
        Self {
            operation: Uuid::now_v7(),
            kind,
            totals: None,
            inner,
        }
    }

    pub(crate) fn set_totals(&mut self, totals: ItemStats) {
        self.totals = Some(totals);
    }

    pub(crate) fn phase(&self, phase: Phase) {
        self.inner.event(&OperationEvent {
            operation: self.operation,
            kind: self.kind,
            phase,
            totals: self.totals,
            step: None,
        });
    }

    /// The engine's sink for the running phase.
    pub(crate) fn sink(&self) -> ProgressSink {
        Arc::new(self.clone())
    }
}

impl Progress for Reporter {
    fn event(&self, event: ProgressEvent) {
        self.inner.event(&OperationEvent {
            operation: self.operation,
            kind: self.kind,
            phase: Phase::Running,
            totals: None,
            step: Some(event),
        });
    }
}
