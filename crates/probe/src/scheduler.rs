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
//! Stopping a target (removal, a changed spec, shutdown) takes that target's
//! health lock while cancelling, and a worker publishes under the same lock
//! after checking for cancellation. So once `sync`, `remove`, `retain` or
//! `shutdown` returns, a stopped worker can neither overwrite the health its
//! successor inherited nor send another transition.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::probe::{Probe, ProbeKind, Prober, Verdict};
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
    pub probe: Probe,
    pub target_port: u16,
    pub period: Duration,
    pub timeout: Duration,
    pub thresholds: Thresholds,
    /// Wait before the first probe of a new (unseeded) target.
    pub initial_delay: Duration,
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

/// Told about every finished probe; used for metrics. Called from the
/// workers, so it must be quick and must not block.
pub trait Observer: Send + Sync + 'static {
    /// `lateness` is how long after its scheduled time the probe started: a
    /// growing value means the runtime is overloaded.
    fn probe_finished(
        &self,
        kind: ProbeKind,
        verdict: Verdict,
        latency: Duration,
        lateness: Duration,
    );
}

struct Target {
    spec: TargetSpec,
    health: Arc<Mutex<Health>>,
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
    prober: Prober,
    observer: Arc<dyn Observer>,
    transitions: mpsc::UnboundedSender<Transition<K>>,
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
    /// probe. Transitions arrive on the returned receiver; the controller
    /// reacts to them instead of polling, so a quiet fleet costs nothing.
    pub fn new(
        prober: Prober,
        observer: Arc<dyn Observer>,
    ) -> (Self, mpsc::UnboundedReceiver<Transition<K>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Inner {
            owners: Mutex::new(HashMap::new()),
            root: CancellationToken::new(),
            prober,
            observer,
            transitions: tx,
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
    ///   the new spec (counters reset), probing at once;
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
                    *existing = self.spawn(owner, &id, spec, tracker, Duration::ZERO);
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
        let worker = Worker {
            owner: owner.clone(),
            id: id.clone(),
            spec: spec.clone(),
            tracker,
            health: health.clone(),
            cancel: cancel.clone(),
            prober: self.inner.prober.clone(),
            observer: self.inner.observer.clone(),
            transitions: self.inner.transitions.clone(),
        };
        tokio::spawn(worker.run(delay));
        Target {
            spec,
            health,
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
/// targets over one period.
fn jitter(period: Duration) -> Duration {
    let millis = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rand::rng().random_range(0..millis))
}

struct Worker<K> {
    owner: K,
    id: TargetId,
    spec: TargetSpec,
    tracker: ThresholdTracker,
    health: Arc<Mutex<Health>>,
    cancel: CancellationToken,
    prober: Prober,
    observer: Arc<dyn Observer>,
    transitions: mpsc::UnboundedSender<Transition<K>>,
}

impl<K: Clone + Send + 'static> Worker<K> {
    async fn run(mut self, delay: Duration) {
        let addr = SocketAddr::new(self.id.host, self.spec.target_port);
        let period = self.spec.period.max(Duration::from_millis(1));
        let mut scheduled = after(Instant::now(), delay);
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep_until(scheduled) => {}
            }
            let started = Instant::now();
            let lateness = started.saturating_duration_since(scheduled);
            let outcome = tokio::select! {
                () = self.cancel.cancelled() => return,
                outcome = self.prober.probe(&self.spec.probe, addr, self.spec.timeout) => outcome,
            };
            self.observer.probe_finished(
                self.spec.probe.kind(),
                outcome.verdict,
                outcome.latency,
                lateness,
            );
            let from = self.tracker.health().state;
            if let Some(health) = self.tracker.observe(&outcome, SystemTime::now()) {
                let mut shared = lock(&self.health);
                if self.cancel.is_cancelled() {
                    return;
                }
                *shared = health.clone();
                // Sent under the lock so that stopping waits for it; an
                // unbounded send never blocks. A closed channel only means
                // nobody listens any more.
                let _ = self.transitions.send(Transition {
                    owner: self.owner.clone(),
                    target: self.id.clone(),
                    from,
                    to: health,
                });
            }
            scheduled = next_tick(scheduled, period, Instant::now());
        }
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
