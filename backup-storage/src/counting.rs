//! [`CountingStore`]: counts requests by kind and bytes moved (an S3 cost report).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};

use crate::RequestKind;

/// Objects per page of an S3 listing: a listing counts one request per page.
const LIST_PAGE: u64 = 1000;

/// Wraps a store and counts what goes through it: requests by [`RequestKind`] (failed ones
/// too), bytes uploaded and downloaded, objects listed.
///
/// Counting follows S3 billing: a listing counts one request per 1,000 entries (S3 pages);
/// a multipart upload counts its start, each part and its completion; `get_ranges` counts
/// one request (object_store coalesces close ranges; S3 may need a few); each path of
/// `delete_stream` counts one delete (S3 bulk deletes take up to 1,000 per request, and
/// deletes are free).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use backup_storage::{CountingStore, RequestKind};
/// use object_store::{ObjectStore, ObjectStoreExt, memory::InMemory, path::Path};
///
/// let counting = Arc::new(CountingStore::new(InMemory::new()));
/// let store: Arc<dyn ObjectStore> = counting.clone();
/// store.put(&Path::from("a"), "hello".into()).await.unwrap();
/// store.get(&Path::from("a")).await.unwrap();
/// let counts = counting.counts();
/// assert_eq!(counts.get(RequestKind::Put), 1);
/// assert_eq!(counts.bytes_uploaded, 5);
/// assert_eq!(counts.s3_class_a(), 1);
/// # });
/// ```
#[derive(Debug)]
pub struct CountingStore<T> {
    inner: T,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    requests: [AtomicU64; RequestKind::ALL.len()],
    failed: [AtomicU64; RequestKind::ALL.len()],
    bytes_uploaded: AtomicU64,
    bytes_downloaded: AtomicU64,
    objects_listed: AtomicU64,
}

fn index(kind: RequestKind) -> usize {
    RequestKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(0)
}

impl Counters {
    fn request(&self, kind: RequestKind) {
        self.requests[index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    fn outcome<R>(
        &self,
        kind: RequestKind,
        result: object_store::Result<R>,
    ) -> object_store::Result<R> {
        if result.is_err() {
            self.failed[index(kind)].fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn snapshot(&self) -> RequestCounts {
        let mut counts = RequestCounts {
            bytes_uploaded: self.bytes_uploaded.load(Ordering::Relaxed),
            bytes_downloaded: self.bytes_downloaded.load(Ordering::Relaxed),
            objects_listed: self.objects_listed.load(Ordering::Relaxed),
            ..Default::default()
        };
        for (i, kind) in RequestKind::ALL.iter().enumerate() {
            let n = self.requests[i].load(Ordering::Relaxed);
            if n > 0 {
                counts.requests.insert(*kind, n);
            }
            let f = self.failed[i].load(Ordering::Relaxed);
            if f > 0 {
                counts.failed.insert(*kind, f);
            }
        }
        counts
    }
}

/// A snapshot of a [`CountingStore`]'s counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Requests by kind (kinds never used are absent).
    pub requests: BTreeMap<RequestKind, u64>,
    /// Requests that returned an error, by kind.
    pub failed: BTreeMap<RequestKind, u64>,
    /// Payload bytes sent by puts and parts.
    pub bytes_uploaded: u64,
    /// Bytes of the ranges requested by gets (what a full read of each result downloads).
    pub bytes_downloaded: u64,
    /// Entries returned by listings.
    pub objects_listed: u64,
}

impl RequestCounts {
    /// Requests of one kind.
    pub fn get(&self, kind: RequestKind) -> u64 {
        self.requests.get(&kind).copied().unwrap_or(0)
    }

    /// Requests of every kind.
    pub fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    /// S3 class A requests (PUT, COPY, POST, LIST).
    pub fn s3_class_a(&self) -> u64 {
        self.requests
            .iter()
            .filter(|(k, _)| k.is_s3_class_a())
            .map(|(_, n)| n)
            .sum()
    }

    /// S3 class B requests (GET, HEAD).
    pub fn s3_class_b(&self) -> u64 {
        self.requests
            .iter()
            .filter(|(k, _)| k.is_s3_class_b())
            .map(|(_, n)| n)
            .sum()
    }

    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        let diff = |now: &BTreeMap<RequestKind, u64>, then: &BTreeMap<RequestKind, u64>| {
            now.iter()
                .map(|(k, n)| (*k, n.saturating_sub(then.get(k).copied().unwrap_or(0))))
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        RequestCounts {
            requests: diff(&self.requests, &earlier.requests),
            failed: diff(&self.failed, &earlier.failed),
            bytes_uploaded: self.bytes_uploaded.saturating_sub(earlier.bytes_uploaded),
            bytes_downloaded: self
                .bytes_downloaded
                .saturating_sub(earlier.bytes_downloaded),
            objects_listed: self.objects_listed.saturating_sub(earlier.objects_listed),
        }
    }
}

impl fmt::Display for RequestCounts {
    /// One line: `put=12 get=3 ... (class A 14, class B 3; up 1.0 MiB, down 0.2 MiB)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (kind, n) in &self.requests {
            write!(f, "{kind}={n} ")?;
        }
        write!(
            f,
            "(S3 class A {}, class B {}; up {:.1} MiB, down {:.1} MiB",
            self.s3_class_a(),
            self.s3_class_b(),
            self.bytes_uploaded as f64 / 1048576.0,
            self.bytes_downloaded as f64 / 1048576.0
        )?;
        let failed: u64 = self.failed.values().sum();
        if failed > 0 {
            write!(f, "; {failed} failed")?;
        }
        f.write_str(")")
    }
}

impl<T: ObjectStore> CountingStore<T> {
    /// Wraps `inner` with all counters at zero.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            counters: Arc::new(Counters::default()),
        }
    }

    /// The counters now.
    pub fn counts(&self) -> RequestCounts {
        self.counters.snapshot()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &T {
        &self.inner
    }
}

impl<T: ObjectStore> fmt::Display for CountingStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountingStore({})", self.inner)
    }
}

#[async_trait]
impl<T: ObjectStore> ObjectStore for CountingStore<T> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let c = &self.counters;
        c.request(RequestKind::Put);
        let len = payload.content_length() as u64;
        let result = c.outcome(
            RequestKind::Put,
            self.inner.put_opts(location, payload, opts).await,
        );
        if result.is_ok() {
            c.bytes_uploaded.fetch_add(len, Ordering::Relaxed);
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let c = &self.counters;
        c.request(RequestKind::PutMultipart);
        let upload = c.outcome(
            RequestKind::PutMultipart,
            self.inner.put_multipart_opts(location, opts).await,
        )?;
        Ok(Box::new(CountingUpload {
            inner: upload,
            counters: self.counters.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let kind = RequestKind::of_get(&options);
        let c = &self.counters;
        c.request(kind);
        let result = c.outcome(kind, self.inner.get_opts(location, options).await)?;
        if kind == RequestKind::Get {
            c.bytes_downloaded
                .fetch_add(result.range.end - result.range.start, Ordering::Relaxed);
        }
        Ok(result)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let c = &self.counters;
        c.request(RequestKind::GetRanges);
        let result = c.outcome(
            RequestKind::GetRanges,
            self.inner.get_ranges(location, ranges).await,
        )?;
        let bytes: usize = result.iter().map(Bytes::len).sum();
        c.bytes_downloaded
            .fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(result)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let before = self.counters.clone();
        let after = self.counters.clone();
        let counted = locations
            .inspect(move |_| before.request(RequestKind::Delete))
            .boxed();
        self.inner
            .delete_stream(counted)
            .map(move |r| after.outcome(RequestKind::Delete, r))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let c = self.counters.clone();
        c.request(RequestKind::List);
        let mut seen = 0u64;
        self.inner
            .list(prefix)
            .map(move |item| {
                match &item {
                    Ok(_) => {
                        seen += 1;
                        c.objects_listed.fetch_add(1, Ordering::Relaxed);
                        if seen > 1 && seen % LIST_PAGE == 1 {
                            c.request(RequestKind::List);
                        }
                    }
                    Err(_) => {
                        c.failed[index(RequestKind::List)].fetch_add(1, Ordering::Relaxed);
                    }
                }
                item
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let c = &self.counters;
        let kind = RequestKind::ListWithDelimiter;
        c.request(kind);
        let result = c.outcome(kind, self.inner.list_with_delimiter(prefix).await)?;
        let entries = (result.objects.len() + result.common_prefixes.len()) as u64;
        c.objects_listed.fetch_add(entries, Ordering::Relaxed);
        for _ in 1..entries.div_ceil(LIST_PAGE) {
            c.request(kind);
        }
        Ok(result)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.counters.request(RequestKind::Copy);
        self.counters.outcome(
            RequestKind::Copy,
            self.inner.copy_opts(from, to, options).await,
        )
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.counters.request(RequestKind::Rename);
        self.counters.outcome(
            RequestKind::Rename,
            self.inner.rename_opts(from, to, options).await,
        )
    }
}

/// A multipart upload whose parts are counted.
#[derive(Debug)]
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
    counters: Arc<Counters>,
}

#[async_trait]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let c = self.counters.clone();
        c.request(RequestKind::PutPart);
        let len = data.content_length() as u64;
        let part = self.inner.put_part(data);
        Box::pin(async move {
            let result = c.outcome(RequestKind::PutPart, part.await);
            if result.is_ok() {
                c.bytes_uploaded.fetch_add(len, Ordering::Relaxed);
            }
            result
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let kind = RequestKind::CompleteMultipart;
        self.counters.request(kind);
        self.counters.outcome(kind, self.inner.complete().await)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let kind = RequestKind::AbortMultipart;
        self.counters.request(kind);
        self.counters.outcome(kind, self.inner.abort().await)
    }
}
