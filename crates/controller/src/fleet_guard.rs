//! The fleet guard: when a large share of ALL the controller's targets
//! turn from healthy to failing within one window, the likelier cause is
//! the controller's own network (a partition, a broken route, a firewall
//! change), not that many hosts died at once. Rather than empty every
//! Service, the guard freezes: failures that arrived in the window (and
//! while frozen) are not applied, the affected objects keep their
//! endpoints and say so (condition `FleetGuard`, [`crate::fail_open`]),
//! and a metric shows it. It thaws when the share of those targets still
//! failing drops to the threshold or below; the probes' real verdicts then
//! apply.
//!
//! [`Guard`] is the pure state machine (time comes in as an argument);
//! [`FleetGuard`] is the thin shared shell around it that the probe
//! transitions feed and the reconciles read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube_endpoints_probe::{HealthState, TargetId};
use tokio::sync::watch;

/// How the guard trips (`--fleet-guard-percent`, `--fleet-guard-min-targets`,
/// `--fleet-guard-window-seconds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetGuardSettings {
    /// Trip when more than this share (percent) of all targets turned
    /// failing within `window`; 0 switches the guard off.
    pub percent: u8,
    /// Never trip with fewer targets than this: a small controller's
    /// handful of hosts failing together is no evidence of a partition.
    pub min_targets: usize,
    pub window: Duration,
}

/// What one observation changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    None,
    Tripped,
    Thawed,
}

/// The state machine, over objects keyed by `K`.
#[derive(Clone, Debug)]
pub struct Guard<K> {
    settings: FleetGuardSettings,
    /// Targets that turned from ready to failing and have not recovered,
    /// with when. While thawed only those within the window are kept;
    /// while frozen, those are the targets held ready.
    failing: BTreeMap<(K, TargetId), Instant>,
    frozen: bool,
}

impl<K: Clone + Ord> Guard<K> {
    pub fn new(settings: FleetGuardSettings) -> Self {
        Guard {
            settings,
            failing: BTreeMap::new(),
            frozen: false,
        }
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Targets currently counted as having failed together.
    pub fn failing_count(&self) -> usize {
        self.failing.len()
    }

    /// A target of `owner` went `from` → `to` at `now`, out of `total`
    /// targets of the controller.
    pub fn observe(
        &mut self,
        owner: K,
        target: TargetId,
        from: HealthState,
        to: HealthState,
        now: Instant,
        total: usize,
    ) -> Change {
        let key = (owner, target);
        match (from, to) {
            (HealthState::Ready, HealthState::NotReady) => {
                self.failing.insert(key, now);
            }
            (_, HealthState::Ready | HealthState::Pending) => {
                self.failing.remove(&key);
            }
            _ => {}
        }
        self.settle(now, total)
    }

    /// `owner` is gone (deleted, or no longer served): its targets count no
    /// more.
    pub fn forget(&mut self, owner: &K, now: Instant, total: usize) -> Change {
        self.failing.retain(|(k, _), _| k != owner);
        self.settle(now, total)
    }

    /// The targets of `owner` held ready (none unless frozen).
    pub fn held(&self, owner: &K) -> BTreeSet<TargetId> {
        if !self.frozen {
            return BTreeSet::new();
        }
        self.failing
            .keys()
            .filter(|(k, _)| k == owner)
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// Trip or thaw as the counts say.
    fn settle(&mut self, now: Instant, total: usize) -> Change {
        if !self.frozen {
            // Failures older than the window were applied long ago and
            // are not part of a simultaneous flip.
            let window = self.settings.window;
            self.failing
                .retain(|_, at| now.saturating_duration_since(*at) <= window);
        }
        let over = self.enabled(total)
            && self.failing.len() * 100 > usize::from(self.settings.percent) * total;
        match (self.frozen, over) {
            (false, true) => {
                self.frozen = true;
                Change::Tripped
            }
            (true, false) => {
                self.frozen = false;
                self.failing.clear();
                Change::Thawed
            }
            _ => Change::None,
        }
    }

    fn enabled(&self, total: usize) -> bool {
        self.settings.percent > 0 && total > 0 && total >= self.settings.min_targets
    }
}

/// The guard shared by every scope of the process: fed by the probe
/// transitions, read by the reconciles. `changes` counts trips and thaws so
/// that every scope can reconcile its objects then.
pub struct FleetGuard<K> {
    guard: Mutex<Guard<K>>,
    changes: watch::Sender<u64>,
}

impl<K: Clone + Ord> FleetGuard<K> {
    pub fn new(settings: FleetGuardSettings) -> Self {
        FleetGuard {
            guard: Mutex::new(Guard::new(settings)),
            changes: watch::Sender::new(0),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Guard<K>) -> T) -> T {
        f(&mut self.guard.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// [`Guard::observe`] at the current time; a trip or thaw is announced
    /// to [`subscribe`](Self::subscribe)rs.
    pub fn observe(
        &self,
        owner: K,
        target: TargetId,
        from: HealthState,
        to: HealthState,
        total: usize,
    ) -> (Change, usize) {
        let (change, failing) = self.with(|g| {
            let change = g.observe(owner, target, from, to, Instant::now(), total);
            (change, g.failing_count())
        });
        self.announce(change);
        (change, failing)
    }

    /// [`Guard::forget`] at the current time.
    pub fn forget(&self, owner: &K, total: usize) -> Change {
        let change = self.with(|g| g.forget(owner, Instant::now(), total));
        self.announce(change);
        change
    }

    pub fn held(&self, owner: &K) -> BTreeSet<TargetId> {
        self.with(|g| g.held(owner))
    }

    pub fn is_frozen(&self) -> bool {
        self.with(|g| g.is_frozen())
    }

    /// Changes whenever the guard trips or thaws.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn announce(&self, change: Change) {
        if change != Change::None {
            self.changes.send_modify(|n| *n += 1);
        }
    }
}

#[cfg(test)]
#[path = "fleet_guard_tests.rs"]
mod tests;
