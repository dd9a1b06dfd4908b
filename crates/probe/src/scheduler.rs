//! One long-lived worker per target, each on its own fixed schedule.
//!
//! Workers keep the threshold state across periods and publish only
//! transitions, so the rest of the system does work only when a host changes.
//! A slow or silent host delays nobody but itself (each target is its own
//! tokio task), and probes of one target never overlap: a worker waits for
//! its probe before scheduling the next, skipping ticks the probe overran.
//!
//! Shared state is one map behind a std mutex, touched only by `sync`,
//! `remove`, `health` and friends; a worker owns its tracker and shares just
//! its current [`Health`] (behind its own small mutex), so 100,000 workers do
//! not contend on one lock. No lock is ever held across an `.await`.
//!
//! A semaphore caps the probes in flight over all targets (see
//! [`Scheduler::with_max_in_flight`]), so that a flood of targets cannot
//! exhaust file descriptors.
//!
//! Stopping a target (removal, a changed spec, shutdown) takes that target's
//! health lock while cancelling, and a worker publishes under the same lock
//! after checking for cancellation. So once `sync`, `remove`, `retain` or
//! `shutdown` returns, a stopped worker can neither overwrite the health its
//! successor inherited nor send another transition.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::probe::{Outcome, Probe, ProbeKind, Prober, Verdict};
use crate::threshold::{Health, HealthState, ThresholdTracker, Thresholds};

/// A target within its owner: which port, which host.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId {
    pub port: String,
    pub host: IpAddr,
}

/// How to probe a target. Two equal specs mean "nothing changed": `sync`
/// leaves such a target's worker and state alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSpec {
    /// Shared by all hosts of a port (it may hold CA bundles and keys).
    pub probe: Arc<Probe>,
    /// The port traffic goes to; probed unless `probe_port` is set.
    pub target_port: u16,
    /// Probe this port instead of `target_port` (e.g. Patroni's 8008 for
    /// Postgres on 5432). The endpoint's port stays `target_port`.
    pub probe_port: Option<u16>,
    pub period: Duration,
    pub timeout: Duration,
    pub thresholds: Thresholds,
    /// Wait before the first probe of a new (unseeded) target.
    pub initial_delay: Duration,
    /// Envoy-style schedule options; the default is a fixed `period`.
    pub intervals: Intervals,
}

impl TargetSpec {
    /// The port probes connect to.
    pub fn probed_port(&self) -> u16 {
        self.probe_port.unwrap_or(self.target_port)
    }
}

/// Schedule options beyond a fixed period, as Envoy's health checker has
/// them. `Intervals::default()` is the plain fixed schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Intervals {
    /// The period while the target is NotReady (Envoy's
    /// `unhealthy_interval`): probe dead hosts less (or more) often.
    /// `None`: `period`.
    pub unhealthy_period: Option<Duration>,
    /// Every wait between probes is lengthened by a random amount of up to
    /// this percentage of the period (Envoy's `interval_jitter_percent`),
    /// so that targets drift apart. 0: no jitter; values above 100 are
    /// read as 100.
    pub jitter_percent: u8,
    /// After a probe that changed the state, the next probe comes after
    /// this wait instead of on the usual schedule (Envoy's edge
    /// intervals); `Some(Duration::ZERO)` probes again at once, to confirm
    /// the new state. `None`: the usual schedule.
    pub edge_period: Option<Duration>,
}

/// How many targets are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub pending: usize,
    pub ready: usize,
    pub not_ready: usize,
}

/// A target changed state (never sent for a probe that changes nothing).
#[derive(Clone, Debug)]
pub struct Transition<K> {
    pub owner: K,
    pub target: TargetId,
    pub from: HealthState,
    pub to: Health,
}

/// A target's TLS leaf certificate was seen for the first time, or with
/// another `notAfter` (a renewed or replaced certificate). Sent only to a
/// subscriber of [`Scheduler::certificate_changes`].
#[derive(Clone, Debug)]
pub struct CertificateChange<K> {
    pub owner: K,
    pub target: TargetId,
    pub not_after: SystemTime,
}

/// Where certificate changes go, if anyone listens.
type CertificateSubscriber<K> = Arc<Mutex<Option<mpsc::UnboundedSender<CertificateChange<K>>>>>;

/// Told about every finished probe; used for metrics. Called from the
/// workers, so it must be quick and must not block.
pub trait Observer: Send + Sync + 'static {
    /// `lateness` is how long after its scheduled time the probe started
    /// (including any wait for an in-flight permit): a growing value means
    /// the runtime is overloaded or the in-flight cap is too small.
    fn probe_finished(
        &self,
        kind: ProbeKind,
        verdict: Verdict,
        latency: Duration,
        lateness: Duration,
    );

    /// The whole outcome, with its reason label (for a counter of local
    /// and configuration errors), message (for a rate-limited log) and
    /// certificate expiry. What the scheduler calls; the default passes
    /// the summary on to [`Observer::probe_finished`].
    fn probe_outcome(&self, kind: ProbeKind, outcome: &Outcome, lateness: Duration) {
        self.probe_finished(kind, outcome.verdict, outcome.latency, lateness);
    }
}

/// In-flight probes allowed by [`Scheduler::new`]: far above what a
/// healthy fleet needs (100,000 targets at a 10 s period with 10 ms probes
/// keep about 100 in flight) and below common descriptor limits, leaving
/// room for the controller's own connections.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;

struct Target {
    spec: TargetSpec,
    health: Arc<Mutex<Health>>,
    /// The last TLS leaf expiry seen, as seconds since the epoch; 0: none.
    cert_not_after: Arc<AtomicU64>,
    cancel: CancellationToken,
}

impl Target {
    /// Cancel the worker, waiting for a publish in progress (see the module
    /// docs). Returns the health as the worker left it.
    fn stop(&self) -> Health {
        let health = lock(&self.health);
        self.cancel.cancel();
        health.clone()
    }
}

struct Inner<K> {
    owners: Mutex<HashMap<K, HashMap<TargetId, Target>>>,
    root: CancellationToken,
    engine: Engine<K>,
    permits_total: usize,
}

/// What every worker shares: how to probe, whom to tell, and the in-flight
/// permits.
#[derive(Clone)]
struct Engine<K> {
    prober: Prober,
    observer: Arc<dyn Observer>,
    transitions: mpsc::UnboundedSender<Transition<K>>,
    certificates: CertificateSubscriber<K>,
    permits: Arc<Semaphore>,
}

/// Handle to the probe workers. Cheap to clone.
pub struct Scheduler<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for Scheduler<K> {
    fn clone(&self) -> Self {
        Scheduler {
            inner: self.inner.clone(),
        }
    }
}

/// Poisoning only means a worker panicked mid-update of plain data; the
/// data is still consistent, so keep going rather than cascade the panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<K> Scheduler<K>
where
    K: Clone + Eq + Hash + Ord + Debug + Send + Sync + 'static,
{
    /// A scheduler probing with `prober`, telling `observer` about every
    /// probe, with at most [`DEFAULT_MAX_IN_FLIGHT`] probes in flight.
    /// Transitions arrive on the returned receiver; the controller reacts
    /// to them instead of polling, so a quiet fleet costs nothing.
    pub fn new(
        prober: Prober,
        observer: Arc<dyn Observer>,
    ) -> (Self, mpsc::UnboundedReceiver<Transition<K>>) {
        Self::with_max_in_flight(prober, observer, DEFAULT_MAX_IN_FLIGHT)
    }

    /// As [`Scheduler::new`], with at most `max_in_flight` probes running at
    /// once over all targets (0 is read as 1); size it well below the
    /// process's file-descriptor limit.
    ///
    /// A probe waits for a permit before it starts and holds it until it
    /// ends. Its timeout runs from when it starts, so a host is never
    /// failed for time spent queueing here; the wait shows as `lateness`,
    /// and ticks that pass while waiting are skipped as for a slow probe.
    pub fn with_max_in_flight(
        prober: Prober,
        observer: Arc<dyn Observer>,
        max_in_flight: usize,
    ) -> (Self, mpsc::UnboundedReceiver<Transition<K>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let permits = max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        let inner = Inner {
            owners: Mutex::new(HashMap::new()),
            root: CancellationToken::new(),
            engine: Engine {
                prober,
                observer,
                transitions: tx,
                certificates: Arc::new(Mutex::new(None)),
                permits: Arc::new(Semaphore::new(permits)),
            },
            permits_total: permits,
        };
        (
            Scheduler {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    /// Make `owner`'s targets exactly `targets`:
    ///
    /// - unchanged targets (equal [`TargetSpec`]) keep worker and state;
    /// - changed targets keep their [`Health`] but restart their worker with
    ///   the new spec (counters reset); their first probe comes after a
    ///   random delay within one period, so that editing a port of 1000
    ///   hosts does not fire 1000 probes at once;
    /// - new targets for which `seed` says ready/unready start in that state
    ///   and are first probed after a random delay within one period, so
    ///   thousands restored at start do not fire at once; other new targets
    ///   start Pending and are probed after their `initial_delay`;
    /// - targets not in `targets` are stopped and forgotten.
    ///
    /// Must be called within a Tokio runtime. Does nothing after
    /// [`Scheduler::shutdown`].
    pub fn sync(
        &self,
        owner: &K,
        targets: BTreeMap<TargetId, TargetSpec>,
        seed: impl Fn(&TargetId) -> Option<bool>,
    ) {
        let now = SystemTime::now();
        let mut owners = lock(&self.inner.owners);
        if self.inner.root.is_cancelled() {
            return;
        }
        let current = owners.entry(owner.clone()).or_default();
        current.retain(|id, target| {
            let keep = targets.contains_key(id);
            if !keep {
                target.stop();
            }
            keep
        });
        for (id, spec) in targets {
            match current.get_mut(&id) {
                Some(existing) if existing.spec == spec => {}
                Some(existing) => {
                    let health = existing.stop();
                    let tracker = ThresholdTracker::with_health(spec.thresholds, health);
                    let delay = jitter(spec.period);
                    *existing = self.spawn(owner, &id, spec, tracker, delay);
                }
                None => {
                    let (tracker, delay) = match seed(&id) {
                        Some(ready) => {
                            let jitter = jitter(spec.period);
                            (
                                ThresholdTracker::new_seeded(spec.thresholds, ready, now),
                                jitter,
                            )
                        }
                        None => (
                            ThresholdTracker::new_pending(spec.thresholds, now),
                            spec.initial_delay,
                        ),
                    };
                    let target = self.spawn(owner, &id, spec, tracker, delay);
                    current.insert(id, target);
                }
            }
        }
        if current.is_empty() {
            owners.remove(owner);
        }
    }

    fn spawn(
        &self,
        owner: &K,
        id: &TargetId,
        spec: TargetSpec,
        tracker: ThresholdTracker,
        delay: Duration,
    ) -> Target {
        let cancel = self.inner.root.child_token();
        let health = Arc::new(Mutex::new(tracker.health().clone()));
        let cert_not_after = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            owner: owner.clone(),
            id: id.clone(),
            spec: spec.clone(),
            tracker,
            health: health.clone(),
            cert_not_after: cert_not_after.clone(),
            cancel: cancel.clone(),
            engine: self.inner.engine.clone(),
        };
        tokio::spawn(worker.run(delay));
        Target {
            spec,
            health,
            cert_not_after,
            cancel,
        }
    }

    /// Stop all of `owner`'s workers and forget their state.
    pub fn remove(&self, owner: &K) {
        let removed = lock(&self.inner.owners).remove(owner);
        for t in removed.iter().flat_map(HashMap::values) {
            t.stop();
        }
    }

    /// Keep only the owners for which `keep` is true (the controller drops
    /// owners deleted while its watch was down). Returns the owners dropped.
    pub fn retain(&self, keep: impl Fn(&K) -> bool) -> Vec<K> {
        let mut dropped = Vec::new();
        lock(&self.inner.owners).retain(|owner, targets| {
            let k = keep(owner);
            if !k {
                dropped.push((owner.clone(), std::mem::take(targets)));
            }
            k
        });
        for t in dropped.iter().flat_map(|(_, targets)| targets.values()) {
            t.stop();
        }
        dropped.into_iter().map(|(owner, _)| owner).collect()
    }

    /// Snapshot of `owner`'s target health.
    pub fn health(&self, owner: &K) -> BTreeMap<TargetId, Health> {
        lock(&self.inner.owners)
            .get(owner)
            .map(|targets| {
                targets
                    .iter()
                    .map(|(id, t)| (id.clone(), lock(&t.health).clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `notAfter` of the TLS leaf certificate each of `owner`'s targets
    /// presented at its last probe that completed a handshake (targets
    /// without one are absent). Read it when reconciling; a change of
    /// certificate alone sends no transition.
    pub fn cert_not_after(&self, owner: &K) -> BTreeMap<TargetId, SystemTime> {
        lock(&self.inner.owners)
            .get(owner)
            .map(|targets| {
                targets
                    .iter()
                    .filter_map(|(id, t)| {
                        let secs = t.cert_not_after.load(Ordering::Relaxed);
                        (secs != 0).then(|| (id.clone(), UNIX_EPOCH + Duration::from_secs(secs)))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Changes of the targets' TLS leaf certificates (see
    /// [`CertificateChange`]), for every target, running or started later.
    /// A new call replaces the previous subscriber. Certificates change
    /// rarely, so the controller can afford to reconcile on each.
    pub fn certificate_changes(&self) -> mpsc::UnboundedReceiver<CertificateChange<K>> {
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&self.inner.engine.certificates) = Some(tx);
        rx
    }

    /// Probes running right now, over all targets (at most the in-flight
    /// cap).
    pub fn in_flight(&self) -> usize {
        // Permits are only ever taken by workers; the cap is fixed.
        self.inner.max_permits() - self.inner.engine.permits.available_permits()
    }

    /// Targets being probed, over all owners.
    pub fn target_count(&self) -> usize {
        lock(&self.inner.owners).values().map(HashMap::len).sum()
    }

    /// Targets by current state, over all owners (for gauges read at
    /// scrape time; O(targets), each target's lock held only to read it).
    pub fn state_counts(&self) -> StateCounts {
        let mut counts = StateCounts::default();
        for target in lock(&self.inner.owners).values().flat_map(HashMap::values) {
            match lock(&target.health).state {
                HealthState::Pending => counts.pending += 1,
                HealthState::Ready => counts.ready += 1,
                HealthState::NotReady => counts.not_ready += 1,
            }
        }
        counts
    }

    /// Stop every worker (lost leadership, or exit). Final: later `sync`
    /// calls do nothing, so a straggling reconcile cannot restart probing.
    pub fn shutdown(&self) {
        let owners = {
            let mut owners = lock(&self.inner.owners);
            // Under the lock, so that no `sync` can slip a worker in after.
            self.inner.root.cancel();
            std::mem::take(&mut *owners)
        };
        // Cancelled already; this only waits out publishes in progress.
        for t in owners.values().flat_map(HashMap::values) {
            t.stop();
        }
    }
}

impl<K> Inner<K> {
    fn max_permits(&self) -> usize {
        self.permits_total
    }
}

/// `from + d`, saturating far in the future instead of panicking on an
/// absurd duration.
fn after(from: Instant, d: Duration) -> Instant {
    from.checked_add(d)
        .unwrap_or_else(|| from + Duration::from_secs(30 * 365 * 86_400))
}

/// The next start on the fixed schedule (previous scheduled start plus one
/// period). Ticks a slow probe overran are skipped, never run back to back
/// to catch up: the schedule keeps its phase and the host its pace.
fn next_tick(scheduled: Instant, period: Duration, now: Instant) -> Instant {
    let next = after(scheduled, period);
    if next > now {
        return next;
    }
    let missed = now.duration_since(next).as_nanos() / period.as_nanos().max(1);
    let skip = u32::try_from(missed + 1).unwrap_or(u32::MAX);
    period
        .checked_mul(skip)
        .map_or_else(|| after(now, period), |d| after(next, d))
}

/// A random delay in `[0, period)`, to spread the first probes of restored
/// or restarted targets over one period.
fn jitter(period: Duration) -> Duration {
    let millis = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rand::rng().random_range(0..millis))
}

/// A random delay in `[0, period × percent / 100)` (percent capped at 100).
fn jitter_percent(period: Duration, percent: u8) -> Duration {
    if percent == 0 {
        return Duration::ZERO;
    }
    let share = period
        .checked_mul(u32::from(percent.min(100)))
        .map_or(period, |d| d / 100);
    jitter(share)
}

struct Worker<K> {
    owner: K,
    id: TargetId,
    spec: TargetSpec,
    tracker: ThresholdTracker,
    health: Arc<Mutex<Health>>,
    cert_not_after: Arc<AtomicU64>,
    cancel: CancellationToken,
    engine: Engine<K>,
}

impl<K: Clone + Send + 'static> Worker<K> {
    async fn run(mut self, delay: Duration) {
        let addr = SocketAddr::new(self.id.host, self.spec.probed_port());
        let min = Duration::from_millis(1);
        let period = self.spec.period.max(min);
        let unhealthy_period = self.spec.intervals.unhealthy_period.map(|p| p.max(min));
        let percent = self.spec.intervals.jitter_percent;
        // `grid` is the fixed schedule; `due` is the grid tick plus this
        // tick's jitter.
        let mut grid = after(Instant::now(), delay);
        let mut due = grid;
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep_until(due) => {}
            }
            let permit = tokio::select! {
                () = self.cancel.cancelled() => return,
                permit = self.engine.permits.clone().acquire_owned() => permit,
            };
            // The semaphore is never closed; without a permit, stop.
            let Ok(_permit) = permit else { return };
            let started = Instant::now();
            let lateness = started.saturating_duration_since(due);
            // Boxed: the probe's future (an HTTP or gRPC exchange, several
            // KiB) then lives on the heap only while the probe runs, instead
            // of inside every idle worker's task (one per target).
            let probe = Box::pin(self.engine.prober.probe(
                &self.spec.probe,
                addr,
                self.spec.timeout,
            ));
            let outcome = tokio::select! {
                () = self.cancel.cancelled() => return,
                outcome = probe => outcome,
            };
            drop(_permit);
            self.engine
                .observer
                .probe_outcome(self.spec.probe.kind(), &outcome, lateness);
            if let Some(not_after) = outcome.cert_not_after {
                let secs = not_after
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_secs().max(1));
                let before = self.cert_not_after.swap(secs, Ordering::Relaxed);
                if before != secs
                    && !self.cancel.is_cancelled()
                    && let Some(tx) = lock(&self.engine.certificates).as_ref()
                {
                    // A closed channel only means nobody listens any more.
                    let _ = tx.send(CertificateChange {
                        owner: self.owner.clone(),
                        target: self.id.clone(),
                        not_after,
                    });
                }
            }
            let from = self.tracker.health().state;
            let changed = self.tracker.observe(&outcome, SystemTime::now());
            let transitioned = changed.is_some();
            if let Some(health) = changed {
                let mut shared = lock(&self.health);
                if self.cancel.is_cancelled() {
                    return;
                }
                *shared = health.clone();
                // Sent under the lock so that stopping waits for it; an
                // unbounded send never blocks. A closed channel only means
                // nobody listens any more.
                let _ = self.engine.transitions.send(Transition {
                    owner: self.owner.clone(),
                    target: self.id.clone(),
                    from,
                    to: health,
                });
            }
            let now = Instant::now();
            match self.spec.intervals.edge_period {
                Some(edge) if transitioned => {
                    // The schedule restarts from the confirmation probe.
                    grid = after(now, edge);
                    due = grid;
                }
                _ => {
                    let p = match self.tracker.health().state {
                        HealthState::NotReady => unhealthy_period.unwrap_or(period),
                        HealthState::Pending | HealthState::Ready => period,
                    };
                    grid = next_tick(grid, p, now);
                    due = after(grid, jitter_percent(p, percent));
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
