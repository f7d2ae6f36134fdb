//! [`FaultStore`]: fails chosen calls of a store, for reliability tests.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

use crate::RequestKind;
use crate::error::Error;

/// The `store` name of injected `object_store::Error::Generic` errors.
const STORE: &str = "FaultStore";

/// Which calls fail. Calls are numbered from 1 in the order they start, counting only the
/// kinds the store watches ([`FaultStore::only`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FaultPlan {
    /// Nothing fails (a pass-through, still counting calls).
    Never,
    /// Exactly call number `n` fails.
    Nth(u64),
    /// Every call from number `n` on fails (a server that went away).
    From(u64),
    /// About `ratio` (0.0 to 1.0) of the calls fail, chosen by a hash of `seed` and the
    /// call number: the same seed fails the same calls on every run.
    Fraction {
        /// Share of calls that fail.
        ratio: f64,
        /// Varies which calls fail.
        seed: u64,
    },
}

impl FaultPlan {
    fn fails(&self, call: u64) -> bool {
        match self {
            FaultPlan::Never => false,
            FaultPlan::Nth(n) => call == *n,
            FaultPlan::From(n) => call >= *n,
            FaultPlan::Fraction { ratio, seed } => {
                let unit = (splitmix64(seed ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 11)
                    as f64
                    / (1u64 << 53) as f64;
                unit < *ratio
            }
        }
    }
}

/// A fixed, well-mixed hash of a number (SplitMix64).
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Wraps a store and fails the calls a [`FaultPlan`] picks with a transient error
/// ([`Error::InjectedFault`] inside `object_store::Error::Generic`, which
/// [`RetryStore`](crate::RetryStore) retries).
///
/// By default a failing call never reaches the wrapped store. With
/// [`with_lost_responses`](Self::with_lost_responses) it does, and only its answer is
/// replaced by the error: the write happened but the caller was told it failed (a timeout
/// after the server acted). Each path of `delete_stream` is one call; a failing `list`
/// yields the error as its only item. Multipart parts and completion are not failed.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use backup_storage::{FaultPlan, FaultStore, RequestKind};
/// use object_store::{ObjectStoreExt, memory::InMemory, path::Path};
///
/// let store = FaultStore::new(InMemory::new(), FaultPlan::Nth(2)).only([RequestKind::Put]);
/// store.put(&Path::from("a"), "1".into()).await.unwrap();
/// assert!(store.put(&Path::from("b"), "2".into()).await.is_err());
/// store.put(&Path::from("c"), "3".into()).await.unwrap();
/// assert_eq!(store.injected(), 1);
/// # });
/// ```
#[derive(Debug)]
pub struct FaultStore<T> {
    inner: Arc<T>,
    plan: FaultPlan,
    kinds: Option<Vec<RequestKind>>,
    lost_responses: bool,
    counters: Arc<FaultCounters>,
}

#[derive(Debug, Default)]
struct FaultCounters {
    calls: AtomicU64,
    injected: AtomicU64,
}

/// Whether and how one call fails.
struct Verdict(Option<Error>);

impl<T: ObjectStore> FaultStore<T> {
    /// Wraps `inner`, failing the calls `plan` picks among all kinds of calls.
    pub fn new(inner: T, plan: FaultPlan) -> Self {
        Self {
            inner: Arc::new(inner),
            plan,
            kinds: None,
            lost_responses: false,
            counters: Arc::new(FaultCounters::default()),
        }
    }

    /// Watches (counts and fails) only these kinds of calls; the others pass untouched.
    pub fn only(mut self, kinds: impl IntoIterator<Item = RequestKind>) -> Self {
        self.kinds = Some(kinds.into_iter().collect());
        self
    }

    /// Lets failing calls reach the wrapped store and replaces only their answers.
    pub fn with_lost_responses(mut self, lost: bool) -> Self {
        self.lost_responses = lost;
        self
    }

    /// Watched calls so far.
    pub fn calls(&self) -> u64 {
        self.counters.calls.load(Ordering::Relaxed)
    }

    /// Calls failed so far.
    pub fn injected(&self) -> u64 {
        self.counters.injected.load(Ordering::Relaxed)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    fn judge(&self, kind: RequestKind) -> Verdict {
        judge(&self.plan, self.kinds.as_deref(), &self.counters, kind)
    }

    /// Runs one call under the plan.
    async fn call<R>(
        &self,
        kind: RequestKind,
        op: impl Future<Output = object_store::Result<R>>,
    ) -> object_store::Result<R> {
        match self.judge(kind).0 {
            None => op.await,
            Some(fault) if self.lost_responses => {
                let _ = op.await;
                Err(fault.into_store(STORE))
            }
            Some(fault) => Err(fault.into_store(STORE)),
        }
    }
}

fn judge(
    plan: &FaultPlan,
    kinds: Option<&[RequestKind]>,
    counters: &FaultCounters,
    kind: RequestKind,
) -> Verdict {
    if kinds.is_some_and(|k| !k.contains(&kind)) {
        return Verdict(None);
    }
    let call = counters.calls.fetch_add(1, Ordering::Relaxed) + 1;
    if plan.fails(call) {
        counters.injected.fetch_add(1, Ordering::Relaxed);
        Verdict(Some(Error::InjectedFault { call, kind }))
    } else {
        Verdict(None)
    }
}

impl<T: ObjectStore> fmt::Display for FaultStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

#[async_trait]
impl<T: ObjectStore> ObjectStore for FaultStore<T> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.call(
            RequestKind::Put,
            self.inner.put_opts(location, payload, opts),
        )
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.call(
            RequestKind::PutMultipart,
            self.inner.put_multipart_opts(location, opts),
        )
        .await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let kind = RequestKind::of_get(&options);
        self.call(kind, self.inner.get_opts(location, options))
            .await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.call(
            RequestKind::GetRanges,
            self.inner.get_ranges(location, ranges),
        )
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = self.inner.clone();
        let plan = self.plan.clone();
        let kinds = self.kinds.clone();
        let counters = self.counters.clone();
        let lost = self.lost_responses;
        locations
            .then(move |location| {
                let (inner, counters) = (inner.clone(), counters.clone());
                let verdict = judge(&plan, kinds.as_deref(), &counters, RequestKind::Delete);
                async move {
                    let location = location?;
                    match verdict.0 {
                        None => inner.delete(&location).await.map(|()| location),
                        Some(fault) => {
                            if lost {
                                let _ = inner.delete(&location).await;
                            }
                            Err(fault.into_store(STORE))
                        }
                    }
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.judge(RequestKind::List).0 {
            None => self.inner.list(prefix),
            Some(fault) => stream::once(async move { Err(fault.into_store(STORE)) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.call(
            RequestKind::ListWithDelimiter,
            self.inner.list_with_delimiter(prefix),
        )
        .await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.call(RequestKind::Copy, self.inner.copy_opts(from, to, options))
            .await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.call(
            RequestKind::Rename,
            self.inner.rename_opts(from, to, options),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_is_deterministic_and_close_to_its_ratio() {
        let plan = FaultPlan::Fraction {
            ratio: 0.2,
            seed: 7,
        };
        let failed: Vec<u64> = (1..=10_000).filter(|c| plan.fails(*c)).collect();
        assert!((1_700..2_300).contains(&failed.len()), "{}", failed.len());
        let again: Vec<u64> = (1..=10_000).filter(|c| plan.fails(*c)).collect();
        assert_eq!(failed, again);
        assert!(!(1..=1000).any(|c| FaultPlan::Never.fails(c)));
        assert!((1..=1000).all(|c| {
            FaultPlan::Fraction {
                ratio: 1.0,
                seed: 1,
            }
            .fails(c)
        }));
        assert_eq!((1..=50).filter(|c| FaultPlan::Nth(7).fails(*c)).count(), 1);
        assert_eq!(
            (1..=50).filter(|c| FaultPlan::From(41).fails(*c)).count(),
            10
        );
    }
}
