//! What the engine tells a store beyond the [`object_store::ObjectStore`] calls themselves.

/// A put extension (in [`object_store::PutOptions::extensions`]) the engine sets on pack
/// puts: the store may make the object durable, and visible under its name, after the put
/// returns, but no later than the first write, copy, rename or delete made through the
/// same store after it that does not carry this marker. If it cannot, that write (and any
/// later one that might rely on the object) must fail instead.
///
/// A pack only counts once an index or a snapshot names it, and those are written without
/// the marker after the packs they name; so a store may flush a backup's packs on its own
/// schedule instead of waiting for each put, as long as they are all on disk before the
/// index. A store that defers must not show the object under its name before it is on
/// disk: another process listing the packs could otherwise name it in its own index.
/// Stores that do not know the marker ignore it (object_store's own backends ignore every
/// extension): their puts are durable and visible when they return, which is stronger.
/// `backup_storage::LocalStore` is the store that uses it.
///
/// ```
/// use backup_core::ports::DeferredFlush;
/// use object_store::PutOptions;
///
/// let mut opts = PutOptions::default();
/// opts.extensions.insert(DeferredFlush);
/// assert!(opts.extensions.get::<DeferredFlush>().is_some());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeferredFlush;
