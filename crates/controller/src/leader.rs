//! High availability: run the controller only while this replica holds a
//! coordination.k8s.io Lease.
//!
//! The locking itself is `kube-lease-manager`'s (server-side apply on the
//! Lease, expiry and renewal); this module adds what an operator needs around
//! it:
//!
//! - standby replicas run nothing: no watches of our objects, no probes, no
//!   writes; they only wait for the Lease;
//! - a replica that stops gracefully (SIGTERM) first stops its controllers,
//!   then releases the Lease, and the standby — which watches the Lease —
//!   takes it at once instead of waiting for it to expire;
//! - a leader that cannot renew steps down before its Lease can expire, so
//!   two replicas never write at the same time.
//!
//! On takeover the controllers start from scratch: their caches sync and the
//! probe engine is seeded from the EndpointSlices in the cluster, so a
//! failover moves no endpoint and rewrites no status.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// Where the Lease lives and how long it lasts.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// Unique among replicas (pod name plus a random suffix).
    pub identity: String,
    /// Seconds a Lease stays valid after its last renewal; the holder renews
    /// a third of this before expiry.
    pub duration_seconds: u64,
}

impl LeaseConfig {
    fn grace_seconds(&self) -> u64 {
        (self.duration_seconds / 3).max(1)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lost the Lease {namespace}/{name} to another replica")]
    Lost { namespace: String, name: String },
    #[error(
        "could not renew the Lease {namespace}/{name} in time ({source}); stepped down so that two replicas never lead at once"
    )]
    RenewFailed {
        namespace: String,
        name: String,
        source: kube_lease_manager::LeaseManagerError,
    },
}

impl LeaderError {
    /// Stable, CamelCase reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            LeaderError::Lost { .. } => "LeaseLost",
            LeaderError::RenewFailed { .. } => "LeaseRenewFailed",
        }
    }
}

/// Pause between retries of a failed Lease request.
const RETRY: Duration = Duration::from_millis(500);

/// Wait for the Lease, run `work` while holding it, and return when
/// `shutdown` is cancelled (after stopping `work` and releasing the Lease)
/// or when leadership is lost (after stopping `work`). `work` gets a token
/// that is cancelled when it must stop; its own result is passed through
/// when it ends by itself.
pub async fn run_while_leading<F, Fut, T>(
    client: Client,
    config: LeaseConfig,
    metrics: &Metrics,
    shutdown: CancellationToken,
    work: F,
) -> Result<Option<T>, LeaderError>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let released = std::sync::Arc::new(Notify::new());
    let watch = tokio::spawn(watch_releases(
        Api::namespaced(client.clone(), &config.namespace),
        config.name.clone(),
        released.clone(),
        shutdown.clone(),
    ));
    let result = lead(client, &config, metrics, shutdown, &released, work).await;
    watch.abort();
    metrics.leader.set(0);
    result
}

async fn lead<F, Fut, T>(
    client: Client,
    config: &LeaseConfig,
    metrics: &Metrics,
    shutdown: CancellationToken,
    released: &Notify,
    work: F,
) -> Result<Option<T>, LeaderError>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    // Stand by until the Lease is ours.
    let manager = loop {
        let manager = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            built = build_manager(&client, config) => built,
        };
        let manager = match manager {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "cannot read the Lease; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(RETRY) => continue,
                }
            }
        };
        metrics.set_ready(true);
        info!(lease = %config.name, namespace = %config.namespace, identity = %config.identity, "standing by for the Lease");
        let acquired = loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(None),
                // The holder let go: a fresh manager reads the Lease anew
                // and takes it now rather than at its old expiry.
                () = released.notified() => break false,
                changed = manager.changed() => match changed {
                    Ok(true) => break true,
                    Ok(false) => {}
                    Err(e) => {
                        warn!(error = %e, "Lease request failed; retrying");
                        tokio::time::sleep(RETRY).await;
                    }
                },
            }
        };
        if acquired {
            break manager;
        }
    };

    info!(lease = %config.name, identity = %config.identity, "acquired the Lease; starting the controllers");
    metrics.leader.set(1);
    let stop = shutdown.child_token();
    let mut work = tokio::spawn(work(stop.clone()));
    let grace = Duration::from_secs(config.grace_seconds());
    let mut failing_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                // Stop writing first, then let the standby in.
                stop.cancel();
                let result = work.await.ok();
                metrics.leader.set(0);
                if let Err(e) = manager.release().await {
                    warn!(error = %e, "could not release the Lease; the standby takes over when it expires");
                } else {
                    info!(lease = %config.name, "released the Lease");
                }
                return Ok(result);
            }
            finished = &mut work => {
                metrics.leader.set(0);
                let _ = manager.release().await;
                return Ok(finished.ok());
            }
            changed = manager.changed() => match changed {
                Ok(true) => failing_since = None,
                Ok(false) => {
                    stop.cancel();
                    let _ = work.await;
                    return Err(LeaderError::Lost {
                        namespace: config.namespace.clone(),
                        name: config.name.clone(),
                    });
                }
                Err(e) => {
                    // Renewal failed. The Lease stays ours until `grace`
                    // after the failed renewal; step down before that.
                    let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() + RETRY >= grace.mul_f32(0.8) {
                        stop.cancel();
                        let _ = work.await;
                        return Err(LeaderError::RenewFailed {
                            namespace: config.namespace.clone(),
                            name: config.name.clone(),
                            source: e,
                        });
                    }
                    warn!(error = %e, "Lease renewal failed; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            },
        }
    }
}

async fn build_manager(
    client: &Client,
    config: &LeaseConfig,
) -> Result<LeaseManager, kube_lease_manager::LeaseManagerError> {
    LeaseManagerBuilder::new(client.clone(), &config.name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(config.duration_seconds)
        .with_grace(config.grace_seconds())
        .with_field_manager(format!("{}-lease", crate::FIELD_MANAGER))
        .build()
        .await
}

/// Notify when the Lease has no holder (released by a replica shutting
/// down, or deleted), so the standby does not wait for the old expiry.
async fn watch_releases(
    api: Api<Lease>,
    name: String,
    released: std::sync::Arc<Notify>,
    shutdown: CancellationToken,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api, config).default_backoff().applied_objects();
    futures::pin_mut!(stream);
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return,
            next = stream.next() => next,
        };
        match next {
            Some(Ok(lease)) => {
                let holder = lease.spec.and_then(|s| s.holder_identity);
                if holder.is_none_or(|h| h.is_empty()) {
                    released.notify_one();
                }
            }
            Some(Err(e)) => warn!(error = %e, "watching the Lease failed; retrying"),
            None => return,
        }
    }
}

/// This replica's identity: the pod name (or host name) and a random
/// suffix, so a restarted pod never mistakes the old holder for itself.
pub fn identity() -> String {
    use rand::Rng;
    let base = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "kube-endpoints".to_string());
    let suffix: u32 = rand::rng().random();
    format!("{base}_{suffix:08x}")
}

/// The namespace of the Lease when not given: the pod's own (from the
/// downward API or the service-account mount), else `default`.
pub fn default_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string())
}
