//! Server-wide settings: the defaults an account's own settings fall back to.

use serde::{Deserialize, Serialize};

use super::ids::AccountId;
use super::limit::Limit;

/// The server's global settings, one value per catalog. Every field has a default, so a
/// catalog that never stored settings reads [`Settings::default`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Maximum on-demand snapshots kept per account, for accounts whose own limit is
    /// [`Limit::Default`]. A global `Default` means unlimited.
    pub max_on_demand_snapshots: Limit,
    /// Days the snapshots of a removed account are kept as orphans before `orphans prune`
    /// forgets them; 0 keeps them until removed by hand. JetBackup's default, 180.
    #[serde(default = "default_orphan_ttl_days")]
    pub orphan_ttl_days: u32,
}

fn default_orphan_ttl_days() -> u32 {
    180
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_on_demand_snapshots: Limit::default(),
            orphan_ttl_days: default_orphan_ttl_days(),
        }
    }
}

/// What one account's snapshot rows add up to in a catalog: the usage quotas are checked
/// against. `bytes_stored` is the sum of the bytes each snapshot added to its destination
/// (a chunk is counted once, by the snapshot that stored it), so it is dedup-aware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountUsage {
    /// The account id the snapshot rows name (its account row may be gone: an orphan).
    pub account: AccountId,
    /// How many snapshot rows it has.
    pub snapshots: u64,
    /// The sum of their `stats.bytes_stored`.
    pub bytes_stored: u64,
}
