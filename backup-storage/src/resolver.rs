//! [`UrlResolver`]: the [`StoreResolver`] port over [`open`](crate::open), with retries on
//! by default and layers ([`StoreLayer`]) around every store it opens.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backup_core::ports::StoreResolver;
use object_store::ObjectStore;
use object_store::path::Path;

use crate::retry::{RetryPolicy, RetryStore};

/// Wraps a store in another that adds behaviour (counting, rate limits, logs, faults): the
/// shape of tower's `Layer`, for object stores.
///
/// Any `Fn(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + Sync` closure is a layer;
/// a [`RetryPolicy`] is the layer that wraps in a [`RetryStore`] with that policy.
///
/// ```
/// use std::sync::Arc;
/// use backup_storage::{CountingStore, StoreLayer};
/// use object_store::{ObjectStore, memory::InMemory};
///
/// let counting = |store: Arc<dyn ObjectStore>| {
///     Arc::new(CountingStore::new(store)) as Arc<dyn ObjectStore>
/// };
/// let store = counting.layer(Arc::new(InMemory::new()));
/// assert!(store.to_string().starts_with("CountingStore"));
/// ```
pub trait StoreLayer: Send + Sync + 'static {
    /// The store that wraps `inner`.
    fn layer(&self, inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore>;
}

impl<F> StoreLayer for F
where
    F: Fn(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + Sync + 'static,
{
    fn layer(&self, inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        self(inner)
    }
}

impl StoreLayer for RetryPolicy {
    fn layer(&self, inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(RetryStore::new(inner).with_policy(self.clone()))
    }
}

/// Opens destination URLs with [`open`](crate::open) (after [`check`](crate::check)) and
/// wraps every store it opens: the [`StoreResolver`] a service is assembled with.
///
/// The stack, from the store out (a request passes through it from the outside in):
///
/// 1. the store the URL names;
/// 2. the layers added with [`with_layer_under_retries`](Self::with_layer_under_retries),
///    in the order added (the first added wraps the store);
/// 3. a [`RetryStore`] with the default [`RetryPolicy`] (or the one given to
///    [`with_retry_policy`](Self::with_retry_policy); none after
///    [`without_retries`](Self::without_retries));
/// 4. the layers added with [`with_layer`](Self::with_layer), in the order added (the first
///    added wraps the retries, the last added is outermost and sees each request first).
///
/// So a layer added with `with_layer` sees each request once, however often it is retried,
/// and its own failures (a [`FaultStore`](crate::FaultStore) injecting faults, a rate
/// limiter refusing) are not retried; a layer under the retries sees every attempt, and
/// its transient failures are retried like the store's.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use backup_core::ports::StoreResolver;
/// use backup_storage::{CountingStore, UrlResolver};
/// use object_store::{ObjectStore, ObjectStoreExt};
///
/// let resolver = UrlResolver::new().with_layer(|store: Arc<dyn ObjectStore>| {
///     Arc::new(CountingStore::new(store)) as Arc<dyn ObjectStore>
/// });
/// resolver.check("memory://")?;
/// assert!(resolver.check("/srv/backups").is_err()); // not explicit: file:///srv/backups
/// let (store, root) = resolver.open("memory://").await?;
/// store.put(&root.clone().join("hello"), "hi".into()).await?;
/// assert_eq!(store.to_string(), "CountingStore(RetryStore(InMemory))");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct UrlResolver {
    under_retries: Vec<Arc<dyn StoreLayer>>,
    retries: Option<RetryPolicy>,
    layers: Vec<Arc<dyn StoreLayer>>,
}

impl Default for UrlResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl UrlResolver {
    /// Retries with the default [`RetryPolicy`], no other layer.
    pub fn new() -> Self {
        Self {
            under_retries: Vec::new(),
            retries: Some(RetryPolicy::default()),
            layers: Vec::new(),
        }
    }

    /// Retries with `policy` instead of the default.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retries = Some(policy);
        self
    }

    /// No retries: the layers wrap the store directly (those under the retries first).
    pub fn without_retries(mut self) -> Self {
        self.retries = None;
        self
    }

    /// Adds a layer outside the retries, around the layers added before.
    pub fn with_layer(mut self, layer: impl StoreLayer) -> Self {
        self.layers.push(Arc::new(layer));
        self
    }

    /// Adds a layer under the retries, around the store and the layers added here before:
    /// every attempt passes through it, and its transient failures are retried.
    pub fn with_layer_under_retries(mut self, layer: impl StoreLayer) -> Self {
        self.under_retries.push(Arc::new(layer));
        self
    }

    /// Applies this resolver's stack to a store opened some other way (an
    /// [`SftpBuilder`](crate::SftpBuilder) with settings a URL cannot carry, say).
    pub fn wrap(&self, store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        let store = self
            .under_retries
            .iter()
            .fold(store, |store, layer| layer.layer(store));
        let store = match &self.retries {
            Some(policy) => policy.layer(store),
            None => store,
        };
        self.layers
            .iter()
            .fold(store, |store, layer| layer.layer(store))
    }
}

impl fmt::Debug for UrlResolver {
    /// The retry policy and how many layers there are: layers are closures, which may hold
    /// anything, and are not shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UrlResolver")
            .field("layers_under_retries", &self.under_retries.len())
            .field("retries", &self.retries)
            .field("layers", &self.layers.len())
            .finish()
    }
}

#[async_trait]
impl StoreResolver for UrlResolver {
    fn check(&self, url: &str) -> backup_core::Result<()> {
        Ok(crate::url::check(url)?)
    }

    async fn open(&self, url: &str) -> backup_core::Result<(Arc<dyn ObjectStore>, Path)> {
        let (store, root) = crate::url::open(url)?;
        Ok((self.wrap(store), root))
    }

    fn is_transient(&self, error: &object_store::Error) -> bool {
        crate::is_transient(error)
    }

    async fn sweep_staging(&self, url: &str, older_than: Duration) -> backup_core::Result<u64> {
        let Some(root) = crate::url::local_root(url) else {
            return Ok(0);
        };
        let cutoff = std::time::SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(std::time::UNIX_EPOCH);
        let swept =
            tokio::task::spawn_blocking(move || crate::local::sweep_staging(&root, cutoff)).await;
        match swept {
            Ok(r) => r.map_err(|e| backup_core::Error::io("sweeping staging files", e)),
            Err(e) => Err(backup_core::Error::Internal {
                reason: format!("sweeping staging files: {e}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use object_store::ObjectStoreExt;

    use super::*;
    use crate::{FaultPlan, FaultStore, RequestKind};

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            multiplier: 2.0,
        }
    }

    /// A layer failing the first put of each store it wraps.
    fn first_put_fails(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(FaultStore::new(store, FaultPlan::Nth(1)).only([RequestKind::Put]))
    }

    /// A layer that records its name when applied, to show the order.
    fn named(name: &'static str, seen: &Arc<Mutex<Vec<&'static str>>>) -> impl StoreLayer {
        let seen = seen.clone();
        move |store: Arc<dyn ObjectStore>| {
            seen.lock().unwrap().push(name);
            store
        }
    }

    #[tokio::test]
    async fn retries_are_on_by_default_under_the_added_layers() {
        // The fault is under the retries: retried by default.
        let resolver = UrlResolver::new().with_layer_under_retries(first_put_fails);
        let (store, root) = resolver.open("memory://").await.unwrap();
        store
            .put(&root.clone().join("a"), "1".into())
            .await
            .unwrap();
        assert_eq!(store.to_string(), "RetryStore(FaultStore(InMemory))");

        // Without retries it is the caller's.
        let resolver = UrlResolver::new()
            .without_retries()
            .with_layer_under_retries(first_put_fails);
        let (store, root) = resolver.open("memory://").await.unwrap();
        assert!(
            store
                .put(&root.clone().join("a"), "1".into())
                .await
                .is_err()
        );

        // A layer added with `with_layer` sits outside the retries: its faults reach the
        // caller.
        let resolver = UrlResolver::new()
            .with_retry_policy(fast())
            .with_layer(first_put_fails);
        let (store, root) = resolver.open("memory://").await.unwrap();
        assert_eq!(store.to_string(), "FaultStore(RetryStore(InMemory))");
        assert!(
            store
                .put(&root.clone().join("a"), "1".into())
                .await
                .is_err()
        );
        store
            .put(&root.clone().join("a"), "1".into())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn layers_apply_in_the_order_added() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let resolver = UrlResolver::new()
            .with_layer(named("outer 1", &seen))
            .with_layer_under_retries(named("under 1", &seen))
            .with_layer(named("outer 2", &seen))
            .with_layer_under_retries(named("under 2", &seen));
        resolver.open("memory://").await.unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            ["under 1", "under 2", "outer 1", "outer 2"]
        );
        let shown = format!("{resolver:?}");
        assert!(shown.contains("layers_under_retries: 2"), "{shown}");
        assert!(shown.contains("layers: 2"), "{shown}");
    }

    #[tokio::test]
    async fn bad_urls_are_invalid_destination_urls() {
        let resolver = UrlResolver::new();
        for url in [
            "",
            "backups",
            "/srv/b",
            "s3:bucket/p",
            "file://relative",
            "ftp://h/x",
        ] {
            for err in [
                resolver.check(url).unwrap_err(),
                resolver.open(url).await.map(drop).unwrap_err(),
            ] {
                match &err {
                    backup_core::Error::Invalid { field, reason } => {
                        assert_eq!(*field, "destination url");
                        assert!(reason.contains("file:///ABSOLUTE/PATH"), "{reason}");
                    }
                    other => panic!("{url}: {other:?}"),
                }
                assert_eq!(err.kind(), backup_core::ErrorKind::InvalidInput);
            }
        }
    }

    #[test]
    fn debug_shows_no_layer_contents() {
        let secret = String::from("s3cr3t-token");
        let resolver = UrlResolver::new().with_layer(move |store: Arc<dyn ObjectStore>| {
            let _ = &secret;
            store
        });
        let shown = format!("{resolver:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
