//! The stores `open` returns behave as object stores (put, get, range, list, delete).

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

async fn exercise(store: &dyn ObjectStore, root: &object_store::path::Path) {
    let a = root.clone().join("dir").join("a");
    store
        .put(&a, PutPayload::from_static(b"hello world"))
        .await
        .unwrap();
    assert_eq!(
        store.get(&a).await.unwrap().bytes().await.unwrap().as_ref(),
        b"hello world"
    );
    assert_eq!(store.get_range(&a, 6..11).await.unwrap().as_ref(), b"world");
    let listed: Vec<_> = store.list(Some(root)).try_collect().await.unwrap();
    assert_eq!(listed.len(), 1);
    store.delete(&a).await.unwrap();
    assert!(matches!(
        store.get(&a).await,
        Err(object_store::Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn file_and_memory_stores_work() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("not/yet/there");
    let (store, root) = backup_storage::open(&format!("file://{}", nested.display())).unwrap();
    exercise(store.as_ref(), &root).await;
    assert!(nested.is_dir());
    let (store, root) = backup_storage::open("memory://").unwrap();
    exercise(store.as_ref(), &root).await;
}
