//! One long-lived worker per target, each on its own fixed schedule.
//!
//! Workers keep the threshold state across periods and publish only
//! transitions, so the rest of the system does work only when a host changes.
//! A slow or silent host delays nobody but itself, and probes of one target
//! never overlap: a worker waits for its probe before scheduling the next.

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

/// How to probe a target.
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

/// A target changed state.
#[derive(Clone, Debug)]
pub struct Transition<K> {
    pub owner: K,
    pub target: TargetId,
    pub from: HealthState,
    pub to: Health,
}

/// Told about every probe; used for metrics.
pub trait Observer: Send + Sync + 'static {
    fn probe_finished(&self, kind: ProbeKind, verdict: Verdict, latency: Duration, lateness: Duration);
}

struct Target {
    spec: TargetSpec,
    health: Arc<Mutex<Health>>,
    cancel: CancellationToken,
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
    pub fn new(prober: Prober, observer: Arc<dyn Observer>) -> (Self, mpsc::UnboundedReceiver<Transition<K>>) {
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

    /// Make `owner`'s targets exactly `targets` (see the crate docs for what
    /// is kept). Must be called within a Tokio runtime.
    pub fn sync(&self, owner: &K, targets: BTreeMap<TargetId, TargetSpec>, seed: impl Fn(&TargetId) -> Option<bool>) {
        let now = SystemTime::now();
        let mut owners = lock(&self.inner.owners);
        let current = owners.entry(owner.clone()).or_default();
        current.retain(|id, target| {
            let keep = targets.contains_key(id);
            if !keep {
                target.cancel.cancel();
            }
            keep
        });
        for (id, spec) in targets {
            match current.get_mut(&id) {
                Some(existing) if existing.spec == spec => {}
                Some(existing) => {
                    // Settings changed: keep the verdict, restart the worker
                    // with fresh counters and probe at once.
                    existing.cancel.cancel();
                    let health = lock(&existing.health).clone();
                    let tracker = ThresholdTracker::with_health(spec.thresholds, health);
                    *existing = self.spawn(owner, &id, spec, tracker, Duration::ZERO);
                }
                None => {
                    let (tracker, delay) = match seed(&id) {
                        Some(ready) => {
                            let jitter = jitter(spec.period);
                            (ThresholdTracker::new_seeded(spec.thresholds, ready, now), jitter)
                        }
                        None => (ThresholdTracker::new_pending(spec.thresholds, now), spec.initial_delay),
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

    fn spawn(&self, owner: &K, id: &TargetId, spec: TargetSpec, tracker: ThresholdTracker, delay: Duration) -> Target {
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
        Target { spec, health, cancel }
    }

    /// Stop all of `owner`'s workers and forget their state.
    pub fn remove(&self, owner: &K) {
        if let Some(targets) = lock(&self.inner.owners).remove(owner) {
            for t in targets.values() {
                t.cancel.cancel();
            }
        }
    }

    /// Keep only the owners for which `keep` is true.
    pub fn retain(&self, keep: impl Fn(&K) -> bool) {
        lock(&self.inner.owners).retain(|owner, targets| {
            let k = keep(owner);
            if !k {
                for t in targets.values() {
                    t.cancel.cancel();
                }
            }
            k
        });
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

    pub fn target_count(&self) -> usize {
        lock(&self.inner.owners).values().map(HashMap::len).sum()
    }

    /// Stop every worker (lost leadership, or exit).
    pub fn shutdown(&self) {
        self.inner.root.cancel();
        lock(&self.inner.owners).clear();
    }
}

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
        let mut scheduled = Instant::now() + delay;
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
            self.observer
                .probe_finished(self.spec.probe.kind(), outcome.verdict, outcome.latency, lateness);
            let from = self.tracker.health().state;
            if let Some(health) = self.tracker.observe(&outcome, SystemTime::now()) {
                if self.cancel.is_cancelled() {
                    return;
                }
                *lock(&self.health) = health.clone();
                let _ = self.transitions.send(Transition {
                    owner: self.owner.clone(),
                    target: self.id.clone(),
                    from,
                    to: health,
                });
            }
            // Fixed schedule; ticks missed by a slow probe are skipped, never
            // run back to back.
            scheduled += period;
            let now = Instant::now();
            if scheduled <= now {
                let behind = now.duration_since(scheduled).as_nanos() / period.as_nanos();
                let skip = u32::try_from(behind + 1).unwrap_or(u32::MAX);
                scheduled += period * skip;
            }
        }
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
