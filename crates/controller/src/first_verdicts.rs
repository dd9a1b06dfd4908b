//! Holding back a new object's EndpointSlices, Endpoints and status until
//! its hosts' first probe verdicts are in (pure).
//!
//! A new object's hosts have no verdict yet. Written at once, they would be
//! listed not ready (status `Pending`) and rewritten a moment later when
//! the first probes answer: every object created would cost its slices,
//! Endpoints and status twice. Instead, while nothing of the object is
//! listed, the reconciler writes its Service at once and holds the rest
//! back until the first verdicts are in, for at most one probe timeout: a
//! host's first verdict is a transition, which triggers a reconcile anyway,
//! and [`hold`]'s wait requeues one for when the last window closes. A host
//! whose probe takes the whole timeout is then written as its result if it
//! has one, or as not ready (still pending); so a first listing comes at
//! most one timeout after the targets were started, never later.
//!
//! Only an object of which nothing is listed is held: no slice of ours and
//! no Endpoints of its name. Targets seeded from what is listed (a restart,
//! a failover, an adoption, a migration) have a state and are written at
//! once; and an object that already lists hosts is written at once, so that
//! no other host's change waits for a new host's first probe.

use std::time::{Duration, SystemTime};

use kube_endpoints_probe::{Health, HealthState};

/// A wait shorter than this is not worth a requeue: write now.
pub const MIN_HOLD: Duration = Duration::from_millis(10);

/// How long to hold the object's slices, Endpoints and status back, or
/// `None` to write them now. `listed`: whether any slice of ours or any
/// Endpoints of the object's name exists; `targets`: the health of each
/// probed target with its probe timeout.
///
/// Held while nothing is listed and some target is pending (no verdict,
/// no seed) within one timeout of when it started: until the last such
/// window closes, never longer than that target's timeout.
pub fn hold<'a>(
    listed: bool,
    targets: impl IntoIterator<Item = (&'a Health, Duration)>,
    now: SystemTime,
) -> Option<Duration> {
    if listed {
        return None;
    }
    targets
        .into_iter()
        .filter(|(health, _)| health.state == HealthState::Pending)
        .filter_map(|(health, timeout)| {
            let deadline = health.since.checked_add(timeout)?;
            // A clock that stepped back cannot stretch the wait.
            Some(deadline.duration_since(now).ok()?.min(timeout))
        })
        .max()
        .filter(|wait| *wait >= MIN_HOLD)
}

#[cfg(test)]
#[path = "first_verdicts_tests.rs"]
mod tests;
