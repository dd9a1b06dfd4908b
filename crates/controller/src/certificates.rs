//! TLS certificate expiry (pure): what `status.ports[].certificates` lists,
//! which certificates newly entered the warning window (a
//! `CertificateExpiring` Event), and when the next one will (a reconcile is
//! scheduled for then: time passing changes nothing the probe engine would
//! report).
//!
//! The probe engine keeps the `notAfter` of the leaf certificate each
//! target presented at its last completed handshake and tells the
//! controller when it changes; status lists them per port, earliest
//! first, bounded like `unhealthy`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use kube::runtime::events::{Event, EventType};
use kube_endpoints_api::{ClusterEndpointStatus, HostCertificate, MAX_CERTIFICATES_LISTED};
use kube_endpoints_probe::TargetId;

use crate::plan::Plan;
use crate::status::{NOTE_MAX, quote_first, rfc3339, truncate};

/// The Event reason of a certificate entering the warning window.
pub const REASON_EXPIRING: &str = "CertificateExpiring";

/// Hosts quoted in one Event's note.
const QUOTED: usize = 3;

/// A certificate in the warning window: (port, host, notAfter as written).
pub type Expiring = (String, String, String);

/// Put the certificates of the plan's hosts into `status`'s ports.
/// `warn_before`: a certificate whose notAfter is before this expires
/// soon (`None`: never). A host the probe engine has no certificate for
/// yet (after a restart, before its first handshake) keeps the one
/// `previous` lists, so that a restart neither rewrites the status nor
/// announces the same expiry again.
pub fn fill(
    status: &mut ClusterEndpointStatus,
    plan: &Plan,
    certificates: &BTreeMap<TargetId, SystemTime>,
    previous: Option<&ClusterEndpointStatus>,
    warn_before: Option<SystemTime>,
) {
    for port in &mut status.ports {
        let Some(planned) = plan.ports.iter().find(|p| p.name == port.name) else {
            continue;
        };
        let listed: BTreeMap<&str, SystemTime> = previous
            .and_then(|s| s.ports.iter().find(|p| p.name == port.name))
            .map(|p| {
                p.certificates
                    .iter()
                    .filter_map(|c| Some((c.host.as_str(), parse_rfc3339(&c.not_after)?)))
                    .collect()
            })
            .unwrap_or_default();
        let mut found: Vec<(SystemTime, String)> = planned
            .hosts
            .iter()
            .filter_map(|host| {
                let id = TargetId {
                    port: planned.name.clone(),
                    host: *host,
                };
                let text = host.to_string();
                let not_after = certificates
                    .get(&id)
                    .copied()
                    .or_else(|| listed.get(text.as_str()).copied())?;
                Some((not_after, text))
            })
            .collect();
        found.sort();
        let omitted = found.len().saturating_sub(MAX_CERTIFICATES_LISTED);
        port.certificates = found
            .into_iter()
            .take(MAX_CERTIFICATES_LISTED)
            .map(|(not_after, host)| HostCertificate {
                host,
                not_after: rfc3339(not_after),
                expires_soon: warn_before.is_some_and(|w| not_after < w),
            })
            .collect();
        port.certificates_omitted =
            (omitted > 0).then(|| i32::try_from(omitted).unwrap_or(i32::MAX));
    }
}

fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(SystemTime::from)
}

/// The listed certificates in the warning window.
pub fn expiring(status: &ClusterEndpointStatus) -> BTreeSet<Expiring> {
    status
        .ports
        .iter()
        .flat_map(|p| {
            p.certificates
                .iter()
                .filter(|c| c.expires_soon)
                .map(|c| (p.name.clone(), c.host.clone(), c.not_after.clone()))
        })
        .collect()
}

/// One Warning Event per port with certificates in the warning window that
/// were not already announced (`announced`: what the last Events were
/// decided on, or the previous status's). A renewed certificate that is
/// still expiring soon counts as new.
pub fn events(announced: &BTreeSet<Expiring>, now: &BTreeSet<Expiring>, days: u32) -> Vec<Event> {
    let mut by_port: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (port, host, not_after) in now.difference(announced) {
        by_port
            .entry(port)
            .or_default()
            .push((not_after.as_str(), host.as_str()));
    }
    by_port
        .into_iter()
        .map(|(port, mut hosts)| {
            hosts.sort();
            let quoted: Vec<String> = hosts
                .iter()
                .map(|(not_after, host)| format!("{host} (notAfter {not_after})"))
                .collect();
            let note = format!(
                "the TLS certificate of {} host(s) of port {port} expires within {days} days: {}",
                hosts.len(),
                quote_first(&quoted, QUOTED, ", ", " and {} more")
            );
            Event {
                type_: EventType::Warning,
                reason: REASON_EXPIRING.to_string(),
                note: Some(truncate(&note, NOTE_MAX)),
                action: format!("Certificate/{port}"),
                secondary: None,
            }
        })
        .collect()
}

/// How long until the next certificate enters the warning window (`None`:
/// none will; those inside it already are reported).
pub fn next_crossing(
    certificates: &BTreeMap<TargetId, SystemTime>,
    warning: Duration,
    now: SystemTime,
) -> Option<Duration> {
    certificates
        .values()
        .filter_map(|not_after| not_after.checked_sub(warning))
        .filter_map(|crossing| crossing.duration_since(now).ok())
        .filter(|d| !d.is_zero())
        .min()
}

#[cfg(test)]
#[path = "certificates_tests.rs"]
mod tests;
