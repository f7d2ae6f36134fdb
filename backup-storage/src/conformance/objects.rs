//! Single objects: put/get/ranges, overwrite, empty objects, unicode keys, not-found,
//! copy and rename.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use super::{assert_same, clean, expect_not_found, fresh, keys, ok, pattern, read};

/// Put then get: whole object, stream, bounded/offset/suffix ranges, clamping, refusals,
/// `get_ranges`, `head`.
pub async fn objects(store: &Arc<dyn ObjectStore>, root: &Path) {
    let base = fresh(root, "objects");
    let path = base.clone().join("dir").join("object.bin");
    // Larger than one SFTP request (32 to 255 KiB) so ranges cross request boundaries.
    let len = 300_001u64;
    let data = pattern(len as usize, 1);
    ok(store.put(&path, data.clone().into()).await, "put");

    let got = ok(store.get(&path).await, "get");
    assert_eq!(got.meta.size, len, "conformance: get: meta.size");
    assert_eq!(got.meta.location, path, "conformance: get: meta.location");
    assert_eq!(got.range, 0..len, "conformance: get: range");
    let streamed: Vec<bytes::Bytes> = ok(got.into_stream().try_collect().await, "get stream");
    assert_same(&streamed.concat(), &data, "get stream");

    let head = ok(store.head(&path).await, "head");
    assert_eq!(head.size, len, "conformance: head: size");
    assert_eq!(head.location, path, "conformance: head: location");

    for range in [0..1, 10..20, 32_000..70_000, 200_000..len, (len - 1)..len] {
        let got = ok(
            store.get_range(&path, range.clone()).await,
            format_args!("get_range {range:?}"),
        );
        assert_same(
            &got,
            &data[range.start as usize..range.end as usize],
            format_args!("get_range {range:?}"),
        );
    }
    let cases = [
        (GetRange::Bounded(len - 10..len + 100), len - 10..len),
        (GetRange::Offset(len - 5), len - 5..len),
        (GetRange::Offset(0), 0..len),
        (GetRange::Suffix(7), len - 7..len),
        (GetRange::Suffix(len + 100), 0..len),
    ];
    for (range, expect) in cases {
        let step = format!("get_opts {range}");
        let got = ok(
            store
                .get_opts(&path, GetOptions::new().with_range(Some(range)))
                .await,
            &step,
        );
        assert_eq!(got.range, expect, "conformance: {step}: range");
        assert_eq!(
            got.meta.size, len,
            "conformance: {step}: meta.size is the object's"
        );
        let bytes = ok(got.bytes().await, &step);
        assert_same(
            &bytes,
            &data[expect.start as usize..expect.end as usize],
            &step,
        );
    }
    for range in [GetRange::Offset(len), GetRange::Bounded(len + 1..len + 10)] {
        let result = store
            .get_opts(&path, GetOptions::new().with_range(Some(range.clone())))
            .await;
        assert!(
            result.is_err(),
            "conformance: get_opts {range}: a range past the end must fail"
        );
    }
    let ranges = [0..1, 50..60, 31_000..99_000, len - 10..len];
    let got = ok(store.get_ranges(&path, &ranges).await, "get_ranges");
    assert_eq!(
        got.len(),
        ranges.len(),
        "conformance: get_ranges: one result per range"
    );
    for (r, bytes) in ranges.iter().zip(got) {
        assert_same(
            &bytes,
            &data[r.start as usize..r.end as usize],
            format_args!("get_ranges {r:?}"),
        );
    }
    clean(store, &base).await;
    expect_not_found(store.head(&path).await, "head after delete");
}

/// A plain put replaces what is there.
pub async fn overwrite(store: &Arc<dyn ObjectStore>, root: &Path) {
    let base = fresh(root, "overwrite");
    let path = base.clone().join("object");
    for (i, len) in [1000usize, 70_000, 10, 0, 5].into_iter().enumerate() {
        let data = pattern(len, 10 + i as u64);
        let opts = if i % 2 == 0 {
            PutMode::Overwrite.into()
        } else {
            Default::default()
        };
        ok(
            store.put_opts(&path, data.clone().into(), opts).await,
            format_args!("put #{i}"),
        );
        assert_same(
            &read(store, &path, "overwrite").await,
            &data,
            format_args!("get after put #{i}"),
        );
        let head = ok(store.head(&path).await, "head");
        assert_eq!(
            head.size, len as u64,
            "conformance: overwrite: head size after put #{i}"
        );
    }
    let listed = keys(store, &base, "overwrite").await;
    assert_eq!(
        listed,
        vec![path.clone()],
        "conformance: overwrite: one object listed"
    );
    clean(store, &base).await;
}

/// Zero-byte objects.
pub async fn empty_objects(store: &Arc<dyn ObjectStore>, root: &Path) {
    let base = fresh(root, "empty");
    let plain = base.clone().join("plain");
    let created = base.clone().join("created");
    ok(store.put(&plain, PutPayload::default()).await, "put empty");
    ok(
        store
            .put_opts(&created, PutPayload::default(), PutMode::Create.into())
            .await,
        "put empty with PutMode::Create",
    );
    for path in [&plain, &created] {
        assert_eq!(
            ok(store.head(path).await, "head empty").size,
            0,
            "conformance: empty: head size"
        );
        let got = ok(store.get(path).await, "get empty");
        assert_eq!(got.range, 0..0, "conformance: empty: range");
        assert!(
            ok(got.bytes().await, "read empty").is_empty(),
            "conformance: empty: bytes"
        );
    }
    let metas: Vec<_> = ok(store.list(Some(&base)).try_collect().await, "list empties");
    assert_eq!(metas.len(), 2, "conformance: empty: both listed");
    assert!(
        metas.iter().all(|m| m.size == 0),
        "conformance: empty: listed with size 0"
    );
    clean(store, &base).await;
}

/// Keys beyond ASCII round-trip unchanged.
pub async fn unicode_keys(store: &Arc<dyn ObjectStore>, root: &Path) {
    let base = fresh(root, "unicode");
    let names = [
        "ünïcödé/naïve café.txt",
        "файлы/резервная копия",
        "数据/备份/快照",
        "emoji/🙀/😀.bin",
        "spaces and (brackets)/a b+c=d",
        "percent/%41%42 literally",
    ];
    let mut paths = Vec::new();
    for name in names {
        let path = key(&base, name);
        ok(
            store
                .put(&path, PutPayload::from(name.as_bytes().to_vec()))
                .await,
            format_args!("put {name:?}"),
        );
        paths.push(path);
    }
    for (path, name) in paths.iter().zip(names) {
        assert_same(
            &read(store, path, "unicode").await,
            name.as_bytes(),
            format_args!("get {name:?}"),
        );
        assert_eq!(
            ok(store.head(path).await, "head").location,
            *path,
            "conformance: unicode: head location"
        );
    }
    let mut want = paths.clone();
    want.sort();
    assert_eq!(
        keys(store, &base, "unicode").await,
        want,
        "conformance: unicode: list gives the keys back"
    );
    let level = ok(
        store.list_with_delimiter(Some(&base)).await,
        "list_with_delimiter unicode",
    );
    let mut prefixes = level.common_prefixes.clone();
    prefixes.sort();
    let mut expect: Vec<Path> = names
        .iter()
        .map(|n| key(&base, n.split('/').next().unwrap_or(n)))
        .collect();
    expect.sort();
    assert_eq!(prefixes, expect, "conformance: unicode: common prefixes");
    let cyrillic = key(&base, "файлы");
    let level = ok(
        store.list_with_delimiter(Some(&cyrillic)).await,
        "list_with_delimiter Cyrillic",
    );
    assert_eq!(
        level.objects.len(),
        1,
        "conformance: unicode: one object under a Cyrillic prefix"
    );
    assert_eq!(
        level.objects[0].location, paths[1],
        "conformance: unicode: its key"
    );
    clean(store, &base).await;
}

/// `base/name` taken literally (no percent-encoding of the name).
fn key(base: &Path, name: &str) -> Path {
    Path::parse(format!("{base}/{name}"))
        .unwrap_or_else(|e| panic!("conformance: bad test key {name:?}: {e}"))
}

/// Missing keys are `NotFound`.
pub async fn not_found(store: &Arc<dyn ObjectStore>, root: &Path) {
    let base = fresh(root, "not-found");
    let missing = base.clone().join("missing");
    expect_not_found(store.get(&missing).await, "get of a missing key");
    expect_not_found(store.head(&missing).await, "head of a missing key");
    expect_not_found(
        store.get_range(&missing, 0..10).await,
        "get_range of a missing key",
    );
    expect_not_found(
        store.copy(&missing, &base.clone().join("copy")).await,
        "copy of a missing key",
    );
    // A key that is only a prefix (a directory on file-based stores) is no object.
    let deep = base.clone().join("dir").join("object");
    ok(store.put(&deep, "x".into()).await, "put");
    let dir = base.clone().join("dir");
    expect_not_found(store.get(&dir).await, "get of a prefix");
    expect_not_found(store.head(&dir).await, "head of a prefix");
    assert!(
        keys(store, &missing, "not found").await.is_empty(),
        "conformance: list of a missing prefix is empty"
    );
    let level = ok(
        store.list_with_delimiter(Some(&missing)).await,
        "list_with_delimiter of a missing prefix",
    );
    assert!(
        level.objects.is_empty() && level.common_prefixes.is_empty(),
        "conformance: list_with_delimiter of a missing prefix is empty"
    );
    match store.delete(&missing).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => panic!("conformance: delete of a missing key: expected Ok or NotFound, got: {e}"),
    }
    clean(store, &base).await;
}

/// Copy and rename, plain and if-not-exists.
pub async fn copy_rename(store: &Arc<dyn ObjectStore>, root: &Path) {
    let base = fresh(root, "copy");
    let (a, b, c) = (
        base.clone().join("a"),
        base.clone().join("sub").join("b"),
        base.clone().join("c"),
    );
    let first = pattern(100_000, 20);
    let second = pattern(5_000, 21);
    ok(store.put(&a, first.clone().into()).await, "put a");
    ok(store.copy(&a, &b).await, "copy a to b");
    assert_same(&read(store, &b, "copy").await, &first, "b after copy");
    ok(store.put(&a, second.clone().into()).await, "put a again");
    ok(store.copy(&a, &b).await, "copy a over b");
    assert_same(&read(store, &b, "copy").await, &second, "b after copy over");
    assert_same(&read(store, &a, "copy").await, &second, "a after copy");
    ok(store.rename(&b, &c).await, "rename b to c");
    expect_not_found(store.head(&b).await, "head of a renamed key");
    assert_same(&read(store, &c, "rename").await, &second, "c after rename");
    ok(
        store.put(&a, first.clone().into()).await,
        "put a a third time",
    );
    match store.copy_if_not_exists(&a, &c).await {
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::NotSupported { .. })
        | Err(object_store::Error::NotImplemented { .. }) => {}
        Err(e) => {
            panic!("conformance: copy_if_not_exists onto a key: expected AlreadyExists, got: {e}")
        }
        Ok(()) => panic!("conformance: copy_if_not_exists onto a key succeeded"),
    }
    assert_same(
        &read(store, &c, "copy_if_not_exists").await,
        &second,
        "c after a refused copy",
    );
    match store.rename_if_not_exists(&a, &c).await {
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::NotSupported { .. })
        | Err(object_store::Error::NotImplemented { .. }) => {}
        Err(e) => {
            panic!("conformance: rename_if_not_exists onto a key: expected AlreadyExists, got: {e}")
        }
        Ok(()) => panic!("conformance: rename_if_not_exists onto a key succeeded"),
    }
    assert_same(
        &read(store, &a, "rename_if_not_exists").await,
        &first,
        "a after a refused rename",
    );
    let d = base.clone().join("d");
    match store.copy_if_not_exists(&a, &d).await {
        Ok(()) => assert_same(&read(store, &d, "copy_if_not_exists").await, &first, "d"),
        Err(object_store::Error::NotSupported { .. })
        | Err(object_store::Error::NotImplemented { .. }) => {}
        Err(e) => panic!("conformance: copy_if_not_exists to a free key: {e}"),
    }
    clean(store, &base).await;
}
