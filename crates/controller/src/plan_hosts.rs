//! Hosts of a port: the address or DNS name of every entry (string or
//! object) parsed, checked and sorted, and the per-host fields of object
//! entries (zone, drain, priority, hostname) checked and kept beside them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kube_endpoints_api::{HostEntry, MAX_HOSTS, MAX_PRIORITY};

use super::{Errors, Host, is_dns1123_label, parse_host};

/// The per-host fields of one host of one port. A host listed as a bare
/// address has the default: no zone, not drained, a primary, no hostname.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostAttributes {
    /// Written as `endpoints[].zone` (and as a zone hint when the rules allow).
    pub zone: Option<String>,
    /// Out of rotation on purpose: listed ready=false, terminating=true.
    pub drain: bool,
    /// 0: a primary. 1 and up: a backup, promoted in ascending order.
    pub priority: u32,
    /// Written as `endpoints[].hostname`.
    pub hostname: Option<String>,
}

/// A port's hosts: the sorted unique addresses and DNS names, and the
/// attributes of those that have any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedHosts {
    pub hosts: Vec<IpAddr>,
    pub names: Vec<String>,
    pub attributes: BTreeMap<IpAddr, HostAttributes>,
    pub name_attributes: BTreeMap<String, HostAttributes>,
}

impl ParsedHosts {
    pub(super) fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.names.is_empty()
    }
}

/// Which address each hostname names, across the whole object: a hostname
/// may be given again only for the same address (the same host listed
/// for several ports).
#[derive(Default)]
pub(super) struct Hostnames(BTreeMap<String, IpAddr>);

/// Parse, check and sort a host list; errors name the exact item and field
/// (`spec.ports[0].hosts[2].zone`).
pub(super) fn parse_hosts(
    field: &str,
    hosts: &[HostEntry],
    hostnames: &mut Hostnames,
    errors: &mut Errors,
) -> ParsedHosts {
    if hosts.len() > MAX_HOSTS {
        errors.push(
            field,
            format!("must have at most {MAX_HOSTS} entries, got {}", hosts.len()),
        );
    }
    let mut parsed = BTreeSet::new();
    let mut out = ParsedHosts::default();
    for (i, entry) in hosts.iter().enumerate() {
        let (item, address_field) = match entry {
            HostEntry::Address(_) => (format!("{field}[{i}]"), format!("{field}[{i}]")),
            HostEntry::Detailed(_) => (format!("{field}[{i}]"), format!("{field}[{i}].address")),
        };
        let host = entry.address();
        let parsed_host = match parse_host(host) {
            Ok(h) => h,
            Err(message) => {
                errors.push(address_field.as_str(), message);
                continue;
            }
        };
        if !parsed.insert(parsed_host.clone()) {
            errors.push(item.as_str(), format!("duplicate host {host}"));
            continue;
        }
        let HostEntry::Detailed(details) = entry else {
            continue;
        };
        let attrs = host_attributes(&item, details, errors);
        match parsed_host {
            Host::Address(ip) => {
                if let Some(name) = &attrs.hostname {
                    match hostnames.0.get(name) {
                        Some(other) if *other != ip => errors.push(
                            format!("{item}.hostname"),
                            format!("hostname {name:?} is already given to {other}: a hostname names one host of the object"),
                        ),
                        _ => {
                            hostnames.0.insert(name.clone(), ip);
                        }
                    }
                }
                if attrs != HostAttributes::default() {
                    out.attributes.insert(ip, attrs);
                }
            }
            Host::Name(name) => {
                if attrs.hostname.is_some() {
                    errors.push(
                        format!("{item}.hostname"),
                        format!("{name} is a DNS name, which may resolve to several addresses: a hostname names one address, so give it to an address literal"),
                    );
                }
                if attrs != HostAttributes::default() {
                    out.name_attributes.insert(name, attrs);
                }
            }
        }
    }
    for host in parsed {
        match host {
            Host::Address(ip) => out.hosts.push(ip),
            Host::Name(name) => out.names.push(name),
        }
    }
    out
}

fn host_attributes(
    item: &str,
    details: &kube_endpoints_api::HostDetails,
    errors: &mut Errors,
) -> HostAttributes {
    if let Some(zone) = &details.zone
        && !is_label_value(zone)
    {
        errors.push(
            format!("{item}.zone"),
            format!("{zone:?} must be a label value (1 to 63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit)"),
        );
    }
    let priority = details.priority.unwrap_or(0);
    errors.range(
        &format!("{item}.priority"),
        priority.into(),
        0,
        MAX_PRIORITY.into(),
    );
    if let Some(hostname) = &details.hostname
        && !is_dns1123_label(hostname)
    {
        errors.push(
            format!("{item}.hostname"),
            format!("{hostname:?} must be a DNS label (lowercase letters, digits and '-', at most 63 characters)"),
        );
    }
    HostAttributes {
        zone: details.zone.clone(),
        drain: details.drain,
        priority: u32::try_from(priority).unwrap_or(0),
        hostname: details.hostname.clone(),
    }
}

/// A Kubernetes label value that is not empty.
pub fn is_label_value(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}
