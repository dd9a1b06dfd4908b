//! Names: the pure step between [`crate::plan`] and the address policy
//! that turns the hosts listed as DNS names into addresses.
//!
//! [`expand`] adds each name's resolved addresses to the port's `hosts`,
//! so the address policy ([`crate::policy::restrict`]) judges them exactly
//! as literals: a name that resolves (or is rebound) into a denied range is
//! denied, it cannot move traffic into the cluster. An address that is both
//! listed and resolved is one target. Each address of a name is probed on
//! its own, with the name as the HTTP `Host` and the TLS server name unless
//! the spec sets them ([`with_name`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube_endpoints_api::{
    CONDITION_NAMES_RESOLVED, ClusterEndpointSpec, Condition, NameStatus, PortStatus,
};
use kube_endpoints_probe::{Probe, TargetSpec};

use crate::plan::{Host, Plan, PortPlan, parse_host};
use crate::resolve::{Resolution, Resolutions};
use crate::status::{quote_first, rfc3339};

/// The names a plan lists and the resolve period each needs (the least
/// over the ports listing it).
pub fn wanted(plan: &Plan) -> BTreeMap<String, Duration> {
    let mut names: BTreeMap<String, Duration> = BTreeMap::new();
    for port in &plan.ports {
        for name in &port.names {
            names
                .entry(name.clone())
                .and_modify(|p| *p = (*p).min(port.resolve_period))
                .or_insert(port.resolve_period);
        }
    }
    names
}

/// The plan with every name's addresses in its ports' `hosts` (sorted,
/// unique), the name of each address that is not also a literal in
/// `named`, and the resolutions in `resolutions`. A name missing from
/// `resolutions` has no addresses (never resolved).
pub fn expand(mut plan: Plan, resolutions: &Resolutions) -> Plan {
    for port in &mut plan.ports {
        let mut named = BTreeMap::new();
        let mut hosts: std::collections::BTreeSet<_> = port.hosts.iter().copied().collect();
        let mut seen = Resolutions::new();
        for name in &port.names {
            let resolution = resolutions.get(name).cloned().unwrap_or_default();
            for address in &resolution.addresses {
                if hosts.insert(*address) || named.contains_key(address) {
                    named.entry(*address).or_insert_with(|| name.clone());
                    // The name's per-host fields (the first name's, as for
                    // `Host`); a literal of the same address keeps its own.
                    if let Some(attrs) = port.name_attributes.get(name) {
                        port.attributes
                            .entry(*address)
                            .or_insert_with(|| attrs.clone());
                    }
                }
            }
            seen.insert(name.clone(), resolution);
        }
        port.hosts = hosts.into_iter().collect();
        port.named = named;
        port.resolutions = seen;
    }
    plan
}

/// Whether a name of the plan has neither resolved nor failed yet (just
/// listed, or the controller just started). Nothing is written meanwhile:
/// slices written now would drop the addresses the name had before a
/// restart. Its first answer, or failure, reconciles the object again.
pub fn pending(plan: &Plan) -> bool {
    plan.ports.iter().any(|p| {
        p.resolutions
            .values()
            .any(|r| r.resolved_at.is_none() && r.failure.is_none())
    })
}

/// How long a reconcile waits for pending names at most before looking
/// again (their first answer usually reconciles sooner).
pub const PENDING_RECHECK: Duration = Duration::from_secs(10);

/// The probe of an address resolved from `name`: HTTP(S) sends `name` as
/// `Host` (and, for HTTPS, as the TLS server name) unless the spec sets a
/// virtual host or a `Host` header; TLS over TCP and gRPC send it as the
/// server name unless the spec sets one. Other probes are unchanged.
pub fn with_name(spec: &TargetSpec, name: &str) -> TargetSpec {
    let mut probe = (*spec.probe).clone();
    match &mut probe {
        Probe::Http(get) => {
            let has_host = get.host.as_deref().is_some_and(|h| !h.is_empty())
                || get
                    .headers
                    .iter()
                    .any(|(n, v)| n.eq_ignore_ascii_case("host") && !v.is_empty());
            if !has_host {
                get.host = Some(name.to_string());
            }
        }
        Probe::Tcp(tcp) => {
            if let Some(tls) = &mut tcp.tls
                && tls.server_name.is_none()
            {
                tls.server_name = Some(name.to_string());
            }
        }
        Probe::Grpc(grpc) => {
            if let Some(tls) = &mut grpc.tls
                && tls.server_name.is_none()
            {
                tls.server_name = Some(name.to_string());
            }
        }
        Probe::Udp(_) => return spec.clone(),
    }
    TargetSpec {
        probe: Arc::new(probe),
        ..spec.clone()
    }
}

/// Whether a spec lists any host as a DNS name (such an object is
/// reconciled when the cluster's ranges change: its addresses may be
/// judged differently).
pub fn lists_names(spec: &ClusterEndpointSpec) -> bool {
    spec.hosts
        .iter()
        .chain(spec.ports.iter().flat_map(|p| p.hosts.iter()))
        .any(|h| matches!(parse_host(h.address()), Ok(Host::Name(_))))
}

/// `status.ports[].names`: each name of the port, its addresses (the last
/// good ones while resolution fails) and when they were first seen. The
/// times of `previous` are kept while what they date did not change (the
/// same addresses; a failure going on), so that a restarted controller,
/// which resolves everything anew, writes no status.
pub fn name_statuses(port: &PortPlan, previous: Option<&PortStatus>) -> Vec<NameStatus> {
    let previous: BTreeMap<&str, &NameStatus> = previous
        .map(|p| p.names.iter().map(|n| (n.name.as_str(), n)).collect())
        .unwrap_or_default();
    port.names
        .iter()
        .map(|name| {
            let resolution = port.resolutions.get(name).cloned().unwrap_or_default();
            let mut status = NameStatus {
                name: name.clone(),
                addresses: resolution
                    .addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                resolved_at: resolution.resolved_at.map(rfc3339),
                failure: resolution.failure.as_ref().map(|f| f.message.clone()),
                failed_since: resolution.failure.as_ref().map(|f| rfc3339(f.since)),
            };
            if let Some(before) = previous.get(name.as_str()) {
                if before.addresses == status.addresses && before.resolved_at.is_some() {
                    status.resolved_at.clone_from(&before.resolved_at);
                }
                if before.failure.is_some() && status.failure.is_some() {
                    status.failure.clone_from(&before.failure);
                    status.failed_since.clone_from(&before.failed_since);
                }
            }
            status
        })
        .collect()
}

/// Names quoted in the `NamesResolved` condition's message.
const NAMES_QUOTED: usize = 3;

/// `NamesResolved`, for objects that list names: false
/// (`DNSResolutionFailed`) while a name fails to resolve — its last good
/// addresses stay in use — else unknown (`DNSResolutionPending`) while a
/// name has not resolved yet, else true.
pub fn names_resolved(plan: &Plan) -> Option<Condition> {
    let all: BTreeMap<&str, &Resolution> = plan
        .ports
        .iter()
        .flat_map(|p| p.resolutions.iter().map(|(n, r)| (n.as_str(), r)))
        .collect();
    if all.is_empty() {
        return None;
    }
    let failing: Vec<String> = all
        .iter()
        .filter_map(|(name, r)| {
            let failure = r.failure.as_ref()?;
            Some(if r.addresses.is_empty() {
                format!("{name}: {} (no addresses yet)", failure.message)
            } else {
                format!(
                    "{name}: {} (keeping its last {} address(es))",
                    failure.message,
                    r.addresses.len()
                )
            })
        })
        .collect();
    let pending: Vec<&str> = all
        .iter()
        .filter(|(_, r)| r.failure.is_none() && r.resolved_at.is_none())
        .map(|(name, _)| *name)
        .collect();
    let (status, reason, message) = if !failing.is_empty() {
        (
            "False",
            "DNSResolutionFailed",
            format!(
                "{} of {} name(s) fail to resolve: {}",
                failing.len(),
                all.len(),
                quote_first(&failing, NAMES_QUOTED, "; ", "; and {} more")
            ),
        )
    } else if !pending.is_empty() {
        (
            "Unknown",
            "DNSResolutionPending",
            format!(
                "not resolved yet (no addresses): {}",
                quote_first(&pending, NAMES_QUOTED, ", ", " and {} more")
            ),
        )
    } else {
        (
            "True",
            "NamesResolved",
            format!("every name resolved ({})", all.len()),
        )
    };
    Some(Condition {
        type_: CONDITION_NAMES_RESOLVED.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        last_transition_time: String::new(),
        last_heartbeat_time: None,
    })
}

#[cfg(test)]
#[path = "names_tests.rs"]
mod tests;
