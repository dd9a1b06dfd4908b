//! High availability: run the controllers only while this replica holds a
//! coordination.k8s.io Lease, and never let two replicas write at once.
//!
//! The election follows client-go's semantics rather than trusting clocks:
//!
//! - **Acquiring and renewing** are `update`s carrying the resourceVersion
//!   last read, so of two replicas racing for a free or expired Lease
//!   exactly one succeeds (the other gets 409). Each replica writes the
//!   Lease under its own field manager, `kube-endpoints-lease-<identity>`.
//! - **Expiry is judged on the standby's monotonic clock**: a standby takes
//!   the Lease over only when the Lease has not changed (same
//!   resourceVersion) for `leaseDurationSeconds` since the standby itself
//!   saw it change. The holder's `renewTime` is never compared with the
//!   local wall clock, so clock skew between nodes cannot cause a takeover.
//! - **The leader steps down before the Lease can expire**: it renews every
//!   [`LeaseConfig::renew_interval`]; every attempt is bounded by the time
//!   left until [`LeaseConfig::renew_deadline`] after its last successful
//!   renewal (measured from when that renewal was *sent*, which is no later
//!   than any standby saw it), and when that deadline passes without a
//!   successful renewal it steps down.
//! - **Writes stop at that instant**: the controllers write through a client
//!   gated by a [`Fence`] that this module opens until the renew deadline
//!   and closes on step-down; writes in flight are abandoned, and the
//!   kernel drops their unacknowledged bytes after
//!   [`LeaseConfig::tcp_user_timeout`]. The renew deadline plus that timeout
//!   is shorter than the Lease duration, so the deposed leader's last write
//!   lands before a standby may take over.
//!
//! Standby replicas run nothing: no watches of our objects, no probes, no
//! writes. A replica that stops gracefully (SIGTERM) stops its controllers,
//! closes its fence and then releases the Lease; the standby — which
//! watches the Lease — takes it at once instead of waiting for it to expire.
//! A replica that loses the Lease (or cannot renew it) does not exit: it
//! stops its controllers and stands by again in-process, so a long
//! apiserver outage does not leave every replica in CrashLoopBackOff. If its
//! controllers do not stop, `/healthz` fails and the kubelet restarts it.
//!
//! On takeover the controllers start from scratch: their caches sync and the
//! probe engine is seeded from the EndpointSlices in the cluster, so a
//! failover moves no endpoint and rewrites no status.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::fence::Fence;
use crate::metrics::Metrics;
use crate::server::Liveness;

/// Where the Lease lives, who we are, and how long a Lease lasts.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// Unique among replicas (pod name plus a random suffix).
    pub identity: String,
    /// Seconds a Lease stays valid after its last renewal (at least 3).
    pub duration_seconds: u64,
}

impl LeaseConfig {
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_seconds.max(3))
    }

    /// How often the leader renews: a third of the duration, so that two
    /// attempts fit before the renew deadline.
    pub fn renew_interval(&self) -> Duration {
        self.duration() / 3
    }

    /// The leader steps down (and stops writing) this long after its last
    /// successful renewal was sent: two thirds of the duration.
    pub fn renew_deadline(&self) -> Duration {
        self.duration() * 2 / 3
    }

    /// `TCP_USER_TIMEOUT` of the controller's API connections: a sixth of
    /// the duration. Renew deadline + this leaves a sixth of the duration
    /// between the deposed leader's last possible write and the earliest
    /// takeover.
    pub fn tcp_user_timeout(&self) -> Duration {
        self.duration() / 6
    }

    /// Pause after a failed Lease request.
    fn retry(&self) -> Duration {
        (self.duration() / 15).max(Duration::from_millis(200))
    }

    /// Each replica its own: with one shared manager, two replicas' writes
    /// to the same fields would never conflict.
    pub fn field_manager(&self) -> String {
        let manager = format!("{}-lease-{}", crate::FIELD_MANAGER, self.identity);
        // The apiserver allows at most 128 characters.
        manager.chars().take(128).collect()
    }
}

/// How a period of leadership ended.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lost the Lease {namespace}/{name} to {holder}")]
    Lost {
        namespace: String,
        name: String,
        holder: String,
    },
    #[error(
        "could not renew the Lease {namespace}/{name} within {deadline:?} ({last_error}); stepped down so that two replicas never write at once"
    )]
    RenewFailed {
        namespace: String,
        name: String,
        deadline: Duration,
        last_error: String,
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

/// The liveness part this module beats.
const LIVENESS_PART: &str = "leader-election";

/// One Lease a replica campaigns for, and what it means to hold it: the
/// single leader-election Lease, or one shard's (see [`crate::shards`]).
pub trait Seat: Send + Sync {
    /// The `/healthz` part the campaign beats.
    fn liveness_part(&self) -> &'static str;
    /// Told whenever leadership of this Lease starts or ends.
    fn set_leading(&self, leading: bool);
    /// Told whenever the standby read the Lease: it is ready to take over.
    fn can_read(&self);
    /// Whether to take the Lease now that it is free or expired. A Lease
    /// that stays free (or expired) for another whole duration is taken
    /// anyway, so that no Lease is left without a holder.
    fn may_take(&self) -> bool;
    /// Whether taking the Lease is forbidden now, however long it has been
    /// free: unlike [`Seat::may_take`], never overridden.
    fn barred(&self) -> bool {
        false
    }
    /// Resolves when the holder should hand the Lease over gracefully
    /// (stop its controllers, close its fence, release the Lease) and stand
    /// by again.
    fn hand_over(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The one Lease of unsharded leader election: always taken when free,
/// never handed over but at shutdown.
struct SoleSeat<'a>(&'a Metrics);

impl Seat for SoleSeat<'_> {
    fn liveness_part(&self) -> &'static str {
        LIVENESS_PART
    }

    fn set_leading(&self, leading: bool) {
        self.0.leader.set(i64::from(leading));
    }

    fn can_read(&self) {
        self.0.set_ready(true);
    }

    fn may_take(&self) -> bool {
        true
    }

    fn hand_over(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::pending())
    }
}

/// What a replica knows of the Lease, and when (on its own monotonic clock)
/// it saw the Lease last change.
#[derive(Clone, Debug, PartialEq)]
struct Observation {
    resource_version: String,
    holder: Option<String>,
    duration: Duration,
    transitions: i32,
    changed_at: Instant,
}

impl Observation {
    /// The observation after reading `lease` at `now`: the change time moves
    /// only when the Lease changed.
    fn next(
        previous: Option<&Observation>,
        lease: &Lease,
        fallback: Duration,
        now: Instant,
    ) -> Self {
        let resource_version = lease.metadata.resource_version.clone().unwrap_or_default();
        let spec = lease.spec.as_ref();
        let changed_at = match previous {
            Some(p) if p.resource_version == resource_version => p.changed_at,
            _ => now,
        };
        Observation {
            resource_version,
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            duration: spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|d| u64::try_from(d).ok())
                .filter(|d| *d > 0)
                .map_or(fallback, Duration::from_secs),
            transitions: spec.and_then(|s| s.lease_transitions).unwrap_or(0),
            changed_at,
        }
    }

    /// Whether `identity` may try to take the Lease at `now`: it is free,
    /// already ours, or unchanged for a whole duration.
    fn may_take(&self, identity: &str, now: Instant) -> bool {
        match &self.holder {
            None => true,
            Some(h) if h == identity => true,
            Some(_) => now >= self.expires_at(),
        }
    }

    fn expires_at(&self) -> Instant {
        self.changed_at + self.duration
    }
}

/// The Lease that makes `identity` the holder, based on what was read
/// (`base`: its resourceVersion makes the update conditional).
fn holding(base: Option<&Lease>, config: &LeaseConfig, now: MicroTime) -> Lease {
    let spec = base.and_then(|l| l.spec.clone()).unwrap_or_default();
    let ours = spec.holder_identity.as_deref() == Some(config.identity.as_str());
    let transitions = spec.lease_transitions.unwrap_or(0);
    Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            resource_version: base.and_then(|l| l.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: i32::try_from(config.duration().as_secs()).ok(),
            acquire_time: if ours {
                spec.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if ours || base.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        }),
    }
}

/// The Lease with no holder, for a graceful hand-over.
fn released(base: &Lease) -> Lease {
    let mut lease = base.clone();
    lease.metadata.managed_fields = None;
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
    }
    lease
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Lease API calls, each bounded by a deadline.
struct LeaseApi {
    api: Api<Lease>,
    config: LeaseConfig,
}

#[derive(Debug)]
enum Write {
    Done(Box<Lease>),
    /// Someone else changed the Lease since we read it.
    Conflict,
    Failed(String),
}

impl LeaseApi {
    fn params(&self) -> PostParams {
        PostParams {
            field_manager: Some(self.config.field_manager()),
            ..PostParams::default()
        }
    }

    async fn get(&self, deadline: Instant) -> Result<Option<Lease>, String> {
        match tokio::time::timeout_at(deadline, self.api.get_opt(&self.config.name)).await {
            Ok(Ok(lease)) => Ok(lease),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer in time".into()),
        }
    }

    /// Create the Lease, or update it conditionally on its resourceVersion.
    async fn write(&self, lease: Lease, deadline: Instant) -> Write {
        let params = self.params();
        let request = async {
            if lease.metadata.resource_version.is_some() {
                self.api.replace(&self.config.name, &params, &lease).await
            } else {
                self.api.create(&params, &lease).await
            }
        };
        match tokio::time::timeout_at(deadline, request).await {
            Ok(Ok(lease)) => Write::Done(Box::new(lease)),
            Ok(Err(kube::Error::Api(e))) if e.code == 409 => Write::Conflict,
            Ok(Err(e)) => Write::Failed(e.to_string()),
            Err(_) => Write::Failed("no answer in time".into()),
        }
    }
}

/// Hold the Lease whenever possible and run `work` while holding it; return
/// when `shutdown` is cancelled (after stopping `work` and releasing the
/// Lease) or when `work` ends by itself (its result). `work` gets a token
/// that is cancelled when it must stop; it is started anew at every
/// takeover. `client` is used for the Lease only (it must not be fenced);
/// `fence` gates the writes of `work`'s client.
#[allow(clippy::too_many_arguments)]
pub async fn run_while_leading<F, Fut, T>(
    client: Client,
    config: LeaseConfig,
    metrics: &Metrics,
    liveness: &Liveness,
    fence: Fence,
    shutdown: CancellationToken,
    work: F,
) -> Option<T>
where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let seat = SoleSeat(metrics);
    run_seat(client, config, &seat, liveness, fence, shutdown, work).await
}

/// [`run_while_leading`] for any [`Seat`]: the seat decides when a free
/// Lease is taken and when a held one is handed over.
pub async fn run_seat<F, Fut, T>(
    client: Client,
    config: LeaseConfig,
    seat: &dyn Seat,
    liveness: &Liveness,
    fence: Fence,
    shutdown: CancellationToken,
    work: F,
) -> Option<T>
where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    fence.close();
    let lease = LeaseApi {
        api: Api::namespaced(client, &config.namespace),
        config: config.clone(),
    };
    let changed = Arc::new(Notify::new());
    let watch = tokio::spawn(watch_lease(
        lease.api.clone(),
        config.name.clone(),
        changed.clone(),
        shutdown.clone(),
    ));
    let result = loop {
        let Some(acquired) = stand_by(&lease, seat, liveness, &changed, &shutdown).await else {
            break None;
        };
        match lead(&lease, acquired, seat, liveness, &fence, &shutdown, &work).await {
            Led::Done(result) => break result,
            Led::HandedOver => {}
            Led::Lost(e) => {
                // Stand by again: the controllers have stopped, and a fresh
                // set starts at the next takeover.
                error!(reason = e.reason(), "{e}");
            }
            Led::Stuck => {
                // /healthz now fails; the kubelet restarts the pod. Never
                // lead again from this process meanwhile.
                shutdown.cancelled().await;
                break None;
            }
        }
    };
    watch.abort();
    fence.close();
    seat.set_leading(false);
    liveness.forget(seat.liveness_part());
    result
}

/// The Lease as we wrote it, and when that write was sent.
struct Acquired {
    lease: Lease,
    sent_at: Instant,
}

/// When a free Lease the seat declines is looked at again: soon (the
/// seat's mind may change any moment), or `None` to take it now (the seat
/// accepts, or it has declined until `overdue` and is not barred).
fn declined(
    seat: &dyn Seat,
    overdue: Instant,
    now: Instant,
    config: &LeaseConfig,
) -> Option<Instant> {
    if seat.barred() {
        return Some(now + config.retry());
    }
    (!seat.may_take() && now < overdue).then(|| (now + config.retry()).min(overdue))
}

/// Wait until this replica holds the Lease; `None` on shutdown.
async fn stand_by(
    lease: &LeaseApi,
    seat: &dyn Seat,
    liveness: &Liveness,
    changed: &Notify,
    shutdown: &CancellationToken,
) -> Option<Acquired> {
    let config = &lease.config;
    let mut observed: Option<Observation> = None;
    // Since when the Lease has been seen absent (a Seat may decline to
    // create it, but not for ever).
    let mut absent_since: Option<Instant> = None;
    info!(lease = %config.name, namespace = %config.namespace, identity = %config.identity, "standing by for the Lease");
    loop {
        liveness.beat(seat.liveness_part(), config.duration() * 4);
        let read_deadline = Instant::now() + config.renew_deadline();
        let current = tokio::select! {
            () = shutdown.cancelled() => return None,
            read = lease.get(read_deadline) => read,
        };
        let current = match current {
            Ok(current) => current,
            Err(e) => {
                warn!(error = %e, "cannot read the Lease; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(config.retry()) => continue,
                }
            }
        };
        // A standby that can read the Lease is ready to take over.
        seat.can_read();
        let now = Instant::now();
        let wait_until = match &current {
            None => {
                let since = *absent_since.get_or_insert(now);
                declined(seat, since + config.duration(), now, config)
            }
            Some(l) => {
                absent_since = None;
                let next = Observation::next(observed.as_ref(), l, config.duration(), now);
                let wait = (!next.may_take(&config.identity, now)).then(|| next.expires_at());
                if let Some(holder) = next.holder.as_ref().filter(|_| wait.is_some())
                    && observed.as_ref().and_then(|o| o.holder.as_ref()) != Some(holder)
                {
                    debug!(%holder, "the Lease is held by another replica");
                }
                let wait = wait.or_else(|| {
                    // Free or expired: the seat may still decline, until it
                    // has been so for another duration.
                    let overdue = if next.holder.is_some() {
                        next.expires_at() + next.duration
                    } else {
                        next.changed_at + next.duration
                    };
                    declined(seat, overdue, now, config)
                });
                observed = Some(next);
                wait
            }
        };
        if let Some(until) = wait_until {
            // Woken early when the Lease changes (a renewal, or a release).
            let until = until.min(now + config.duration());
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = changed.notified() => {}
                () = tokio::time::sleep_until(until) => {}
            }
            continue;
        }
        let sent_at = Instant::now();
        let ours = holding(current.as_ref(), config, now_micro());
        let write = tokio::select! {
            () = shutdown.cancelled() => return None,
            write = lease.write(ours, sent_at + config.renew_deadline()) => write,
        };
        match write {
            Write::Done(lease) => {
                return Some(Acquired {
                    lease: *lease,
                    sent_at,
                });
            }
            Write::Conflict => debug!("another replica changed the Lease first"),
            Write::Failed(e) => {
                warn!(error = %e, "cannot take the Lease; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(config.retry()) => {}
                }
            }
        }
    }
}

enum Led<T> {
    /// Shutdown, or `work` ended by itself: the process is done.
    Done(Option<T>),
    /// The seat asked for a graceful hand-over; the controllers stopped and
    /// the Lease was released.
    HandedOver,
    /// Leadership ended; the controllers stopped.
    Lost(LeaderError),
    /// Leadership ended and the controllers did not stop.
    Stuck,
}

/// Let the controllers finish what they are writing while the Lease is
/// still ours (until `deadline`), then fence, then release the Lease so
/// that a standby takes it at once. The controllers' result, if they
/// stopped in time.
async fn step_aside<T>(
    lease: &LeaseApi,
    held: &Lease,
    seat: &dyn Seat,
    fence: &Fence,
    stop: &CancellationToken,
    running: &mut tokio::task::JoinHandle<T>,
    deadline: Instant,
) -> Option<T> {
    let config = &lease.config;
    stop.cancel();
    let result = tokio::time::timeout_at(deadline, &mut *running).await;
    fence.close();
    seat.set_leading(false);
    let result = match result {
        Ok(finished) => finished.ok(),
        Err(_) => {
            running.abort();
            warn!("the controllers did not stop before the renew deadline; abandoned them");
            None
        }
    };
    let release_by = Instant::now() + config.renew_deadline();
    match lease.write(released(held), release_by).await {
        Write::Done(_) => info!(lease = %config.name, "released the Lease"),
        Write::Conflict => {
            info!(lease = %config.name, "the Lease was no longer ours to release")
        }
        Write::Failed(e) => {
            warn!(error = %e, "could not release the Lease; the standby takes over when it expires")
        }
    }
    result
}

/// Lead from `acquired` until shutdown, until `work` ends, or until the
/// Lease is lost or cannot be renewed in time.
async fn lead<F, Fut, T>(
    lease: &LeaseApi,
    acquired: Acquired,
    seat: &dyn Seat,
    liveness: &Liveness,
    fence: &Fence,
    shutdown: &CancellationToken,
    work: &F,
) -> Led<T>
where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let config = &lease.config;
    let Acquired {
        lease: mut held,
        sent_at,
    } = acquired;
    let mut deadline = sent_at + config.renew_deadline();
    fence.open_until(deadline);
    seat.set_leading(true);
    info!(lease = %config.name, identity = %config.identity, renew_deadline = ?config.renew_deadline(), "acquired the Lease; starting the controllers");
    let stop = shutdown.child_token();
    let mut running = tokio::spawn(work(stop.clone()));
    let mut next_renewal = sent_at + config.renew_interval();
    let mut last_error = String::from("no attempt");
    let ended = loop {
        liveness.beat(seat.liveness_part(), config.duration() * 4);
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                let result = step_aside(lease, &held, seat, fence, &stop, &mut running, deadline).await;
                return Led::Done(result);
            }
            () = seat.hand_over() => {
                step_aside(lease, &held, seat, fence, &stop, &mut running, deadline).await;
                return Led::HandedOver;
            }
            finished = &mut running => {
                fence.close();
                seat.set_leading(false);
                let _ = lease.write(released(&held), Instant::now() + config.renew_deadline()).await;
                return Led::Done(finished.ok());
            }
            () = tokio::time::sleep_until(next_renewal) => {}
        }
        let attempt = Instant::now();
        if attempt >= deadline {
            break LeaderError::RenewFailed {
                namespace: config.namespace.clone(),
                name: config.name.clone(),
                deadline: config.renew_deadline(),
                last_error,
            };
        }
        let renewal = holding(Some(&held), config, now_micro());
        let written = tokio::select! {
            biased;
            () = shutdown.cancelled() => continue,
            written = lease.write(renewal, deadline) => written,
        };
        match written {
            Write::Done(lease) => {
                held = *lease;
                deadline = attempt + config.renew_deadline();
                fence.open_until(deadline);
                next_renewal = attempt + config.renew_interval();
            }
            Write::Conflict => {
                // Changed behind our back: still ours only if it still
                // names us (then renew on the fresh resourceVersion).
                match lease.get(deadline).await {
                    Ok(Some(current))
                        if current
                            .spec
                            .as_ref()
                            .and_then(|s| s.holder_identity.as_deref())
                            == Some(config.identity.as_str()) =>
                    {
                        held = current;
                        next_renewal = Instant::now();
                    }
                    Ok(current) => {
                        break LeaderError::Lost {
                            namespace: config.namespace.clone(),
                            name: config.name.clone(),
                            holder: current
                                .and_then(|l| l.spec?.holder_identity)
                                .unwrap_or_else(|| "nobody".into()),
                        };
                    }
                    Err(e) => {
                        last_error = e;
                        next_renewal = Instant::now() + config.retry();
                    }
                }
            }
            Write::Failed(e) => {
                warn!(error = %e, "Lease renewal failed; retrying");
                last_error = e;
                next_renewal = Instant::now() + config.retry();
            }
        }
    };
    // Step down: no write leaves from now on, then the controllers stop.
    fence.close();
    seat.set_leading(false);
    stop.cancel();
    // Their writes fail at the fence, so they stop quickly; a controller
    // that does not is a bug that only a restart clears.
    let stop_within = config.duration() * 2;
    if tokio::time::timeout(stop_within, &mut running)
        .await
        .is_err()
    {
        running.abort();
        liveness.fail(
            "controllers",
            format!("still running {stop_within:?} after losing the Lease"),
        );
        error!(
            reason = ended.reason(),
            "{ended}; the controllers did not stop, so /healthz fails until the pod restarts"
        );
        return Led::Stuck;
    }
    Led::Lost(ended)
}

/// Wake the standby whenever the Lease changes (a renewal, a release, or a
/// deletion), so that it observes renewals as they happen and takes a
/// released Lease at once.
async fn watch_lease(
    api: Api<Lease>,
    name: String,
    changed: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api, config).default_backoff().touched_objects();
    futures::pin_mut!(stream);
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return,
            next = stream.next() => next,
        };
        match next {
            Some(Ok(_)) => changed.notify_one(),
            Some(Err(e)) => debug!(error = %e, "watching the Lease failed; retrying"),
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

#[cfg(test)]
#[path = "leader_tests.rs"]
mod tests;
