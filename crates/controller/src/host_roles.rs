//! How each host of a port is listed, from its probe verdict and its
//! per-host fields. Pure; the builder writes what this says.
//!
//! - A drained host is `ready: false, serving: <probe verdict>,
//!   terminating: true`: kube-proxy sends it no new connections, and the
//!   probe's verdict stays visible.
//! - Backups (priority 1 and up) are promoted tier by tier, lowest number
//!   first, while fewer than `minReady` hosts of the tiers above are ready.
//!   A tier not promoted is on standby: `ready: false, serving: <probe
//!   verdict>, terminating: false`. kube-proxy sends traffic only to ready
//!   endpoints (and, when none is, to serving *terminating* ones), so a
//!   standby gets none; `serving` records its verdict, which a restarted
//!   controller seeds from (see `builder::seed_from_slices`) so that a
//!   restart writes nothing.
//! - Zone hints (`hints.forZones` = the host's own zone) are written when
//!   every ready host has a zone and every zone of the hosts in rotation
//!   keeps at least one ready host; otherwise none. kube-proxy
//!   (pkg/proxy/topology.go) uses hints only when every ready endpoint
//!   carries one and the node's zone has one, so hints that left a zone
//!   without a ready host, or a ready host without a zone, would at best be
//!   ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kube_endpoints_probe::{Health, TargetId};

use crate::builder::is_ready;
use crate::plan::{HostAttributes, PortPlan};

/// The conditions one host is listed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listing {
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

/// Every host of one port, listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortListing {
    pub hosts: BTreeMap<IpAddr, Listing>,
    /// Write each zoned host's zone as its hint.
    pub zone_hints: bool,
    /// Backups in rotation now (promoted and passing), in address order.
    pub promoted: Vec<IpAddr>,
}

const DEFAULT_ATTRIBUTES: HostAttributes = HostAttributes {
    zone: None,
    drain: false,
    priority: 0,
    hostname: None,
};

/// The per-host fields of `host` in `port` (defaults when it has none).
pub fn attributes(port: &PortPlan, host: IpAddr) -> &HostAttributes {
    port.attributes.get(&host).unwrap_or(&DEFAULT_ATTRIBUTES)
}

/// List every host of `port` from the probe verdicts in `health`.
pub fn list_port(port: &PortPlan, health: &BTreeMap<TargetId, Health>) -> PortListing {
    let passing = |h: IpAddr| is_ready(port, h, health);
    let mut tiers: BTreeMap<u32, Vec<IpAddr>> = BTreeMap::new();
    let mut listing = PortListing::default();
    for &host in &port.hosts {
        let attrs = attributes(port, host);
        if attrs.drain {
            let serving = passing(host);
            listing.hosts.insert(
                host,
                Listing {
                    ready: false,
                    serving,
                    terminating: true,
                },
            );
        } else {
            tiers.entry(attrs.priority).or_default().push(host);
        }
    }
    let mut ready_above = 0usize;
    let mut in_rotation = Vec::new();
    for (priority, hosts) in tiers {
        let active = priority == 0 || ready_above < port.min_ready;
        for host in hosts {
            let verdict = passing(host);
            let ready = active && verdict;
            ready_above += usize::from(ready);
            if active {
                in_rotation.push(host);
            }
            if ready && priority > 0 {
                listing.promoted.push(host);
            }
            listing.hosts.insert(
                host,
                Listing {
                    ready,
                    serving: verdict,
                    terminating: false,
                },
            );
        }
    }
    listing.promoted.sort();
    listing.zone_hints = zone_hints_allowed(port, &in_rotation, &listing.hosts);
    listing
}

/// How `host` is listed beyond its probe verdict, for people (`check`):
/// `drained`, `backup 1, standby`, `backup 1, in rotation`; `None` for a
/// plain primary.
pub fn role(port: &PortPlan, listing: &PortListing, host: IpAddr) -> Option<String> {
    let attrs = attributes(port, host);
    if attrs.drain {
        return Some("drained".into());
    }
    if attrs.priority == 0 {
        return None;
    }
    let state = if listing.promoted.contains(&host) {
        "in rotation"
    } else {
        "standby"
    };
    Some(format!("backup {}, {state}", attrs.priority))
}

fn zone_hints_allowed(
    port: &PortPlan,
    in_rotation: &[IpAddr],
    listed: &BTreeMap<IpAddr, Listing>,
) -> bool {
    let ready = |h: &IpAddr| listed.get(h).is_some_and(|l| l.ready);
    let zone = |h: &IpAddr| attributes(port, *h).zone.as_deref();
    let ready_hosts: Vec<&IpAddr> = in_rotation.iter().filter(|h| ready(h)).collect();
    if ready_hosts.is_empty() || ready_hosts.iter().any(|h| zone(h).is_none()) {
        return false;
    }
    let zones: BTreeSet<&str> = in_rotation.iter().filter_map(zone).collect();
    let ready_zones: BTreeSet<&str> = ready_hosts.iter().filter_map(|h| zone(h)).collect();
    zones == ready_zones
}

#[cfg(test)]
#[path = "host_roles_tests.rs"]
mod tests;
