//! [`OrganizationStore`]: organizations (resellers, customers) by id and login.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{Organization, OrganizationId};

/// Organizations. Logins are unique: putting an organization whose login another id holds
/// is [`crate::Error::AlreadyExists`].
#[async_trait]
pub trait OrganizationStore: Send + Sync + Debug + 'static {
    /// Inserts or replaces an organization.
    async fn put_organization(&self, org: &Organization) -> Result<()>;
    /// One organization.
    async fn get_organization(&self, id: OrganizationId) -> Result<Option<Organization>>;
    /// The organization with this login.
    async fn find_organization(&self, login: &str) -> Result<Option<Organization>>;
    /// Every organization, by login.
    async fn list_organizations(&self) -> Result<Vec<Organization>>;
    /// Deletes an organization.
    async fn delete_organization(&self, id: OrganizationId) -> Result<bool>;
}
