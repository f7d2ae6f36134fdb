//! [`SettingsStore`]: the server's global settings.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::Settings;

/// The server's global [`Settings`]: one value per catalog.
#[async_trait]
pub trait SettingsStore: Send + Sync + Debug + 'static {
    /// The stored settings, or [`Settings::default`] when none were ever stored.
    async fn get_settings(&self) -> Result<Settings>;
    /// Stores the settings, replacing any.
    async fn put_settings(&self, settings: &Settings) -> Result<()>;
}
