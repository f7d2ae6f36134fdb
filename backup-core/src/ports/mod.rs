//! Ports: the traits adapters implement. Each is object-safe and held as `Arc<dyn …>`.

mod catalog;
mod clock;
mod crypto;
mod keys;
mod memory_catalog;
mod notifier;
mod queue;
mod source;
mod storage;
mod stores;

pub use catalog::{
    AccountStore, Catalog, DestinationStore, DownloadStore, JobStore, KeyStore, OrganizationStore,
    PriorityGroupStore, SettingsStore, SnapshotStore, TagStore, UsageStore,
};
pub use clock::{Clock, SystemClock};
pub use crypto::{
    ContentOpener, ContentSealer, MacDomain, OpenSession, PlainCrypto, SealSession, ServerKeys,
};
pub use keys::{KeyVault, NewKeys, OpenedKeys};
pub use memory_catalog::MemoryCatalog;
pub use notifier::{Event, EventKind, Notifier, NullNotifier};
pub use queue::JobQueue;
pub use source::{
    AccountSource, DocumentReader, DocumentWriter, RestoreTarget, SourceProvider, TreeRoot,
};
pub use storage::DeferredFlush;
pub use stores::StoreResolver;
