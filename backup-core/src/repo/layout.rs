//! Where each object lives under the repository root.

use object_store::path::Path;

use crate::model::{AccountId, ChunkId, SnapshotId};

/// `ROOT/config`.
pub fn config(root: &Path) -> Path {
    root.clone().join("config")
}

/// `ROOT/accounts/`.
pub fn accounts(root: &Path) -> Path {
    root.clone().join("accounts")
}

/// `ROOT/accounts/<uuid>/`.
pub fn account(root: &Path, account: AccountId) -> Path {
    accounts(root).join(account.to_string())
}

/// `ROOT/accounts/<uuid>/keys/`.
pub fn keys(root: &Path, account: AccountId) -> Path {
    self::account(root, account).join("keys")
}

/// `ROOT/accounts/<uuid>/snapshots/`.
pub fn snapshots(root: &Path, account: AccountId) -> Path {
    self::account(root, account).join("snapshots")
}

/// `ROOT/accounts/<uuid>/snapshots/<snapshot-uuid>`.
pub fn snapshot(root: &Path, account: AccountId, id: SnapshotId) -> Path {
    snapshots(root, account).join(id.to_string())
}

/// `ROOT/accounts/<uuid>/packs/`.
pub fn packs(root: &Path, account: AccountId) -> Path {
    self::account(root, account).join("packs")
}

/// `ROOT/accounts/<uuid>/packs/<hh>/<pack-id-hex>`.
pub fn pack(root: &Path, account: AccountId, id: &ChunkId) -> Path {
    let hex = id.to_hex();
    packs(root, account).join(&hex[..2]).join(hex)
}

/// `ROOT/accounts/<uuid>/index/`.
pub fn indexes(root: &Path, account: AccountId) -> Path {
    self::account(root, account).join("index")
}

/// `ROOT/accounts/<uuid>/index/<index-id-hex>`.
pub fn index(root: &Path, account: AccountId, id: &ChunkId) -> Path {
    indexes(root, account).join(id.to_hex())
}

/// `ROOT/accounts/<uuid>/locks/`.
pub fn locks(root: &Path, account: AccountId) -> Path {
    self::account(root, account).join("locks")
}

/// `ROOT/accounts/<uuid>/locks/<snapshot-uuid>`.
pub fn lock(root: &Path, account: AccountId, id: SnapshotId) -> Path {
    locks(root, account).join(id.to_string())
}

/// `ROOT/accounts/<uuid>/collection`: the garbage collector's state.
pub fn collection(root: &Path, account: AccountId) -> Path {
    self::account(root, account).join("collection")
}
