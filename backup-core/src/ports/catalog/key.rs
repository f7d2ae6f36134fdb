//! [`KeyStore`]: each account's key envelope.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::AccountId;

/// Each account's key envelope: the opaque bytes the key adapter seals the account's
/// server-held keys into (at most one per account; an empty envelope is present, not absent).
///
/// # Erasure
///
/// Deleting an envelope (or its account) is how an account's server-held keys are destroyed,
/// which makes its backups unreadable (crypto-shredding). So implementations must not keep
/// the bytes of a deleted or replaced envelope where they can be read back, neither through
/// the catalog nor from its files, and must say what remains. A call that cannot complete the
/// erasure returns an error instead of claiming success; it may be retried, and
/// [`delete_key_envelope`](Self::delete_key_envelope) erases again even when the row is
/// already gone.
///
/// What remains, per implementation:
///
/// - `MemoryCatalog`: nothing of its own (the envelope's memory is zeroed when deleted or
///   replaced); copies that `get_key_envelope` handed out are the callers'.
/// - `SqliteCatalog`: no byte of the old envelope is left in the database file, its `-wal` or
///   its `-shm` once the call returns. Connections run with `secure_delete` (deleted rows
///   and freed pages are overwritten with zeros) and keep temporary files in memory; a
///   delete, or a replace by an envelope of another length, rebuilds the envelope table
///   (SQLite leaves copies of rows it moved between pages in their free space, which
///   `secure_delete` does not clear; dropping the old table frees, so zeroes, all its
///   pages); then the write-ahead log is checkpointed into the database file and truncated
///   to zero bytes, tried again for a few seconds while other connections hold it, then an
///   error. What remains is outside those files: disk blocks the file system freed (the
///   truncated log, rewritten pages) until it reuses them, and copies of the files
///   (file-system snapshots, backups of the catalog, a copy another program made while the
///   envelope was there). A catalog in which an earlier version without this erasure
///   deleted or replaced envelopes may still hold bytes of them in free space; one `VACUUM`
///   of the catalog clears it.
/// - `PgCatalog`: after a delete or a replace it runs `VACUUM key_envelopes` (best effort:
///   the role must own the table, and a transaction older than the delete keeps the row
///   alive until it ends). What may remain: the dead tuple's bytes in its table page (and
///   TOAST pages for envelopes over about 2 kB) until a later write reuses that space or
///   the table is rewritten (`VACUUM FULL`), since VACUUM marks space free without zeroing
///   it; the write-ahead-log records that wrote the
///   envelope, in `pg_wal` until their segments are recycled and in any WAL archive for as
///   long as it is kept; base backups, replicas and their WAL; and disk blocks the file
///   system freed. A deployment that must guarantee erasure on PostgreSQL bounds these
///   (archive and backup retention) or relies on the key wrapping alone.
#[async_trait]
pub trait KeyStore: Send + Sync + Debug + 'static {
    /// Stores the account's key envelope (opaque bytes from the key adapter), replacing any;
    /// a replaced envelope is erased as [`delete_key_envelope`](Self::delete_key_envelope)
    /// erases.
    async fn put_key_envelope(&self, account: AccountId, envelope: &[u8]) -> Result<()>;
    /// The account's key envelope.
    async fn get_key_envelope(&self, account: AccountId) -> Result<Option<Vec<u8>>>;
    /// Removes the account's key envelope and erases its bytes (see [Erasure](Self#erasure));
    /// whether there was one.
    async fn delete_key_envelope(&self, account: AccountId) -> Result<bool>;
}
