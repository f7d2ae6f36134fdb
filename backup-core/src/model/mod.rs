//! The domain model: plain serde types validated by their constructors.

mod account;
mod ids;
mod item;
mod job;
mod limit;
mod organization;
mod queue;
mod quota;
mod restore;
mod retention;
mod schedule;
mod selection;
mod settings;
mod snapshot;

pub use account::{
    Account, AccountStatus, Email, EncryptionMode, Excludes, NotificationLevel, Notifications,
    Severity, Username,
};
pub use ids::{
    AccountId, ChunkId, DestinationId, DownloadId, IdHasher, IdHasherBuilder, JobId,
    OrganizationId, PackId, PriorityGroupId, RunId, SnapshotId, TagId, TaskId,
};
pub use item::{ItemKind, check_document_name};
pub use job::{AccountMatcher, AccountSelection, Destination, DestinationClass, Job};
pub use limit::Limit;
pub use organization::{Organization, PriorityGroup, Tag, TagColor};
pub use queue::{
    BreakerPolicy, ClaimRequest, DestinationHealth, Heartbeat, JobRun, Lanes, NewTask, Outcome,
    RetryPolicy, RunTrigger, Task, TaskAttempt, TaskFilter, TaskKind, TaskProgress, TaskState,
};
pub use quota::{BackupLocations, DeviceLimits, Quota, QuotaState, StorageQuota};
pub use restore::{
    CheckedPlan, DownloadFormat, DownloadRequest, DownloadStatus, ItemSelection, OwnerKey,
    Ownership, RestoreOptions, RestorePlan,
};
pub use retention::{
    ForgetReason, Forgotten, KeepReason, Kept, RetentionDecision, RetentionPolicy, RetentionZone,
};
pub use schedule::{Schedule, TimeOfDay, Timing};
pub use selection::{PathFilter, PathSelection};
pub use settings::{AccountUsage, Settings};
pub use snapshot::{BackupStats, ItemStats, Snapshot, SnapshotItem, SnapshotKind, SnapshotStatus};
