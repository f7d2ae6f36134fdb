//! Ports: the traits adapters implement. Each is object-safe and held as `Arc<dyn …>`.

mod catalog;
mod crypto;
mod memory_catalog;
mod notifier;
mod source;
mod storage;

pub use catalog::Catalog;
pub use crypto::{
    ContentOpener, ContentSealer, MacDomain, OpenSession, PlainCrypto, SealSession, ServerKeys,
};
pub use memory_catalog::MemoryCatalog;
pub use notifier::{Event, EventKind, Notifier, NullNotifier};
pub use source::{AccountSource, DocumentReader, DocumentWriter, RestoreTarget, TreeRoot};
pub use storage::DeferredFlush;
