//! The local store's own tests (the conformance suite runs in `tests/stores.rs`).

use object_store::{ObjectStoreExt, PutMode};

use super::*;

fn deferred() -> PutOptions {
    let mut opts = PutOptions::default();
    opts.extensions.insert(DeferredFlush);
    opts
}

async fn put_deferred(store: &LocalStore, path: &str, body: &'static [u8]) {
    store
        .put_opts(&Path::from(path), PutPayload::from_static(body), deferred())
        .await
        .unwrap();
}

#[tokio::test]
async fn deferred_puts_are_published_by_the_next_unmarked_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    put_deferred(&store, "a/packs/00/p1", b"one").await;
    put_deferred(&store, "a/packs/01/p2", b"two").await;
    assert_eq!(store.deferred_puts(), 2);

    store
        .put(&Path::from("a/index/i1"), PutPayload::from_static(b"idx"))
        .await
        .unwrap();
    assert_eq!(store.pending(), 0);
    let one = store.get(&Path::from("a/packs/00/p1")).await.unwrap();
    assert_eq!(one.bytes().await.unwrap().as_ref(), b"one");
    let mut names: Vec<String> = store
        .list(None)
        .map(|m| m.unwrap().location.to_string())
        .collect()
        .await;
    names.sort();
    assert_eq!(names, ["a/index/i1", "a/packs/00/p1", "a/packs/01/p2"]);
    // No staging file is left behind.
    let staged: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains('#'))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
}

#[tokio::test]
async fn deletes_copies_renames_and_flush_are_barriers() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();

    put_deferred(&store, "p/1", b"1").await;
    store.delete(&Path::from("p/1")).await.unwrap();
    assert_eq!(store.pending(), 0);
    // Published first, then deleted: the delete is not undone by a later barrier.
    assert!(!dir.path().join("p/1").exists());

    put_deferred(&store, "p/2", b"2").await;
    store
        .copy(&Path::from("p/2"), &Path::from("p/3"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(dir.path().join("p/3")).unwrap(), b"2");

    put_deferred(&store, "p/4", b"4").await;
    store
        .rename(&Path::from("p/4"), &Path::from("p/5"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(dir.path().join("p/5")).unwrap(), b"4");

    put_deferred(&store, "p/6", b"6").await;
    let upload = store.put_multipart(&Path::from("m")).await.unwrap();
    assert_eq!(store.pending(), 0);
    drop(upload);

    put_deferred(&store, "p/7", b"7").await;
    store.flush().await.unwrap();
    assert_eq!(std::fs::read(dir.path().join("p/7")).unwrap(), b"7");
    assert_eq!(store.pending(), 0);
}

#[tokio::test]
async fn a_deferred_put_replaces_and_conditional_puts_are_not_deferred() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    put_deferred(&store, "x", b"old").await;
    put_deferred(&store, "x", b"new").await;
    store.flush().await.unwrap();
    assert_eq!(std::fs::read(dir.path().join("x")).unwrap(), b"new");

    let mut create = deferred();
    create.mode = PutMode::Create;
    let err = store
        .put_opts(&Path::from("x"), PutPayload::from_static(b"again"), create)
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::AlreadyExists { .. }),
        "{err}"
    );
    assert_eq!(store.pending(), 0);
}

#[test]
fn a_file_that_cannot_be_published_is_an_error_and_never_appears() {
    // Outside a runtime nothing flushes in the background, so the staging file is
    // still there to take away.
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    futures::executor::block_on(async {
        put_deferred(&store, "d/ok", b"ok").await;
        put_deferred(&store, "d/gone", b"gone").await;
        // The staging file vanishes before the barrier (as if removed by hand).
        std::fs::remove_file(dir.path().join("d/gone#1")).unwrap();
        let err = store.flush().await.unwrap_err();
        assert!(err.to_string().contains("gone#"), "{err}");
        assert_eq!(std::fs::read(dir.path().join("d/ok")).unwrap(), b"ok");
        assert!(!dir.path().join("d/gone").exists());
        assert_eq!(store.pending(), 0);
        // Every later barrier fails too: a write made after it cannot rely on d/gone.
        let again = store.flush().await.unwrap_err();
        assert!(again.to_string().contains("gone#"), "{again}");
        store
            .put(&Path::from("index"), PutPayload::from_static(b"i"))
            .await
            .unwrap_err();
        assert!(!dir.path().join("index").exists());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_background_publish_fails_every_later_barrier() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        // A directory where the object should go: the rename into place fails, whether
        // the background task or the barrier does it.
        std::fs::create_dir_all(dir.path().join("x/inside")).unwrap();
        put_deferred(&store, "x", b"x").await;
        if round % 2 == 1 {
            // Let the background task get there first.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let err = store
            .put(&Path::from("index"), PutPayload::from_static(b"i"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("x#1"), "round {round}: {err}");
        assert!(!dir.path().join("index").exists(), "round {round}");
        assert!(!dir.path().join("x#1").exists(), "round {round}");
        // And to every later barrier.
        assert!(store.flush().await.is_err(), "round {round}");
    }
}

#[tokio::test]
async fn deferred_puts_left_when_the_store_is_dropped_are_published() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    put_deferred(&store, "packs/aa/left", b"left").await;
    drop(store);
    // The background flush may still hold the last handle: the file appears once it
    // ends (bounded wait, not a timing assertion).
    let dest = dir.path().join("packs/aa/left");
    for _ in 0..500 {
        if dest.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(std::fs::read(&dest).unwrap(), b"left");
    assert!(!dir.path().join("packs/aa/left#1").exists());
}

#[tokio::test]
async fn put_modes_copies_onto_themselves_and_missing_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    let key = Path::from("locks/a/lease");
    let put = store
        .put_opts(
            &key,
            PutPayload::from_static(b"mine"),
            PutMode::Create.into(),
        )
        .await
        .unwrap();
    // The ETag a put reports is the one a head reports.
    assert_eq!(put.e_tag, store.head(&key).await.unwrap().e_tag);
    let update = object_store::UpdateVersion {
        e_tag: put.e_tag,
        version: None,
    };
    let err = store
        .put_opts(
            &key,
            PutPayload::from_static(b"x"),
            PutMode::Update(update).into(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::NotImplemented { .. }),
        "{err}"
    );
    // A copy onto itself changes nothing and leaves no staging file.
    store.copy(&key, &key).await.unwrap();
    let missing = Path::from("locks/a/missing");
    let err = store.copy(&missing, &missing).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
    assert_eq!(walk(dir.path()), [dir.path().join("locks/a/lease")]);
    // Deleting a missing object is NotFound here (object_store's LocalFileSystem).
    store.delete(&key).await.unwrap();
    let err = store.delete(&key).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
}

#[test]
fn works_outside_a_tokio_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    futures::executor::block_on(async {
        put_deferred(&store, "p", b"p").await;
        assert_eq!(store.pending(), 1);
        store.flush().await.unwrap();
    });
    assert_eq!(std::fs::read(dir.path().join("p")).unwrap(), b"p");
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
