//! [`RetryStore`]: retries transient failures of any store with exponential backoff.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

use crate::error::is_transient;

/// Objects deleted at once by [`RetryStore`]'s `delete_stream`.
const DELETE_CONCURRENCY: usize = 8;

/// How often and how patiently [`RetryStore`] retries.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying).
    pub max_retries: u32,
    /// The wait before the first retry.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// The factor the wait grows by after each retry.
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    /// 4 retries, waiting about 0.1 s, 0.2 s, 0.4 s, 0.8 s (at most 5 s), with jitter.
    fn default() -> Self {
        Self {
            max_retries: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (from 1): exponential, capped, and jittered
    /// down to half so that many clients do not retry in step.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(62) as i32;
        let base = self.initial_backoff.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        let capped = base.min(self.max_backoff.as_secs_f64()).max(0.0);
        let jitter = 0.5 + rand::random::<f64>() * 0.5;
        Duration::from_secs_f64(capped * jitter)
    }
}

/// Wraps a store and retries what fails transiently ([`is_transient`]: connection
/// failures, timeouts, broken SFTP sessions, HTTP errors the S3 client gave up on, injected
/// faults); definite answers (`NotFound`, `AlreadyExists`, `Precondition`, refused host
/// keys, ...) are returned at once.
///
/// What is retried: every request as a whole (`put` with its payload, the start of a
/// multipart upload, `get`/`head` up to the response, `get_ranges`, `list_with_delimiter`,
/// `copy`, `rename`, each path of `delete_stream` on its own); a `list` stream is restarted
/// while it has yielded nothing. Not retried: multipart parts and completion, and failures
/// in the middle of a `get` stream or a `list` stream.
///
/// A retried [`PutMode::Create`](object_store::PutMode::Create) whose first attempt did
/// reach the server answers `AlreadyExists`: the safe side for a lock or a write-once
/// object, but the caller cannot tell its own write from another's.
///
/// ```
/// use std::sync::Arc;
/// use backup_storage::{RetryPolicy, RetryStore};
/// use object_store::memory::InMemory;
///
/// let store = RetryStore::new(InMemory::new()).with_policy(RetryPolicy {
///     max_retries: 2,
///     ..Default::default()
/// });
/// let _shared: Arc<dyn object_store::ObjectStore> = Arc::new(store);
/// ```
#[derive(Debug)]
pub struct RetryStore<T> {
    inner: Arc<T>,
    policy: RetryPolicy,
    retries: Arc<AtomicU64>,
}

impl<T: ObjectStore> RetryStore<T> {
    /// Wraps `inner` with the default [`RetryPolicy`].
    pub fn new(inner: T) -> Self {
        Self {
            inner: Arc::new(inner),
            policy: RetryPolicy::default(),
            retries: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Uses `policy` instead of the default.
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The wrapped store.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// Retries made so far (attempts after a transient failure).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    async fn run<R, F, Fut>(&self, op: F) -> object_store::Result<R>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<R>>,
    {
        retry(&self.policy, &self.retries, op).await
    }
}

/// Runs `op` until it succeeds, fails for good or the policy's retries are used up.
async fn retry<R, F, Fut>(
    policy: &RetryPolicy,
    retries: &AtomicU64,
    mut op: F,
) -> object_store::Result<R>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = object_store::Result<R>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Err(e) if attempt < policy.max_retries && is_transient(&e) => {
                attempt += 1;
                retries.fetch_add(1, Ordering::Relaxed);
                let wait = policy.backoff(attempt);
                tracing::debug!(error = %e, attempt, ?wait, "retrying a storage request");
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

impl<T: ObjectStore> fmt::Display for RetryStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetryStore({})", self.inner)
    }
}

#[async_trait]
impl<T: ObjectStore> ObjectStore for RetryStore<T> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.run(|| self.inner.put_opts(location, payload.clone(), opts.clone()))
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.run(|| self.inner.put_multipart_opts(location, opts.clone()))
            .await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.run(|| self.inner.get_opts(location, options.clone()))
            .await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.run(|| self.inner.get_ranges(location, ranges)).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = self.inner.clone();
        let policy = self.policy.clone();
        let retries = self.retries.clone();
        locations
            .map(move |location| {
                let (inner, policy, retries) = (inner.clone(), policy.clone(), retries.clone());
                async move {
                    let location = location?;
                    retry(&policy, &retries, || inner.delete(&location)).await?;
                    Ok(location)
                }
            })
            .buffered(DELETE_CONCURRENCY)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let prefix = prefix.cloned();
        let first = self.inner.list(prefix.as_ref());
        let state = ListState {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
            retries: self.retries.clone(),
            prefix,
            current: first,
            yielded: false,
            attempt: 0,
        };
        stream::unfold(state, |mut s| async move {
            loop {
                match s.current.next().await {
                    Some(Ok(meta)) => {
                        s.yielded = true;
                        return Some((Ok(meta), s));
                    }
                    Some(Err(e))
                        if !s.yielded && s.attempt < s.policy.max_retries && is_transient(&e) =>
                    {
                        s.attempt += 1;
                        s.retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(s.policy.backoff(s.attempt)).await;
                        s.current = s.inner.list(s.prefix.as_ref());
                    }
                    Some(Err(e)) => return Some((Err(e), s)),
                    None => return None,
                }
            }
        })
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.run(|| self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.run(|| self.inner.copy_opts(from, to, options.clone()))
            .await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.run(|| self.inner.rename_opts(from, to, options.clone()))
            .await
    }
}

/// A listing being retried.
struct ListState<T> {
    inner: Arc<T>,
    policy: RetryPolicy,
    retries: Arc<AtomicU64>,
    prefix: Option<Path>,
    current: BoxStream<'static, object_store::Result<ObjectMeta>>,
    yielded: bool,
    attempt: u32,
}
