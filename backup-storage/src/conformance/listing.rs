//! Listings: recursive, one level, with offset; bulk delete.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{fresh, keys, ok, pattern};

/// `list` by whole segments with sizes, `list_with_delimiter`, `list_with_offset`,
/// `delete_stream`.
pub async fn listing(store: &Arc<dyn ObjectStore>, root: &Path) {
    let base = fresh(root, "listing");
    let layout = [
        ("a/1", 10usize),
        ("a/2", 0),
        ("a/b/3", 40_000),
        ("ab/4", 4),
        ("c", 5),
    ];
    let mut all = Vec::new();
    for (i, (name, len)) in layout.iter().enumerate() {
        let path = Path::parse(format!("{base}/{name}"))
            .unwrap_or_else(|e| panic!("conformance: listing: bad key {name}: {e}"));
        ok(
            store.put(&path, pattern(*len, 30 + i as u64).into()).await,
            format_args!("put {name}"),
        );
        all.push(path);
    }
    let by_name = all.clone();
    let p = |name: &str| by_name[layout.iter().position(|(n, _)| *n == name).unwrap_or(0)].clone();
    all.sort();

    let metas: Vec<_> = ok(store.list(Some(&base)).try_collect().await, "list");
    let mut listed: Vec<(Path, u64)> = metas.into_iter().map(|m| (m.location, m.size)).collect();
    listed.sort();
    let mut expect: Vec<(Path, u64)> = layout.iter().map(|(n, len)| (p(n), *len as u64)).collect();
    expect.sort();
    assert_eq!(listed, expect, "conformance: list: every key with its size");

    let under_a = keys(store, &base.clone().join("a"), "list a").await;
    assert_eq!(
        under_a,
        vec![p("a/1"), p("a/2"), p("a/b/3")],
        "conformance: list matches whole segments (`a` does not list `ab/...`)"
    );
    let level = ok(
        store.list_with_delimiter(Some(&base)).await,
        "list_with_delimiter",
    );
    let mut prefixes = level.common_prefixes.clone();
    prefixes.sort();
    assert_eq!(
        prefixes,
        vec![base.clone().join("a"), base.clone().join("ab")],
        "conformance: list_with_delimiter: common prefixes"
    );
    let objects: Vec<(Path, u64)> = level
        .objects
        .iter()
        .map(|m| (m.location.clone(), m.size))
        .collect();
    assert_eq!(
        objects,
        vec![(p("c"), 5)],
        "conformance: list_with_delimiter: objects"
    );
    let level = ok(
        store
            .list_with_delimiter(Some(&base.clone().join("a")))
            .await,
        "list_with_delimiter a",
    );
    let mut objects: Vec<Path> = level.objects.iter().map(|m| m.location.clone()).collect();
    objects.sort();
    assert_eq!(
        objects,
        vec![p("a/1"), p("a/2")],
        "conformance: list_with_delimiter a: objects"
    );
    assert_eq!(
        level.common_prefixes,
        vec![base.clone().join("a").join("b")],
        "conformance: list_with_delimiter a: prefixes"
    );

    let offset = p("a/2");
    let mut after: Vec<Path> = ok(
        store
            .list_with_offset(Some(&base), &offset)
            .map_ok(|m| m.location)
            .try_collect()
            .await,
        "list_with_offset",
    );
    after.sort();
    let expect: Vec<Path> = all.iter().filter(|k| **k > offset).cloned().collect();
    assert_eq!(after, expect, "conformance: list_with_offset is exclusive");

    let paths = futures::stream::iter(all.clone()).map(Ok).boxed();
    let mut deleted: Vec<Path> = ok(
        store.delete_stream(paths).try_collect().await,
        "delete_stream",
    );
    deleted.sort();
    assert_eq!(deleted, all, "conformance: delete_stream yields each path");
    assert!(
        keys(store, &base, "after delete").await.is_empty(),
        "conformance: nothing listed after delete_stream"
    );
    let level = ok(
        store.list_with_delimiter(Some(&base)).await,
        "list_with_delimiter after delete",
    );
    assert!(
        level.objects.is_empty() && level.common_prefixes.is_empty(),
        "conformance: no prefix left behind after deleting everything: {:?}",
        level.common_prefixes
    );
}
