//! [`DestinationStore`]: destinations by id and name.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{Destination, DestinationId};

/// Destinations. Names are unique: putting a destination whose name another id holds is
/// [`crate::Error::AlreadyExists`].
#[async_trait]
pub trait DestinationStore: Send + Sync + Debug + 'static {
    /// Inserts or replaces a destination (names are unique).
    async fn put_destination(&self, destination: &Destination) -> Result<()>;
    /// One destination.
    async fn get_destination(&self, id: DestinationId) -> Result<Option<Destination>>;
    /// The destination with this name.
    async fn find_destination(&self, name: &str) -> Result<Option<Destination>>;
    /// Every destination, by name.
    async fn list_destinations(&self) -> Result<Vec<Destination>>;
    /// Deletes a destination.
    async fn delete_destination(&self, id: DestinationId) -> Result<bool>;
}
