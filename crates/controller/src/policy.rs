//! The address policy: which hosts a ClusterEndpoint may point a Service
//! at. A pure function of (host, the cluster's own ranges, the flags).
//!
//! Whoever may create a ClusterEndpoint may make the controller write any
//! address into an EndpointSlice — the permission Kubernetes took away from
//! namespace users in 1.22 (CVE-2021-25740) — and make it probe that
//! address. So by default the controller refuses what belongs to the cluster
//! itself: the Service ranges, the nodes' pod ranges and addresses, the
//! kube-apiserver's addresses ([`ClusterRanges`], discovered by
//! `cluster_ranges`), and the cloud metadata addresses that are not
//! link-local ([`METADATA`]). `--denied-cidrs` adds ranges;
//! `--allowed-cidrs`, when set, is the only space hosts may come from. A
//! deny always wins over an allow.
//!
//! A denied host is moved out of the plan ([`restrict`]) before anything is
//! probed or built: it is never probed and never written, only reported in
//! status and in an Event.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use kube_endpoints_api::ClusterEndpointSpec;

use crate::plan::Plan;

/// Cloud metadata services reachable at addresses that are not link-local
/// (link-local ones, such as 169.254.169.254, can never be endpoints).
pub const METADATA: [(&str, &str); 3] = [
    ("100.100.100.200/32", "the Alibaba Cloud metadata address"),
    ("168.63.129.16/32", "the Azure WireServer address"),
    (
        "fd00:ec2::254/128",
        "the AWS instance metadata address (IPv6)",
    ),
];

/// [`METADATA`], parsed once.
fn metadata() -> &'static [(IpNet, &'static str)] {
    static PARSED: std::sync::LazyLock<Vec<(IpNet, &'static str)>> =
        std::sync::LazyLock::new(|| {
            METADATA
                .iter()
                .filter_map(|(net, what)| Some((net.parse().ok()?, *what)))
                .collect()
        });
    &PARSED
}

/// Why a range belongs to the cluster. The order is the priority when the
/// same range has several reasons.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RangeKind {
    /// An address of kube-apiserver (the `default/kubernetes` endpoints).
    Apiserver,
    /// One of a node's `status.addresses`.
    NodeAddress { node: String },
    /// A Service CIDR (ServiceCIDR objects, or `--service-cidrs`).
    Service,
    /// One of a node's `spec.podCIDRs`.
    PodRange { node: String },
}

impl RangeKind {
    /// What a host inside `net` is, e.g. "is inside the Service range 10.0.0.0/24".
    fn describe(&self, net: &IpNet) -> String {
        match self {
            RangeKind::Apiserver => "is an address of kube-apiserver".to_string(),
            RangeKind::NodeAddress { node } => format!("is an address of node {node}"),
            RangeKind::Service => format!("is inside the Service range {net}"),
            RangeKind::PodRange { node } => format!("is inside the pod range {net} of node {node}"),
        }
    }
}

/// The cluster's own ranges, by family and prefix length, so that looking
/// a host up costs one map lookup per distinct prefix length rather than
/// one comparison per node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterRanges {
    v4: BTreeMap<u8, BTreeMap<IpNet, RangeKind>>,
    v6: BTreeMap<u8, BTreeMap<IpNet, RangeKind>>,
}

impl ClusterRanges {
    /// Add `net` (truncated to its prefix) for `kind`; a range already
    /// known keeps the kind of higher priority.
    pub fn insert(&mut self, net: IpNet, kind: RangeKind) {
        let net = net.trunc();
        let by_len = match net {
            IpNet::V4(_) => &mut self.v4,
            IpNet::V6(_) => &mut self.v6,
        };
        let slot = by_len.entry(net.prefix_len()).or_default();
        match slot.get(&net) {
            Some(existing) if *existing <= kind => {}
            _ => {
                slot.insert(net, kind);
            }
        }
    }

    /// The most specific range containing `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<(IpNet, &RangeKind)> {
        let by_len = match ip {
            IpAddr::V4(_) => &self.v4,
            IpAddr::V6(_) => &self.v6,
        };
        by_len.iter().rev().find_map(|(len, nets)| {
            let net = IpNet::new(ip, *len).ok()?.trunc();
            nets.get(&net).map(|kind| (net, kind))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Every range, most specific first (for logs).
    pub fn iter(&self) -> impl Iterator<Item = (&IpNet, &RangeKind)> {
        self.v4
            .values()
            .rev()
            .chain(self.v6.values().rev())
            .flat_map(|nets| nets.iter())
    }
}

/// The operator's part of the policy (flags), fixed while running.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// `--allowed-cidrs`: when not empty, hosts must be inside one of these.
    pub allowed: Vec<IpNet>,
    /// `--denied-cidrs`: never allowed, whatever else says.
    pub denied: Vec<IpNet>,
}

pub use crate::plan::Denial;

/// Why `host` may not be an endpoint, or `None` when it may.
pub fn verdict(host: IpAddr, policy: &AddressPolicy, cluster: &ClusterRanges) -> Option<Denial> {
    let why = refusal(host, policy, cluster).or_else(|| {
        // NAT64 and 6to4 addresses carry an IPv4 address that a gateway
        // turns them into; the embedded address must pass too.
        let v4 = embedded_ipv4(host)?;
        let inner = refusal(IpAddr::V4(v4), policy, cluster)?;
        Some(format!("embeds {v4}, which {inner}"))
    })?;
    Some(Denial {
        host,
        message: format!("{host} {why} (denied by the address policy)"),
    })
}

/// "is inside …" for a refused host, checked in order: the operator's
/// denies, the metadata addresses, the operator's allows, the cluster.
fn refusal(host: IpAddr, policy: &AddressPolicy, cluster: &ClusterRanges) -> Option<String> {
    if let Some(net) = policy.denied.iter().find(|n| n.contains(&host)) {
        return Some(format!("is inside {net}, listed in --denied-cidrs"));
    }
    if let Some((_, what)) = metadata().iter().find(|(net, _)| net.contains(&host)) {
        return Some(format!("is {what}"));
    }
    if !policy.allowed.is_empty() && !policy.allowed.iter().any(|n| n.contains(&host)) {
        let allowed: Vec<String> = policy.allowed.iter().map(ToString::to_string).collect();
        return Some(format!(
            "is outside the allowed ranges {} (--allowed-cidrs)",
            allowed.join(", ")
        ));
    }
    cluster.lookup(host).map(|(net, kind)| kind.describe(&net))
}

/// The IPv4 address a NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`)
/// address stands for.
fn embedded_ipv4(host: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = host else {
        return None;
    };
    let bits = u128::from(v6);
    let nat64 = u128::from(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0));
    if bits >> 32 == nat64 >> 32 {
        return u32::try_from(bits & 0xffff_ffff).ok().map(Ipv4Addr::from);
    }
    if v6.segments()[0] == 0x2002 {
        return u32::try_from((bits >> 80) & 0xffff_ffff)
            .ok()
            .map(Ipv4Addr::from);
    }
    None
}

/// The plan with every denied host moved from `hosts` to `denied`.
pub fn restrict(mut plan: Plan, policy: &AddressPolicy, cluster: &ClusterRanges) -> Plan {
    for port in &mut plan.ports {
        let mut denied = Vec::new();
        port.hosts
            .retain(|host| match verdict(*host, policy, cluster) {
                Some(d) => {
                    denied.push(d);
                    false
                }
                None => true,
            });
        port.denied = denied;
    }
    plan
}

/// Every host literal a spec lists (unparsable ones are skipped: `plan`
/// reports those).
pub fn hosts_of(spec: &ClusterEndpointSpec) -> BTreeSet<IpAddr> {
    spec.hosts
        .iter()
        .chain(spec.ports.iter().flat_map(|p| p.hosts.iter()))
        .filter_map(|h| h.address().parse().ok())
        .collect()
}

/// Whether a change of the cluster's ranges from `old` to `new` changes the
/// verdict on any of `hosts` (then the object must be reconciled).
pub fn affected<'a>(
    hosts: impl IntoIterator<Item = &'a IpAddr>,
    policy: &AddressPolicy,
    old: &ClusterRanges,
    new: &ClusterRanges,
) -> bool {
    hosts
        .into_iter()
        .any(|h| verdict(*h, policy, old) != verdict(*h, policy, new))
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
