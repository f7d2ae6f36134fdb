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
    /// Where an account's live data is when the account records no source of its own:
    /// `{USER}` is replaced by the username (`/home/{USER}`, the default); a path without
    /// `{USER}` is a directory holding one directory per username.
    #[serde(default = "default_accounts_root")]
    pub accounts_root: String,
}

fn default_orphan_ttl_days() -> u32 {
    180
}

fn default_accounts_root() -> String {
    "/home/{USER}".to_owned()
}

impl Settings {
    /// The live data directory of `username` under [`Settings::accounts_root`].
    pub fn account_dir(&self, username: &super::account::Username) -> std::path::PathBuf {
        let root = self.accounts_root.trim();
        if root.contains("{USER}") {
            root.replace("{USER}", username.as_str()).into()
        } else {
            std::path::Path::new(root).join(username.as_str())
        }
    }

    /// Checks [`Settings::accounts_root`]: an absolute path, `{USER}` at most in its last
    /// components (never in a way that lets a username climb: usernames have no `/`).
    pub fn validate_accounts_root(root: &str) -> crate::error::Result<()> {
        let root = root.trim();
        if !root.starts_with('/') {
            return Err(crate::error::Error::invalid(
                "accounts root",
                format!("{root:?}: give an absolute directory, such as /home or /home/{{USER}}"),
            ));
        }
        if root.split('/').any(|c| c == "..") {
            return Err(crate::error::Error::invalid(
                "accounts root",
                format!("{root:?}: no `..` components"),
            ));
        }
        Ok(())
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_on_demand_snapshots: Limit::default(),
            orphan_ttl_days: default_orphan_ttl_days(),
            accounts_root: default_accounts_root(),
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
