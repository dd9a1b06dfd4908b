//! Fail open: the pure stage between the probe engine and the builder that
//! decides, per port, whether failing hosts really leave rotation.
//!
//! By default a failing host leaves rotation even when that leaves its
//! port with no ready host (fail closed). A probe that fails on every host
//! at once, though, more often means the probe or the path to the hosts is
//! broken than every host; for such ports an object can ask to keep the
//! hosts that were ready last ([`FailOpenPolicy`]):
//! - `allHostsDown: KeepLastReady`: when every probed host of a port fails;
//! - `panicThresholdPercent: N`: when fewer than N % of them are healthy.
//!
//! Independently, the fleet guard ([`crate::fleet_guard`]) may hold
//! targets ready whose failure it does not believe (too many of the
//! controller's targets failed at once).
//!
//! "Ready last" is what our live EndpointSlices list as ready, so the kept
//! set survives a controller restart, and a host removed from the spec is
//! never kept (it is not in the plan). The probe health itself is left
//! alone for the status: only the health handed to the builder changes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::events::{Event, EventType};
use kube_endpoints_api::{
    CONDITION_FAILING_OPEN, CONDITION_FLEET_GUARD, ClusterEndpointStatus, Condition,
};
use kube_endpoints_probe::{Health, HealthState, TargetId};

use crate::builder;
use crate::plan::{Plan, PortPlan};
use crate::status::{NOTE_MAX, quote_first, truncate};

/// Condition reason: every probed host of a port fails (`KeepLastReady`).
pub const REASON_ALL_HOSTS_DOWN: &str = "AllHostsDown";
/// Condition reason: fewer healthy hosts than `panicThresholdPercent`.
pub const REASON_PANIC_THRESHOLD: &str = "PanicThreshold";
/// Event reason when no port fails open any more.
pub const REASON_FAIL_OPEN_ENDED: &str = "FailOpenEnded";
/// Condition (and Warning Event) reason while the fleet guard holds some of
/// the object's hosts ready.
pub const REASON_FLEET_GUARD_FROZEN: &str = "FleetGuardFrozen";
/// Event reason when the fleet guard lets go of the object.
pub const REASON_FLEET_GUARD_THAWED: &str = "FleetGuardThawed";

/// Ports quoted in a condition's message.
const PORTS_QUOTED: usize = 3;

/// One port's fail-open policy (resolved from the object and the port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FailOpenPolicy {
    /// `allHostsDown: KeepLastReady`.
    pub keep_last_ready: bool,
    /// `panicThresholdPercent`; 0 is off.
    pub panic_threshold_percent: u8,
}

impl FailOpenPolicy {
    /// Why this policy keeps the last ready hosts of a port with `healthy`
    /// of `probed` hosts healthy, or `None` when it does not.
    pub fn trigger(self, healthy: usize, probed: usize) -> Option<&'static str> {
        if probed == 0 {
            return None;
        }
        if self.keep_last_ready && healthy == 0 {
            return Some(REASON_ALL_HOSTS_DOWN);
        }
        let threshold = usize::from(self.panic_threshold_percent);
        (healthy * 100 < threshold * probed).then_some(REASON_PANIC_THRESHOLD)
    }
}

/// What the stage decided for one probed port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortReport {
    pub port: String,
    /// Hosts the probes find healthy, of `probed`.
    pub healthy: usize,
    pub probed: usize,
    /// Why the policy keeps the last ready hosts ([`REASON_ALL_HOSTS_DOWN`],
    /// [`REASON_PANIC_THRESHOLD`]), or `None`.
    pub triggered: Option<&'static str>,
    /// Failing hosts kept in rotation by the policy, sorted.
    pub kept: Vec<IpAddr>,
    /// Failing hosts held in rotation by the fleet guard, sorted.
    pub held: Vec<IpAddr>,
}

impl PortReport {
    /// Whether the policy keeps failing hosts in rotation right now.
    pub fn failing_open(&self) -> bool {
        self.triggered.is_some() && !self.kept.is_empty()
    }
}

/// The health the builder uses, and what was decided per probed port.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub health: BTreeMap<TargetId, Health>,
    /// Probed ports, in plan order.
    pub ports: Vec<PortReport>,
}

/// Apply the ports' policies and the fleet guard's `held` targets to the
/// probe `health`, given our `live` slices of the object (which say what
/// was ready last).
pub fn apply(
    plan: &Plan,
    health: &BTreeMap<TargetId, Health>,
    live: &[&EndpointSlice],
    held: &BTreeSet<TargetId>,
) -> Outcome {
    let no_policy = plan
        .ports
        .iter()
        .all(|p| p.fail_open == FailOpenPolicy::default());
    // The common case reads no slice.
    let last_ready = if no_policy {
        BTreeMap::new()
    } else {
        builder::seed_from_slices(plan, live.iter().copied())
    };
    decide(plan, health, &last_ready, held)
}

/// [`apply`], with what was ready last given per target.
pub fn decide(
    plan: &Plan,
    health: &BTreeMap<TargetId, Health>,
    last_ready: &BTreeMap<TargetId, bool>,
    held: &BTreeSet<TargetId>,
) -> Outcome {
    let mut serving = health.clone();
    let mut ports = Vec::new();
    for port in plan.ports.iter().filter(|p| p.probe.is_some()) {
        let report = decide_port(port, health, last_ready, held);
        for host in report.kept.iter().chain(&report.held) {
            let id = TargetId {
                port: port.name.clone(),
                host: *host,
            };
            if let Some(h) = serving.get_mut(&id) {
                h.state = HealthState::Ready;
            }
        }
        ports.push(report);
    }
    Outcome {
        health: serving,
        ports,
    }
}

fn decide_port(
    port: &PortPlan,
    health: &BTreeMap<TargetId, Health>,
    last_ready: &BTreeMap<TargetId, bool>,
    held: &BTreeSet<TargetId>,
) -> PortReport {
    let id = |host: IpAddr| TargetId {
        port: port.name.clone(),
        host,
    };
    // Only hosts with a verdict can be kept or held: a target the probe
    // engine does not know has nothing to keep.
    let failing: Vec<IpAddr> = port
        .hosts
        .iter()
        .copied()
        .filter(|h| {
            health
                .get(&id(*h))
                .is_some_and(|h| h.state != HealthState::Ready)
        })
        .collect();
    let probed = port.hosts.len();
    let healthy = port
        .hosts
        .iter()
        .filter(|h| {
            health
                .get(&id(**h))
                .is_some_and(|h| h.state == HealthState::Ready)
        })
        .count();
    let triggered = port.fail_open.trigger(healthy, probed);
    let kept: Vec<IpAddr> = match triggered {
        Some(_) => failing
            .iter()
            .copied()
            .filter(|h| last_ready.get(&id(*h)) == Some(&true))
            .collect(),
        None => Vec::new(),
    };
    let held = failing
        .into_iter()
        .filter(|h| !kept.contains(h) && held.contains(&id(*h)))
        .collect();
    PortReport {
        port: port.name.clone(),
        healthy,
        probed,
        triggered,
        kept,
        held,
    }
}

/// Correct the `seed` new targets start from ([`crate::builder::seed`]):
/// while a port fails open, our slices list its kept hosts ready although
/// they fail, so they would start ready, and the port would look healthy
/// (and stop failing open, then start again) until their first probes.
/// Where the `previous` status says the object was failing open, the hosts
/// it lists unhealthy on a port with a fail-open policy start failing
/// instead; the policy keeps them in rotation as before.
pub fn reseed(
    seed: &mut BTreeMap<TargetId, bool>,
    plan: &Plan,
    previous: Option<&ClusterEndpointStatus>,
) {
    let Some(previous) = previous else {
        return;
    };
    let failing_open = previous
        .conditions
        .iter()
        .any(|c| c.type_ == CONDITION_FAILING_OPEN && c.status == "True");
    if !failing_open {
        return;
    }
    for status in &previous.ports {
        let Some(port) = plan.ports.iter().find(|p| p.name == status.name) else {
            continue;
        };
        if port.fail_open == FailOpenPolicy::default() {
            continue;
        }
        for unhealthy in &status.unhealthy {
            if let Ok(host) = unhealthy.host.parse::<IpAddr>() {
                let id = TargetId {
                    port: port.name.clone(),
                    host,
                };
                if let Some(ready) = seed.get_mut(&id) {
                    *ready = false;
                }
            }
        }
    }
}

impl Outcome {
    /// The `FailingOpen` and `FleetGuard` conditions (unstamped), each only
    /// while true: they describe an exception, and their absence is the
    /// normal state.
    pub fn conditions(&self) -> Vec<Condition> {
        let mut conditions = Vec::new();
        let open: Vec<&PortReport> = self.ports.iter().filter(|p| p.failing_open()).collect();
        if !open.is_empty() {
            // All hosts down is the graver news when both apply.
            let reason = if open
                .iter()
                .any(|p| p.triggered == Some(REASON_ALL_HOSTS_DOWN))
            {
                REASON_ALL_HOSTS_DOWN
            } else {
                REASON_PANIC_THRESHOLD
            };
            let parts: Vec<String> = open
                .iter()
                .map(|p| {
                    format!(
                        "port {} keeps {} last-ready host(s) with {}/{} healthy ({})",
                        p.port,
                        p.kept.len(),
                        p.healthy,
                        p.probed,
                        p.triggered.unwrap_or_default()
                    )
                })
                .collect();
            conditions.push(condition(
                CONDITION_FAILING_OPEN,
                reason,
                format!(
                    "failing open: {}",
                    quote_first(&parts, PORTS_QUOTED, "; ", "; and {} more port(s)")
                ),
            ));
        }
        let held: Vec<String> = self
            .ports
            .iter()
            .filter(|p| !p.held.is_empty())
            .map(|p| format!("port {}: {} host(s)", p.port, p.held.len()))
            .collect();
        if !held.is_empty() {
            conditions.push(condition(
                CONDITION_FLEET_GUARD,
                REASON_FLEET_GUARD_FROZEN,
                format!(
                    "the fleet guard is frozen (too many of the controller's targets failed at once) and holds failing hosts in rotation: {}",
                    quote_first(&held, PORTS_QUOTED, ", ", ", and {} more port(s)")
                ),
            ));
        }
        conditions
    }
}

fn condition(type_: &str, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: "True".to_string(),
        reason: reason.to_string(),
        message,
        last_transition_time: String::new(),
        last_heartbeat_time: None,
    }
}

/// The Events for the `FailingOpen` and `FleetGuard` conditions between
/// what was announced (`before`) and `now`: a Warning when one appears (or
/// changes its reason), a Normal Event when it goes.
pub fn events(before: &[Condition], now: &[Condition]) -> Vec<Event> {
    let find = |list: &[Condition], type_: &str| -> Option<Condition> {
        list.iter()
            .find(|c| c.type_ == type_ && c.status == "True")
            .cloned()
    };
    let mut events = Vec::new();
    for (type_, ended, ended_note) in [
        (
            CONDITION_FAILING_OPEN,
            REASON_FAIL_OPEN_ENDED,
            "no port fails open any more: failing hosts leave rotation again",
        ),
        (
            CONDITION_FLEET_GUARD,
            REASON_FLEET_GUARD_THAWED,
            "the fleet guard no longer holds hosts of this object: probe results apply again",
        ),
    ] {
        match (find(before, type_), find(now, type_)) {
            (before, Some(now)) if before.as_ref().is_none_or(|b| b.reason != now.reason) => {
                events.push(Event {
                    type_: EventType::Warning,
                    reason: now.reason.clone(),
                    note: Some(truncate(&now.message, NOTE_MAX)),
                    action: type_.to_string(),
                    secondary: None,
                });
            }
            (Some(_), None) => events.push(Event {
                type_: EventType::Normal,
                reason: ended.to_string(),
                note: Some(ended_note.to_string()),
                action: type_.to_string(),
                secondary: None,
            }),
            _ => {}
        }
    }
    events
}

#[cfg(test)]
#[path = "fail_open_tests.rs"]
mod tests;
