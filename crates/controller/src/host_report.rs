//! What status and Events say about drained hosts and backups (pure): the
//! drained hosts of each port and who drained them, the backups in
//! rotation, and the Events when either changes (`HostDrained`,
//! `HostUndrained`, `BackupPromoted`, `BackupDemoted`), once per change.

use std::collections::{BTreeMap, BTreeSet};

use kube::runtime::events::{Event, EventType};
use kube_endpoints_api::{ClusterEndpointStatus, DrainedHost, MAX_HOST_ROLES_LISTED};
use kube_endpoints_probe::{Health, TargetId};

use crate::host_roles::{attributes, list_port};
use crate::plan::Plan;
use crate::status::{NOTE_MAX, truncate};

/// Annotation on a ClusterEndpoint in which `kube-endpoints drain` records
/// who drained each host: a JSON object of address to user name.
pub const ANNOTATION_DRAINED_BY: &str = "kube-endpoints.io/drained-by";

/// Who drained which host, from the object's annotations; an annotation
/// that does not parse says nothing (the drain itself is in the spec).
pub fn drained_by(annotations: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    annotations
        .and_then(|a| a.get(ANNOTATION_DRAINED_BY))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// Fill `drained` and `backupsInRotation` of every port of `status`.
pub fn fill(
    status: &mut ClusterEndpointStatus,
    plan: &Plan,
    health: &BTreeMap<TargetId, Health>,
    drained_by: &BTreeMap<String, String>,
) {
    for entry in &mut status.ports {
        let Some(port) = plan.ports.iter().find(|p| p.name == entry.name) else {
            continue;
        };
        let drained: Vec<DrainedHost> = port
            .hosts
            .iter()
            .filter(|h| attributes(port, **h).drain)
            .map(|h| DrainedHost {
                host: h.to_string(),
                by: drained_by.get(&h.to_string()).cloned(),
            })
            .collect();
        let omitted = drained.len().saturating_sub(MAX_HOST_ROLES_LISTED);
        entry.drained = drained.into_iter().take(MAX_HOST_ROLES_LISTED).collect();
        entry.drained_omitted = (omitted > 0).then(|| i32::try_from(omitted).unwrap_or(i32::MAX));
        entry.backups_in_rotation = list_port(port, health)
            .promoted
            .iter()
            .take(MAX_HOST_ROLES_LISTED)
            .map(ToString::to_string)
            .collect();
    }
}

/// One announced fact: (port, host, what).
pub type Role = (String, String, RoleKind);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RoleKind {
    Drained,
    Promoted,
}

/// The facts `status` states (those the Events are about).
pub fn roles(status: &ClusterEndpointStatus) -> BTreeSet<Role> {
    let mut roles = BTreeSet::new();
    for port in &status.ports {
        for d in &port.drained {
            roles.insert((port.name.clone(), d.host.clone(), RoleKind::Drained));
        }
        for b in &port.backups_in_rotation {
            roles.insert((port.name.clone(), b.clone(), RoleKind::Promoted));
        }
    }
    roles
}

/// The Events for the facts that changed from `before` to `now`.
pub fn events(
    before: &BTreeSet<Role>,
    now: &BTreeSet<Role>,
    status: &ClusterEndpointStatus,
) -> Vec<Event> {
    let by = |port: &str, host: &str| {
        status
            .ports
            .iter()
            .find(|p| p.name == port)
            .and_then(|p| p.drained.iter().find(|d| d.host == host))
            .and_then(|d| d.by.clone())
    };
    let started = now.difference(before).map(|r| (r, true));
    let ended = before.difference(now).map(|r| (r, false));
    started
        .chain(ended)
        .map(|((port, host, kind), on)| {
            let (type_, reason, note) = match (kind, on) {
                (RoleKind::Drained, true) => (
                    EventType::Normal,
                    "HostDrained",
                    match by(port, host) {
                        Some(user) => format!("host {host} port {port} is drained by {user}: listed terminating, it gets no new connections"),
                        None => format!("host {host} port {port} is drained: listed terminating, it gets no new connections"),
                    },
                ),
                (RoleKind::Drained, false) => (
                    EventType::Normal,
                    "HostUndrained",
                    format!("host {host} port {port} is no longer drained"),
                ),
                (RoleKind::Promoted, true) => (
                    EventType::Warning,
                    "BackupPromoted",
                    format!("backup host {host} port {port} is in rotation: fewer primaries than minReady are ready"),
                ),
                (RoleKind::Promoted, false) => (
                    EventType::Normal,
                    "BackupDemoted",
                    format!("backup host {host} port {port} left rotation: enough primaries are ready again (or it failed)"),
                ),
            };
            Event {
                type_,
                reason: reason.to_string(),
                note: Some(truncate(&note, NOTE_MAX)),
                // Per host, so that Events about different hosts are not
                // folded into one series.
                action: format!("Hosts/{port}/{host}"),
                secondary: None,
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "host_report_tests.rs"]
mod tests;
