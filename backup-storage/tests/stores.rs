//! Every store `open` returns passes the conformance suite (memory and local disk always;
//! S3 and SFTP against the real servers `scripts/test.sh` starts); the wrappers keep the
//! semantics and do their job; SFTP refuses wrong host keys and rejected credentials.

use std::sync::Arc;
use std::time::Duration;

use backup_storage::object_store::memory::InMemory;
use backup_storage::object_store::path::Path;
use backup_storage::object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, UpdateVersion,
};
use backup_storage::{
    CountingStore, Error, FaultPlan, FaultStore, RequestKind, RetryPolicy, RetryStore, SftpBuilder,
    conformance,
};
use futures::TryStreamExt;

/// A test-only value of a variable `scripts/test.sh` exports; without it the test fails,
/// naming the script (it runs only with `--include-ignored`).
fn server_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run ./scripts/test.sh, which starts the test servers and sets it"
        )
    })
}

fn random() -> String {
    format!("{:016x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// An `s3://` URL for the test bucket under a fresh prefix.
fn s3_url() -> String {
    let endpoint = server_env("BACKUP_TEST_S3_ENDPOINT");
    let bucket = server_env("BACKUP_TEST_S3_BUCKET");
    format!(
        "s3://{bucket}/storage-tests-{}?endpoint={endpoint}&allow_http=true",
        random()
    )
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 6,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        multiplier: 2.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_conforms() {
    let (store, root) = backup_storage::open("memory://").unwrap();
    conformance::run(&store, &root).await;
}

/// The engine marks its pack puts [`DeferredFlush`](backup_core::ports::DeferredFlush) and
/// the local store takes them so; once the index is written, nothing is left unpublished
/// and the pack is readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_packs_wait_for_the_index_barrier() {
    use backup_core::model::AccountId;
    use backup_core::ports::{ContentSealer, PlainCrypto, ServerKeys};
    use backup_core::repo::{BlobKind, Compression, PackWriter, RepoConfig, Repository};

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(backup_storage::LocalStore::new(dir.path()).unwrap());
    let repo = Repository::init(store.clone(), Path::default(), RepoConfig::default())
        .await
        .unwrap();
    let crypto = Arc::new(PlainCrypto::new(ServerKeys::new([1; 32], [2; 32], 3)));
    let account = repo.account(AccountId::new(), crypto.clone(), Some(crypto.clone()));
    let data = b"a blob".to_vec();
    let id = crypto.server_keys().chunk_id(&data);
    let mut writer = PackWriter::new(BlobKind::Data, crypto.begin().unwrap(), 100);
    writer
        .add(id, Compression::None, data.len(), &data)
        .unwrap();
    let pack = writer.finish(crypto.server_keys()).unwrap();

    let indexed = account.put_pack(pack).await.unwrap();
    assert_eq!(store.deferred_puts(), 1, "the pack put was not deferred");
    account
        .put_index(std::slice::from_ref(&indexed))
        .await
        .unwrap();
    assert_eq!(store.pending(), 0, "the index put did not publish the pack");
    let locator = account.load_locator().await.unwrap();
    assert!(locator.contains(&id));
    account.get_pack(&indexed.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("not/yet/there");
    let (store, root) = backup_storage::open(&format!("file://{}", nested.display())).unwrap();
    assert!(nested.is_dir());
    conformance::run(&store, &root).await;
    // No files are left (LocalFileSystem may leave an empty directory after a rename).
    let files: Vec<_> = walk(&nested).into_iter().filter(|p| p.is_file()).collect();
    assert!(files.is_empty(), "nothing left behind: {files:?}");
}

/// Every file and directory below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(entry.path());
        if entry.path().is_dir() {
            out.extend(walk(&entry.path()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs S3: run scripts/test.sh"]
async fn s3_conforms() {
    let (store, root) = backup_storage::open(&s3_url()).unwrap();
    conformance::run(&store, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs SFTP: run scripts/test.sh"]
async fn sftp_conforms() {
    let (store, root) = backup_storage::open(&server_env("BACKUP_TEST_SFTP_URL")).unwrap();
    conformance::run(&store, &root).await;
}

/// What a store opened by `open` does with the puts a lease needs: `Create` is exclusive
/// (`AlreadyExists`, the object unchanged), `Update` compares the ETag where the store
/// supports it (`Precondition` when stale or missing) and is `NotImplemented` where it
/// does not; deleting a missing object is `Ok`, or `NotFound` where `missing_delete_fails`.
async fn lease_semantics(
    store: &Arc<dyn ObjectStore>,
    root: &Path,
    update: bool,
    missing_delete_fails: bool,
) {
    use backup_storage::object_store::Error as StoreError;
    let key = Path::from_iter(
        root.parts()
            .chain(Path::from(format!("lease-{}/account/lease", random())).parts()),
    );
    let create = || PutOptions::from(PutMode::Create);
    store.put_opts(&key, "mine".into(), create()).await.unwrap();
    let taken = store.put_opts(&key, "theirs".into(), create()).await;
    assert!(
        matches!(taken, Err(StoreError::AlreadyExists { .. })),
        "{taken:?}"
    );
    let held = store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(held.as_ref(), b"mine");

    let current = store.head(&key).await.unwrap();
    let version = UpdateVersion {
        e_tag: current.e_tag.clone(),
        version: current.version.clone(),
    };
    let renewed = store
        .put_opts(
            &key,
            "renewed".into(),
            PutMode::Update(version.clone()).into(),
        )
        .await;
    if update {
        renewed.unwrap();
        let stale = store
            .put_opts(
                &key,
                "stale".into(),
                PutMode::Update(version.clone()).into(),
            )
            .await;
        assert!(
            matches!(stale, Err(StoreError::Precondition { .. })),
            "{stale:?}"
        );
        let missing = key.clone().join("missing");
        let absent = store
            .put_opts(&missing, "x".into(), PutMode::Update(version).into())
            .await;
        assert!(
            matches!(absent, Err(StoreError::Precondition { .. })),
            "{absent:?}"
        );
    } else {
        assert!(
            matches!(renewed, Err(StoreError::NotImplemented { .. })),
            "{renewed:?}"
        );
    }

    store.delete(&key).await.unwrap();
    match store.delete(&key).await {
        Ok(()) => assert!(!missing_delete_fails, "deleting a missing object succeeded"),
        Err(StoreError::NotFound { .. }) => {
            assert!(missing_delete_fails, "deleting a missing object failed")
        }
        Err(e) => panic!("deleting a missing object: {e}"),
    }
    // Released, the lease can be taken again.
    store.put_opts(&key, "next".into(), create()).await.unwrap();
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn memory_lease_semantics() {
    let (store, root) = backup_storage::open("memory://").unwrap();
    lease_semantics(&store, &root, true, false).await;
}

#[tokio::test]
async fn local_lease_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let (store, root) = backup_storage::open(&format!("file://{}", dir.path().display())).unwrap();
    lease_semantics(&store, &root, false, true).await;
}

#[tokio::test]
#[ignore = "needs S3: run scripts/test.sh"]
async fn s3_lease_semantics() {
    let (store, root) = backup_storage::open(&s3_url()).unwrap();
    lease_semantics(&store, &root, true, false).await;
}

#[tokio::test]
#[ignore = "needs SFTP: run scripts/test.sh"]
async fn sftp_lease_semantics() {
    let (store, root) = backup_storage::open(&server_env("BACKUP_TEST_SFTP_URL")).unwrap();
    lease_semantics(&store, &root, false, false).await;
}

/// The wrappers stacked on a flaky store still pass the whole suite: retries hide the
/// injected faults, counting changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrapped_flaky_store_conforms() {
    let plan = FaultPlan::Fraction {
        ratio: 0.1,
        seed: 42,
    };
    let faults = FaultStore::new(InMemory::new(), plan);
    let retry = RetryStore::new(faults).with_policy(fast_retries());
    let counting = Arc::new(CountingStore::new(retry));
    let store: Arc<dyn ObjectStore> = counting.clone();
    conformance::run(&store, &Path::from("wrapped")).await;
    let retry = counting.inner();
    let injected = retry.inner().injected();
    assert!(injected > 10, "faults were injected: {injected}");
    assert_eq!(retry.retries(), injected, "every fault was retried");
    let counts = counting.counts();
    assert!(counts.get(RequestKind::Put) > 20, "{counts}");
}

#[tokio::test]
async fn retry_retries_transient_failures_only() {
    let faults = FaultStore::new(InMemory::new(), FaultPlan::Nth(1)).only([RequestKind::Put]);
    let store = RetryStore::new(faults).with_policy(fast_retries());
    let a = Path::from("a");
    store.put(&a, "1".into()).await.unwrap();
    assert_eq!(store.retries(), 1);
    assert_eq!(store.inner().calls(), 2);
    // A definite answer is not retried.
    let missing = store.get(&Path::from("missing")).await.unwrap_err();
    assert!(matches!(
        missing,
        backup_storage::object_store::Error::NotFound { .. }
    ));
    assert_eq!(store.retries(), 1);

    // A store that stays down: the policy's retries, then the transient error itself.
    let faults = FaultStore::new(InMemory::new(), FaultPlan::From(1));
    let store = RetryStore::new(faults).with_policy(RetryPolicy {
        max_retries: 2,
        ..fast_retries()
    });
    let err = store.head(&a).await.unwrap_err();
    assert!(backup_storage::is_transient(&err), "{err}");
    assert_eq!(store.inner().calls(), 3);
    match &err {
        backup_storage::object_store::Error::Generic { source, .. } => assert!(matches!(
            source.downcast_ref::<Error>(),
            Some(Error::InjectedFault {
                call: 3,
                kind: RequestKind::Head
            })
        )),
        other => panic!("{other}"),
    }
}

/// A response lost after the write happened: the retried exclusive create reports
/// `AlreadyExists` (the documented, safe side), a plain put just succeeds.
#[tokio::test]
async fn lost_responses_keep_the_write() {
    let faults = FaultStore::new(InMemory::new(), FaultPlan::Nth(1))
        .only([RequestKind::Put])
        .with_lost_responses(true);
    let store = RetryStore::new(faults).with_policy(fast_retries());
    let key = Path::from("lock");
    let err = store
        .put_opts(&key, "mine".into(), PutMode::Create.into())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            backup_storage::object_store::Error::AlreadyExists { .. }
        ),
        "{err}"
    );
    let stored = store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(stored.as_ref(), b"mine");
}

#[tokio::test]
async fn counting_counts_requests_by_kind() {
    let counting = Arc::new(CountingStore::new(InMemory::new()));
    let store: Arc<dyn ObjectStore> = counting.clone();
    let (a, b) = (Path::from("d/a"), Path::from("d/b"));
    store.put(&a, vec![0u8; 1000].into()).await.unwrap();
    store.get(&a).await.unwrap().bytes().await.unwrap();
    store.get_range(&a, 0..10).await.unwrap();
    store.head(&a).await.unwrap();
    store.copy(&a, &b).await.unwrap();
    let _: Vec<_> = store
        .list(Some(&Path::from("d")))
        .try_collect()
        .await
        .unwrap();
    store.list_with_delimiter(None).await.unwrap();
    let mut upload = store.put_multipart(&Path::from("m")).await.unwrap();
    upload.put_part(vec![1u8; 300].into()).await.unwrap();
    upload.put_part(vec![2u8; 200].into()).await.unwrap();
    upload.complete().await.unwrap();
    store.delete(&a).await.unwrap();
    assert!(store.get(&a).await.is_err());

    let c = counting.counts();
    let expect = [
        (RequestKind::Put, 1),
        (RequestKind::Get, 3),
        (RequestKind::Head, 1),
        (RequestKind::Copy, 1),
        (RequestKind::List, 1),
        (RequestKind::ListWithDelimiter, 1),
        (RequestKind::PutMultipart, 1),
        (RequestKind::PutPart, 2),
        (RequestKind::CompleteMultipart, 1),
        (RequestKind::Delete, 1),
    ];
    for (kind, n) in expect {
        assert_eq!(c.get(kind), n, "{kind}: {c}");
    }
    assert_eq!(c.failed.get(&RequestKind::Get), Some(&1), "{c}");
    assert_eq!(c.bytes_uploaded, 1500);
    assert_eq!(c.bytes_downloaded, 1010);
    assert_eq!(c.objects_listed, 2 + 1, "d/a, d/b, then the prefix d");
    assert_eq!(c.s3_class_a(), 1 + 1 + 1 + 1 + 1 + 2 + 1);
    assert_eq!(c.s3_class_b(), 4);
    let before = c.clone();
    store.head(&b).await.unwrap();
    let diff = counting.counts().since(&before);
    assert_eq!(diff.total(), 1);
    assert!(diff.to_string().contains("head=1"), "{diff}");
}

/// An SFTP store with the test server's address and user, and the given key and
/// known_hosts files.
fn sftp_store(key: &str, known_hosts: &str) -> backup_storage::SftpStore {
    let url = server_env("BACKUP_TEST_SFTP_URL");
    let base = url.split('?').next().unwrap_or(&url).to_owned();
    SftpBuilder::from_url(&format!(
        "{base}?key={key}&known_hosts={known_hosts}&timeout=20"
    ))
    .unwrap()
    .build()
    .unwrap()
}

/// The crate error behind a store error.
fn cause(err: &backup_storage::object_store::Error) -> &Error {
    match err {
        backup_storage::object_store::Error::Generic { source, .. } => source
            .downcast_ref::<Error>()
            .unwrap_or_else(|| panic!("not a backup_storage error: {err}")),
        other => panic!("expected a Generic error, got: {other}"),
    }
}

#[tokio::test]
#[ignore = "needs SFTP: run scripts/test.sh"]
async fn sftp_refuses_wrong_and_unknown_host_keys() {
    let key = server_env("BACKUP_TEST_SFTP_KEY");
    let wrong = server_env("BACKUP_TEST_SFTP_WRONG_KNOWN_HOSTS");
    let store = sftp_store(&key, &wrong);
    let err = store
        .put(&Path::from("never"), "x".into())
        .await
        .unwrap_err();
    match cause(&err) {
        Error::HostKeyRejected { reason, .. } => {
            assert!(reason.contains("differs from line 1"), "{reason}")
        }
        other => panic!("expected HostKeyRejected, got: {other}"),
    }
    assert!(
        !backup_storage::is_transient(&err),
        "a refused host key is not retried"
    );

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("known_hosts");
    std::fs::write(&empty, "# no hosts\n").unwrap();
    let store = sftp_store(&key, &empty.display().to_string());
    let err = store.head(&Path::from("x")).await.unwrap_err();
    assert!(
        matches!(cause(&err), Error::HostKeyRejected { reason, .. } if reason.contains("no ssh-ed25519 key")),
        "{err}"
    );

    let missing = dir.path().join("absent");
    let store = sftp_store(&key, &missing.display().to_string());
    let err = store.head(&Path::from("x")).await.unwrap_err();
    assert!(
        matches!(cause(&err), Error::HostKeyRejected { .. }),
        "{err}"
    );
    assert_eq!(store.open_connections(), 0);
    assert!(
        !std::path::Path::new(&server_env("BACKUP_TEST_SFTP_ROOT"))
            .join("never")
            .exists()
    );
}

#[tokio::test]
#[ignore = "needs SFTP: run scripts/test.sh"]
async fn sftp_rejects_a_key_the_server_does_not_know() {
    let store = sftp_store(
        &server_env("BACKUP_TEST_SFTP_UNAUTHORIZED_KEY"),
        &server_env("BACKUP_TEST_SFTP_KNOWN_HOSTS"),
    );
    let err = store.head(&Path::from("x")).await.unwrap_err();
    match cause(&err) {
        Error::AuthRejected { key_file, .. } => assert!(key_file.ends_with("unauthorized_key")),
        other => panic!("expected AuthRejected, got: {other}"),
    }
    let store = sftp_store(
        "/nonexistent/key",
        &server_env("BACKUP_TEST_SFTP_KNOWN_HOSTS"),
    );
    let err = store.head(&Path::from("x")).await.unwrap_err();
    assert!(matches!(cause(&err), Error::Key { .. }), "{err}");
}

/// Many concurrent requests share a small pool; nothing is left on the server's disk
/// (no temporary files, no empty directories) after everything is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs SFTP: run scripts/test.sh"]
async fn sftp_pool_is_small_and_leaves_nothing_behind() {
    let store = sftp_store(
        &server_env("BACKUP_TEST_SFTP_KEY"),
        &server_env("BACKUP_TEST_SFTP_KNOWN_HOSTS"),
    );
    let prefix = format!("pool-{}", random());
    let tasks: Vec<_> = (0..48)
        .map(|i| {
            let store = store.clone();
            let key = Path::from(format!("{prefix}/{:02}/{i}", i % 7));
            tokio::spawn(async move {
                store
                    .put(&key, vec![i as u8; 100_000].into())
                    .await
                    .unwrap();
                let got = store.get(&key).await.unwrap().bytes().await.unwrap();
                assert_eq!(got.len(), 100_000);
                store.delete(&key).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let open = store.open_connections();
    assert!((1..=4).contains(&open), "{open} connections");
    let root = std::path::Path::new(&server_env("BACKUP_TEST_SFTP_ROOT")).join(&prefix);
    assert!(
        !root.exists(),
        "{} should have been removed when emptied",
        root.display()
    );
}

/// Puts below directories that concurrent deletes keep emptying (and so pruning, shared
/// parents included) all succeed: creating the directories again is retried, not reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs SFTP: run scripts/test.sh"]
async fn sftp_puts_survive_concurrent_pruning() {
    let store = sftp_store(
        &server_env("BACKUP_TEST_SFTP_KEY"),
        &server_env("BACKUP_TEST_SFTP_KNOWN_HOSTS"),
    );
    let prefix = format!("prune-{}", random());
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let store = store.clone();
            let prefix = prefix.clone();
            tokio::spawn(async move {
                for round in 0..120 {
                    let key = Path::from(format!("{prefix}/a/{}/{task}-{round}", task % 2));
                    store.put(&key, vec![task as u8; 64].into()).await?;
                    store.delete(&key).await?;
                }
                Ok::<_, backup_storage::object_store::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let root = std::path::Path::new(&server_env("BACKUP_TEST_SFTP_ROOT")).join(&prefix);
    assert!(!root.exists(), "{} should be gone", root.display());
}
