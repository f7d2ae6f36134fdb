//! [`TagStore`]: tags.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{Tag, TagId};

/// Tags (names may repeat).
#[async_trait]
pub trait TagStore: Send + Sync + Debug + 'static {
    /// Inserts or replaces a tag.
    async fn put_tag(&self, tag: &Tag) -> Result<()>;
    /// One tag.
    async fn get_tag(&self, id: TagId) -> Result<Option<Tag>>;
    /// Every tag, by name.
    async fn list_tags(&self) -> Result<Vec<Tag>>;
    /// Deletes a tag.
    async fn delete_tag(&self, id: TagId) -> Result<bool>;
}
