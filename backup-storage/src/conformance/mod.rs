//! The conformance suite: what every destination store must do, checked against any
//! [`ObjectStore`] (memory, local disk, S3, SFTP, and wrappers around them).
//!
//! A store's tests call [`run`] (or single checks) and let the first broken rule panic
//! with a message naming it:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use object_store::{ObjectStore, memory::InMemory, path::Path};
//!
//! let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
//! backup_storage::conformance::run(&store, &Path::from("tests")).await;
//! # });
//! ```
//!
//! What is checked:
//! - [`objects`]: put then get gives the bytes back, with the right size and range;
//!   bounded, offset and suffix ranges, ranges past the end clamped, ranges starting past
//!   the end refused; `get_ranges`; `head`.
//! - [`overwrite`]: a plain put replaces the object (longer and shorter).
//! - [`empty_objects`]: zero-byte objects store, read, head and list as size 0.
//! - [`unicode_keys`]: keys with accents, Cyrillic, CJK, emoji, spaces and percent signs
//!   round-trip through put, get and both listings unchanged.
//! - [`not_found`]: get, head, ranged get and copy of a missing key are `NotFound`, also
//!   for a key that is only a prefix of others; deleting a missing key is `Ok` or
//!   `NotFound`; listings of a missing prefix are empty.
//! - [`listing`]: `list` matches whole segments (`a` does not list `ab/...`), sizes are
//!   right, `list_with_delimiter` splits objects and common prefixes, `list_with_offset`
//!   is exclusive, `delete_stream` deletes everything and leaves no prefix behind.
//! - [`copy_rename`]: copy, overwrite by copy, rename; the `_if_not_exists` forms refuse a
//!   taken name with `AlreadyExists` (or say `NotSupported`/`NotImplemented`).
//! - [`create_race`]: [`PutMode::Create`](object_store::PutMode::Create) raced by 8 tasks
//!   on one key has exactly one winner, the others get `AlreadyExists`, the stored bytes
//!   are the winner's, and a later create fails without changing them.
//! - [`large_objects`]: a 64 MiB put and a multipart upload of 3 parts (over 64 MiB) read
//!   back byte for byte, whole and by range; an aborted upload leaves nothing.
//!
//! Every check works below its own fresh prefix under `root` and deletes what it made, so
//! the suite can run against a store that holds other data.

mod create;
mod large;
mod listing;
mod objects;

use std::fmt::Display;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

pub use create::create_race;
pub use large::{LARGE_OBJECT, large_objects};
pub use listing::listing;
pub use objects::{copy_rename, empty_objects, not_found, objects, overwrite, unicode_keys};

/// Runs every check, in the order of the module list above; panics on the first failure.
pub async fn run(store: &Arc<dyn ObjectStore>, root: &Path) {
    objects(store, root).await;
    overwrite(store, root).await;
    empty_objects(store, root).await;
    unicode_keys(store, root).await;
    not_found(store, root).await;
    listing(store, root).await;
    copy_rename(store, root).await;
    create_race(store, root).await;
    large_objects(store, root, LARGE_OBJECT).await;
}

/// The value, or a panic naming the step that failed.
#[track_caller]
fn ok<T>(result: object_store::Result<T>, step: impl Display) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("conformance: {step}: unexpected error: {e}"),
    }
}

/// Asserts that `result` failed with `NotFound`.
#[track_caller]
fn expect_not_found<T: std::fmt::Debug>(result: object_store::Result<T>, step: impl Display) {
    match result {
        Err(object_store::Error::NotFound { .. }) => {}
        Err(other) => panic!("conformance: {step}: expected NotFound, got: {other}"),
        Ok(v) => panic!("conformance: {step}: expected NotFound, got a result: {v:?}"),
    }
}

/// A fresh prefix for one check: `root/conformance-RANDOM/NAME`.
fn fresh(root: &Path, name: &str) -> Path {
    root.clone()
        .join(format!("conformance-{:016x}", rand::random::<u64>()).as_str())
        .join(name)
}

/// `len` bytes of a deterministic pattern (differs by `seed`).
pub(crate) fn pattern(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// Panics unless the bytes are equal, naming the first difference (never printing MiBs).
#[track_caller]
fn assert_same(got: &[u8], want: &[u8], step: impl Display) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "conformance: {step}: {} bytes read, {} expected, first difference at byte {first}",
        got.len(),
        want.len()
    );
}

/// The whole object.
async fn read(store: &Arc<dyn ObjectStore>, path: &Path, step: impl Display) -> Bytes {
    let result = ok(store.get(path).await, format_args!("{step}: get {path}"));
    ok(result.bytes().await, format_args!("{step}: read {path}"))
}

/// Every key under `prefix`, sorted.
async fn keys(store: &Arc<dyn ObjectStore>, prefix: &Path, step: impl Display) -> Vec<Path> {
    let metas: Vec<_> = ok(
        store.list(Some(prefix)).try_collect().await,
        format_args!("{step}: list {prefix}"),
    );
    let mut keys: Vec<Path> = metas.into_iter().map(|m| m.location).collect();
    keys.sort();
    keys
}

/// Deletes everything under `prefix`.
async fn clean(store: &Arc<dyn ObjectStore>, prefix: &Path) {
    let paths = store.list(Some(prefix)).map_ok(|m| m.location).boxed();
    let deleted: Vec<_> = ok(
        store.delete_stream(paths).try_collect().await,
        format_args!("clean up {prefix}"),
    );
    drop(deleted);
}
