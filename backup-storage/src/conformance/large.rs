//! Large objects: single put and multipart upload.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{assert_same, clean, expect_not_found, fresh, keys, ok, pattern};

/// The size [`run`](super::run) uses: 64 MiB.
pub const LARGE_OBJECT: usize = 64 * 1024 * 1024;

/// A put of `size` bytes and a 3-part multipart upload of `size` + 1 MiB + 3 bytes read
/// back whole (streamed) and by range; an aborted upload leaves no object.
pub async fn large_objects(store: &Arc<dyn ObjectStore>, root: &Path, size: usize) {
    let base = fresh(root, "large");
    let single = base.clone().join("single.bin");
    let data = pattern(size, 40);
    ok(
        store.put(&single, data.clone().into()).await,
        format_args!("put {size} bytes"),
    );
    assert_eq!(
        ok(store.head(&single).await, "head").size,
        size as u64,
        "conformance: large: head size"
    );
    check_read(store, &single, &data).await;
    drop(data);

    // Parts of any size but the last must be at least 5 MiB on S3.
    let half = (size / 2).max(5 * 1024 * 1024);
    let parts = [
        pattern(half, 41),
        pattern(half, 42),
        pattern(1024 * 1024 + 3, 43),
    ];
    let multi = base.clone().join("multipart.bin");
    let mut upload = ok(store.put_multipart(&multi).await, "put_multipart");
    let uploads: Vec<_> = parts
        .iter()
        .map(|p| upload.put_part(PutPayload::from(p.clone())))
        .collect();
    ok(futures::future::try_join_all(uploads).await, "put_part");
    ok(upload.complete().await, "complete");
    let whole = parts.concat();
    assert_eq!(
        ok(store.head(&multi).await, "head multipart").size,
        whole.len() as u64,
        "conformance: large: multipart size"
    );
    check_read(store, &multi, &whole).await;
    drop(whole);

    let aborted = base.clone().join("aborted.bin");
    let mut upload = ok(
        store.put_multipart(&aborted).await,
        "put_multipart to abort",
    );
    ok(
        upload.put_part(PutPayload::from(parts[0].clone())).await,
        "put_part before abort",
    );
    ok(upload.abort().await, "abort");
    expect_not_found(store.head(&aborted).await, "head of an aborted upload");
    assert_eq!(
        keys(store, &base, "large").await,
        vec![multi.clone(), single.clone()],
        "conformance: large: an aborted upload lists nothing"
    );
    clean(store, &base).await;
}

/// Reads `path` streamed and by a range in the middle.
async fn check_read(store: &Arc<dyn ObjectStore>, path: &Path, data: &[u8]) {
    let result = ok(store.get(path).await, "get large");
    let mut got = Vec::with_capacity(data.len());
    let mut stream = result.into_stream();
    while let Some(chunk) = ok(stream.try_next().await, "read large") {
        got.extend_from_slice(&chunk);
    }
    assert_same(&got, data, format_args!("{path} read whole"));
    let mid = (data.len() / 2) as u64;
    let range = mid.saturating_sub(100_000)..(mid + 1_000_003).min(data.len() as u64);
    let part = ok(
        store.get_range(path, range.clone()).await,
        "get_range large",
    );
    assert_same(
        &part,
        &data[range.start as usize..range.end as usize],
        format_args!("{path} {range:?}"),
    );
}
