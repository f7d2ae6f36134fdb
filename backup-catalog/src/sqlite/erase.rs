//! Erasing removed key envelopes from the database file and its write-ahead log.
//!
//! Three things leave bytes of a deleted row behind in SQLite, and each has its answer:
//!
//! 1. The deleted cell and freed pages keep their bytes: every connection runs with
//!    `secure_delete`, which overwrites them with zeros.
//! 2. When SQLite rebalances a table's pages (after a delete, or an insert in the middle), it
//!    can rebuild a page and leave copies of the cells it moved in the page's unallocated
//!    space, where `secure_delete` never looks; a later delete of such a row zeroes the row,
//!    not the old copies. So after an envelope is deleted or resized, the table is rebuilt:
//!    its rows are copied, in order, into a new table (appends only, which never leave
//!    copies), and the old table is dropped, which frees and so zeroes every page it had.
//!    A replacement of the same length is written over the old bytes in place and needs
//!    none of this. The cost is one copy of the envelope table (a few hundred bytes per
//!    account) per delete.
//! 3. Earlier versions of the changed pages stay in the write-ahead log, and the database
//!    file holds the pages as last checkpointed: a TRUNCATE checkpoint writes the latest
//!    pages into the database file and empties the log.
//!
//! Temporary files (statement journals, sorts) are kept in memory (`temp_store`), so no copy
//! of a row reaches one.

use std::time::{Duration, Instant};

use super::{BUSY_TIMEOUT, SqliteCatalog};
use crate::error::{Error, Result};
use crate::sql::Removal;

/// How long an erasure keeps trying a checkpoint that other connections block before it
/// fails.
const ERASE_TIMEOUT: Duration = BUSY_TIMEOUT;

/// The first pause between checkpoint attempts; it doubles up to [`CHECKPOINT_PAUSE_MAX`].
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(5);

/// The longest pause between checkpoint attempts.
const CHECKPOINT_PAUSE_MAX: Duration = Duration::from_millis(200);

/// Rebuilds `key_envelopes` as migrated (keep the `CREATE TABLE` in step with
/// `migrations/sqlite/`): copy, drop, rename. Rows keep their order, so the copy only
/// appends.
const REBUILD_KEYS: &str = "\
    CREATE TABLE key_envelopes_rebuilt (\
        account_id TEXT NOT NULL PRIMARY KEY, \
        envelope   BLOB NOT NULL\
    );\
    INSERT INTO key_envelopes_rebuilt (account_id, envelope) \
        SELECT account_id, envelope FROM key_envelopes ORDER BY rowid;\
    DROP TABLE key_envelopes;\
    ALTER TABLE key_envelopes_rebuilt RENAME TO key_envelopes;";

impl SqliteCatalog {
    /// After a key envelope was deleted or replaced: rebuilds the envelope table unless the
    /// old bytes were overwritten in place, then checkpoints (see the module docs).
    pub(super) async fn erase_removed_envelopes(&self, removal: Removal) -> Result<()> {
        if removal == Removal::Freed {
            let mut tx = self.begin_write().await?;
            sqlx::raw_sql(REBUILD_KEYS).execute(&mut *tx).await?;
            tx.commit().await?;
        }
        self.checkpoint().await
    }

    /// Runs `PRAGMA wal_checkpoint(TRUNCATE)` until it completes, or fails after
    /// [`ERASE_TIMEOUT`].
    ///
    /// It needs a moment with no other checkpoint, no writer and no reader of the log.
    /// SQLite waits for some of these (up to the busy timeout) but reports others at once
    /// (another checkpoint running, a reader of an older snapshot), hence the retries with
    /// growing pauses. An in-memory catalog has no log: the first try succeeds.
    async fn checkpoint(&self) -> Result<()> {
        let started = Instant::now();
        let mut pause = CHECKPOINT_PAUSE;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&self.pool)
                .await?;
            if busy == 0 {
                return Ok(());
            }
            if started.elapsed() >= ERASE_TIMEOUT {
                return Err(Error::ErasureBlocked { attempts });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(CHECKPOINT_PAUSE_MAX);
        }
    }
}
