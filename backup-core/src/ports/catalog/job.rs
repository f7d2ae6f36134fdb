//! [`JobStore`]: backup jobs.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{Job, JobId};

/// Backup jobs (names may repeat).
#[async_trait]
pub trait JobStore: Send + Sync + Debug + 'static {
    /// Inserts or replaces a job.
    async fn put_job(&self, job: &Job) -> Result<()>;
    /// One job.
    async fn get_job(&self, id: JobId) -> Result<Option<Job>>;
    /// Every job, by name.
    async fn list_jobs(&self) -> Result<Vec<Job>>;
    /// Deletes a job.
    async fn delete_job(&self, id: JobId) -> Result<bool>;
}
