//! [`PriorityGroupStore`]: priority groups.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{PriorityGroup, PriorityGroupId};

/// Priority groups (names may repeat).
#[async_trait]
pub trait PriorityGroupStore: Send + Sync + Debug + 'static {
    /// Inserts or replaces a priority group.
    async fn put_priority_group(&self, group: &PriorityGroup) -> Result<()>;
    /// One priority group.
    async fn get_priority_group(&self, id: PriorityGroupId) -> Result<Option<PriorityGroup>>;
    /// Every priority group, by name.
    async fn list_priority_groups(&self) -> Result<Vec<PriorityGroup>>;
    /// Deletes a priority group.
    async fn delete_priority_group(&self, id: PriorityGroupId) -> Result<bool>;
}
