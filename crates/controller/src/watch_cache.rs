//! What the controller's reflector caches share: the bounds a cached object
//! type needs, and running a cache's watch until shutdown.

use std::fmt::Debug;
use std::future::Future;

use kube::Resource;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// An object type a reflector cache can hold.
pub(crate) trait Cached:
    Resource<DynamicType = ()> + Clone + Debug + Send + Sync + DeserializeOwned + 'static
{
}

impl<K> Cached for K where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + DeserializeOwned + 'static
{
}

/// Drives `watch` (the stream that fills a cache and reacts to its events)
/// in its own task until it ends or `shutdown` is cancelled.
pub(crate) fn spawn_until_shutdown(
    watch: impl Future<Output = ()> + Send + 'static,
    shutdown: &CancellationToken,
) {
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = watch => {},
            () = shutdown.cancelled() => {},
        }
    });
}
