//! Status: what a ClusterEndpoint reports, computed (pure) from its plan, a
//! health snapshot and the outcome of the writes the reconciler made.
//!
//! Times are kept from the previous status wherever the thing they date did
//! not change, so equal input gives an equal status and the reconciler can
//! skip the status write.

use std::collections::BTreeMap;

use kube_endpoints_api::{
    CONDITION_HOSTS_ALLOWED, CONDITION_INITIALIZED, CONDITION_READY, CONDITION_SYNC_ENDPOINT,
    CONDITION_SYNC_SERVICE, ClusterEndpointStatus, Condition, DeniedHost, MAX_UNHEALTHY_LISTED,
    Phase, PortStatus, UnhealthyHost,
};
use kube_endpoints_probe::{Health, HealthState, TargetId};

use crate::builder::is_ready;
use crate::plan::{InvalidSpec, Plan, PortPlan};

/// Outcome of one sync step (the Service; the EndpointSlices and Endpoints),
/// as reported in its condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    Done,
    Failed { reason: String, message: String },
}

impl SyncOutcome {
    pub fn failed(reason: &str, message: impl Into<String>) -> Self {
        SyncOutcome::Failed {
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    pub fn is_failed(&self) -> bool {
        matches!(self, SyncOutcome::Failed { .. })
    }
}

/// Denied hosts listed per port in `status.ports[].denied`; the
/// `HostsAllowed` condition counts them all. Keeps the status of an object
/// with thousands of denied hosts far below the apiserver's size limit.
pub const MAX_DENIED_LISTED: usize = 20;

/// Denials quoted in the `HostsAllowed` condition's message.
const DENIALS_QUOTED: usize = 3;

/// Why a spec is not acted on at all (nothing probed, nothing synced):
/// the reason and message of its `Initialized` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotInitialized {
    /// Stable, CamelCase (`InvalidSpec`, `BudgetExceeded`).
    pub reason: &'static str,
    pub message: String,
}

impl From<&InvalidSpec> for NotInitialized {
    fn from(invalid: &InvalidSpec) -> Self {
        NotInitialized {
            reason: "InvalidSpec",
            message: invalid.to_string(),
        }
    }
}

/// A valid spec and what syncing its objects did.
#[derive(Clone, Debug)]
pub struct Synced<'a> {
    pub plan: &'a Plan,
    pub service: SyncOutcome,
    pub endpoints: SyncOutcome,
    /// Conditions of the fail-open stage ([`crate::fail_open`]), present
    /// only while true; stamped here like the rest.
    pub fail_open: Vec<Condition>,
}

/// Everything that decides the status.
pub struct StatusInput<'a> {
    pub generation: Option<i64>,
    /// What was synced, or why the spec is not acted on (then nothing was).
    pub spec: Result<Synced<'a>, NotInitialized>,
    pub health: &'a BTreeMap<TargetId, Health>,
    pub previous: Option<&'a ClusterEndpointStatus>,
    /// RFC 3339, seconds precision.
    pub now: &'a str,
}

/// The status for this input.
pub fn status(input: &StatusInput<'_>) -> ClusterEndpointStatus {
    let (phase, ready, ports) = match &input.spec {
        Ok(synced) => {
            let (phase, ready, ports) = health_summary(synced.plan, input);
            (phase, Some(ready), ports)
        }
        Err(_) => (Phase::UnHealthy, None, Vec::new()),
    };
    let mut conditions = conditions(&input.spec, phase, &ports);
    if let Ok(synced) = &input.spec {
        conditions.extend(synced.fail_open.iter().cloned());
    }
    let previous: BTreeMap<&str, &Condition> = input
        .previous
        .map(|s| s.conditions.iter().map(|c| (c.type_.as_str(), c)).collect())
        .unwrap_or_default();
    for c in &mut conditions {
        stamp(c, previous.get(c.type_.as_str()).copied(), input.now);
    }
    ClusterEndpointStatus {
        observed_generation: input.generation,
        phase: Some(phase),
        ready,
        conditions,
        ports,
    }
}

/// Phase, the `ready/total` summary and the per-port entries.
fn health_summary(plan: &Plan, input: &StatusInput<'_>) -> (Phase, String, Vec<PortStatus>) {
    let previous_ports: BTreeMap<&str, &PortStatus> = input
        .previous
        .map(|s| s.ports.iter().map(|p| (p.name.as_str(), p)).collect())
        .unwrap_or_default();
    let ports: Vec<PortStatus> = plan
        .ports
        .iter()
        .map(|p| port_status(p, input, previous_ports.get(p.name.as_str()).copied()))
        .collect();
    let pending = plan.ports.iter().any(|p| {
        p.probe.is_some()
            && p.hosts.iter().any(|h| {
                let id = TargetId {
                    port: p.name.clone(),
                    host: *h,
                };
                input
                    .health
                    .get(&id)
                    .is_none_or(|h| h.state == HealthState::Pending)
            })
    });
    let ready: i32 = ports.iter().map(|p| p.ready).sum();
    let total: i32 = ports.iter().map(|p| p.total).sum();
    let phase = if ready == total {
        Phase::Healthy
    } else if pending {
        Phase::Pending
    } else {
        Phase::UnHealthy
    };
    (phase, format!("{ready}/{total}"), ports)
}

/// The four conditions, unstamped.
fn conditions(
    spec: &Result<Synced<'_>, NotInitialized>,
    phase: Phase,
    ports: &[PortStatus],
) -> Vec<Condition> {
    let synced = match spec {
        Ok(synced) => synced,
        Err(NotInitialized { reason, message }) => {
            let not_synced = match *reason {
                "InvalidSpec" => "not synced: the spec is invalid",
                _ => "not synced: see the Initialized condition",
            };
            return vec![
                cond(CONDITION_INITIALIZED, false, reason, message),
                cond(CONDITION_SYNC_SERVICE, false, reason, not_synced),
                cond(CONDITION_SYNC_ENDPOINT, false, reason, not_synced),
                cond(CONDITION_READY, false, reason, message),
            ];
        }
    };
    let sync_cond = |type_, ok_reason, ok_message, outcome: &SyncOutcome| match outcome {
        SyncOutcome::Done => cond(type_, true, ok_reason, ok_message),
        SyncOutcome::Failed { reason, message } => cond(type_, false, reason, message),
    };
    let ready = match (&synced.service, &synced.endpoints, phase) {
        (SyncOutcome::Failed { reason, message }, _, _)
        | (SyncOutcome::Done, SyncOutcome::Failed { reason, message }, _) => {
            cond(CONDITION_READY, false, reason, message)
        }
        (SyncOutcome::Done, SyncOutcome::Done, Phase::Healthy) => cond(
            CONDITION_READY,
            true,
            "Ready",
            "ClusterEndpoint is available now",
        ),
        (SyncOutcome::Done, SyncOutcome::Done, Phase::Pending) => cond(
            CONDITION_READY,
            false,
            "Pending",
            "waiting for the first probe results",
        ),
        (SyncOutcome::Done, SyncOutcome::Done, Phase::UnHealthy) => {
            let not_ready: Vec<String> = ports
                .iter()
                .filter(|p| p.ready < p.total)
                .map(|p| format!("{} {}/{}", p.name, p.ready, p.total))
                .collect();
            cond(
                CONDITION_READY,
                false,
                "HostsUnhealthy",
                &format!(
                    "some hosts are out of rotation (ready: {})",
                    not_ready.join(", ")
                ),
            )
        }
    };
    vec![
        cond(
            CONDITION_INITIALIZED,
            true,
            "Initialized",
            "cluster endpoints has been initialized",
        ),
        sync_cond(
            CONDITION_SYNC_SERVICE,
            "SyncServiceReady",
            "sync service successfully",
            &synced.service,
        ),
        sync_cond(
            CONDITION_SYNC_ENDPOINT,
            "SyncEndpointReady",
            "sync endpoint successfully",
            &synced.endpoints,
        ),
        ready,
        hosts_allowed(synced.plan),
    ]
    .into_iter()
    .chain(crate::names::names_resolved(synced.plan))
    .collect()
}

/// `HostsAllowed`: false while the address policy denies any listed host,
/// counting them all and quoting the first few.
fn hosts_allowed(plan: &Plan) -> Condition {
    let denied: Vec<&crate::policy::Denial> = plan.ports.iter().flat_map(|p| &p.denied).collect();
    if denied.is_empty() {
        return cond(
            CONDITION_HOSTS_ALLOWED,
            true,
            "HostsAllowed",
            "every host is allowed by the address policy",
        );
    }
    let mut quoted: Vec<&str> = denied.iter().map(|d| d.message.as_str()).collect();
    quoted.dedup();
    let message = format!(
        "{} host-port(s) denied by the address policy are never probed nor written: {}",
        denied.len(),
        quote_first(
            &quoted,
            DENIALS_QUOTED,
            "; ",
            "; and {} more (see status.ports[].denied)"
        )
    );
    cond(CONDITION_HOSTS_ALLOWED, false, "HostsDenied", &message)
}

/// The first `max` of `items` joined by `separator`, then, if any are left
/// out, `more` with `{}` replaced by how many.
pub(crate) fn quote_first(
    items: &[impl AsRef<str>],
    max: usize,
    separator: &str,
    more: &str,
) -> String {
    let mut quoted = items
        .iter()
        .take(max)
        .map(AsRef::as_ref)
        .collect::<Vec<&str>>()
        .join(separator);
    let left_out = items.len().saturating_sub(max);
    if left_out > 0 {
        quoted.push_str(&more.replace("{}", &left_out.to_string()));
    }
    quoted
}

fn port_status(
    port: &PortPlan,
    input: &StatusInput<'_>,
    previous: Option<&PortStatus>,
) -> PortStatus {
    let previous_unhealthy: BTreeMap<&str, &UnhealthyHost> = previous
        .map(|p| p.unhealthy.iter().map(|u| (u.host.as_str(), u)).collect())
        .unwrap_or_default();
    let mut ready = 0;
    let mut unhealthy = Vec::new();
    let mut omitted = 0;
    for host in &port.hosts {
        if is_ready(port, *host, input.health) {
            ready += 1;
            continue;
        }
        let id = TargetId {
            port: port.name.clone(),
            host: *host,
        };
        let Some(health) = input
            .health
            .get(&id)
            .filter(|h| h.state == HealthState::NotReady)
        else {
            continue; // pending: no verdict yet, so nothing to report
        };
        if unhealthy.len() == MAX_UNHEALTHY_LISTED {
            omitted += 1;
            continue;
        }
        let host = host.to_string();
        // A host that was already listed keeps its entry: it has been out of
        // rotation all along, and a restart must not rewrite the status.
        let entry = match previous_unhealthy.get(host.as_str()) {
            Some(prev) => (*prev).clone(),
            None => UnhealthyHost {
                since: rfc3339(health.since),
                message: health.message.clone(),
                host,
            },
        };
        unhealthy.push(entry);
    }
    PortStatus {
        name: port.name.clone(),
        probe: port.probe_label().to_string(),
        ready,
        total: i32::try_from(port.hosts.len() + port.denied.len()).unwrap_or(i32::MAX),
        unhealthy,
        unhealthy_omitted: (omitted > 0).then_some(omitted),
        denied: port
            .denied
            .iter()
            .take(MAX_DENIED_LISTED)
            .map(|d| DeniedHost {
                host: d.host.to_string(),
                message: d.message.clone(),
            })
            .collect(),
        // Filled in by `certificates::fill`.
        certificates: Vec::new(),
        certificates_omitted: None,
        names: crate::names::name_statuses(port, previous),
        drained: vec![],
        drained_omitted: None,
        backups_in_rotation: vec![],
    }
}

fn cond(type_: &str, ok: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time: String::new(),
        last_heartbeat_time: None,
    }
}

/// Fill in the times: the transition time moves only when `status` flips;
/// the heartbeat moves only when the condition is rewritten for a change.
fn stamp(c: &mut Condition, previous: Option<&Condition>, now: &str) {
    match previous {
        Some(p) if p.status == c.status && p.reason == c.reason && p.message == c.message => {
            c.last_transition_time = p.last_transition_time.clone();
            c.last_heartbeat_time = p.last_heartbeat_time.clone();
        }
        Some(p) if p.status == c.status => {
            c.last_transition_time = p.last_transition_time.clone();
            c.last_heartbeat_time = Some(now.to_string());
        }
        _ => {
            c.last_transition_time = now.to_string();
            c.last_heartbeat_time = Some(now.to_string());
        }
    }
}

/// RFC 3339 at seconds precision, the form Kubernetes uses for times.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Longest Event note we send; events.k8s.io rejects notes over 1 KiB.
pub const NOTE_MAX: usize = 1000;

/// `s` cut to at most `max` bytes (on a character boundary), marked with "…".
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
