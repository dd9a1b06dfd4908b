//! Build: the pure heart of the controller. From a validated [`Plan`] and a
//! health snapshot it computes the [`Desired`] state: the Service,
//! EndpointSlices and Endpoints that should exist. No I/O and no clock, so
//! equal input always gives byte-equal output; the `writes` module compares
//! it with what is live and `status` reports on it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort,
    ServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort as SlicePort, EndpointSlice, ForZone,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube_endpoints_probe::{Health, HealthState, TargetId};

use crate::host_roles::{self, attributes};
use crate::placement;
use crate::plan::{Plan, PortPlan};

/// Label tying an EndpointSlice to its Service (read by kube-proxy).
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages an EndpointSlice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// Stops Kubernetes mirroring our compatibility Endpoints into a second set of slices.
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Marks the slices of a headless Service, as the EndpointSlice controller
/// does; kube-proxy does not watch such slices.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// Set on an Endpoints that lists only part of its addresses.
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Kubernetes allows up to 1000; 100 is what the EndpointSlice controller uses
/// and keeps each write small when one host flips.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Addresses the compatibility Endpoints holds at most, as the Kubernetes
/// endpoints controller keeps them (`maxCapacity`); the slices have them all.
pub const MAX_ENDPOINTS_ADDRESSES: usize = 1000;

/// The ClusterEndpoint that owns everything built here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

impl Owner {
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn meta(&self, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: (!labels.is_empty()).then_some(labels),
            owner_references: Some(vec![self.owner_reference()]),
            ..ObjectMeta::default()
        }
    }
}

/// How the objects are built; fixed while the controller runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildSettings {
    /// Value of the EndpointSlice `managed-by` label.
    pub controller_id: String,
    /// Keep the compatibility core/v1 Endpoints object.
    pub compat_endpoints: bool,
}

/// Everything that should exist for one ClusterEndpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub owner: Owner,
    pub service: Service,
    /// Sorted by name.
    pub slices: Vec<EndpointSlice>,
    /// `None` when the compatibility Endpoints is switched off (then ours is removed).
    pub endpoints: Option<Endpoints>,
}

/// The whole desired state at once, from one health snapshot. `live` are
/// our slices of this object as they are now ([`is_own_slice`]): hosts keep
/// their place in them ([`crate::placement`]).
pub fn desired(
    owner: &Owner,
    plan: &Plan,
    health: &BTreeMap<TargetId, Health>,
    settings: &BuildSettings,
    live: &[&EndpointSlice],
) -> Desired {
    Desired {
        owner: owner.clone(),
        service: service(owner, plan),
        slices: endpoint_slices(owner, plan, health, &settings.controller_id, live),
        endpoints: settings
            .compat_endpoints
            .then(|| endpoints(owner, plan, health)),
    }
}

/// Whether `slice` is one of the EndpointSlices we manage for `owner`: our
/// labels, and `owner` as controller, or no controller at all (orphaned,
/// e.g. by `kubectl delete --cascade=orphan` of an object that is now
/// recreated, or in another served group). Only those are seeded from,
/// rewritten and pruned.
pub fn is_own_slice(slice: &EndpointSlice, owner: &Owner, controller_id: &str) -> bool {
    let controller = slice
        .owner_references()
        .iter()
        .find(|r| r.controller == Some(true));
    slice.metadata.namespace.as_deref() == Some(owner.namespace.as_str())
        && slice.labels().get(LABEL_SERVICE_NAME) == Some(&owner.name)
        && slice.labels().get(LABEL_MANAGED_BY).map(String::as_str) == Some(controller_id)
        && controller.is_none_or(|r| r.uid == owner.uid)
}

/// Whether `controller_id` may be the value of the EndpointSlice
/// `managed-by` label: a valid label value that does not name a Kubernetes
/// controller (whose slices we would fight over). The error says why.
pub fn validate_controller_id(controller_id: &str) -> Result<(), String> {
    let valid = !controller_id.is_empty()
        && controller_id.len() <= 63
        && controller_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && controller_id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && controller_id.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        return Err(format!(
            "{controller_id:?} is not a valid label value (at most 63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit)"
        ));
    }
    let reserved = controller_id.ends_with(".k8s.io") || controller_id.ends_with(".kubernetes.io");
    if reserved {
        return Err(format!(
            "{controller_id:?} is reserved for Kubernetes' own controllers (e.g. endpointslice-controller.k8s.io); choose a name of your own domain"
        ));
    }
    Ok(())
}

/// Whether a host is in rotation for a port: static ports always are; probed
/// ones only once the probe engine says Ready.
pub fn is_ready(port: &PortPlan, host: IpAddr, health: &BTreeMap<TargetId, Health>) -> bool {
    if port.probe.is_none() {
        return true;
    }
    let id = TargetId {
        port: port.name.clone(),
        host,
    };
    health
        .get(&id)
        .is_some_and(|h| h.state == HealthState::Ready)
}

/// The selector-less Service. Only the fields we own are set, so server-side
/// apply leaves an adopted Service's clusterIP, labels and annotations alone;
/// the spec's passthrough fields (session affinity, traffic policies,
/// labels, annotations, publishNotReadyAddresses) are set when given.
///
/// The IP families of a ClusterIP Service follow the hosts: one family
/// gives a single-stack Service of that family (so that IPv6-only hosts get
/// an IPv6 ClusterIP even where IPv4 is the cluster's default), both give
/// `PreferDualStack`.
pub fn service(owner: &Owner, plan: &Plan) -> Service {
    let ports = plan
        .ports
        .iter()
        .filter(|p| p.primary)
        .map(|p| ServicePort {
            name: Some(p.service_port.clone()),
            port: p.port,
            protocol: Some(p.protocol.clone()),
            target_port: Some(IntOrString::Int(p.target_port.into())),
            ..ServicePort::default()
        })
        .collect();
    let families = host_families(plan);
    let (policy, ip_families) = match families.as_slice() {
        // A headless Service has no ClusterIP to route through: its
        // families are left to Kubernetes' defaults.
        _ if plan.headless => (None, None),
        [only] => (Some("SingleStack"), Some(vec![(*only).to_string()])),
        // Both: the cluster's default family first; a single-stack cluster
        // gives one ClusterIP rather than refusing the Service.
        _ => (Some("PreferDualStack"), None),
    };
    let options = &plan.service;
    let mut metadata = owner.meta(owner.name.clone(), options.labels.clone());
    metadata.annotations = (!options.annotations.is_empty()).then(|| options.annotations.clone());
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: plan.headless.then(|| "None".to_string()),
            ports: Some(ports),
            ip_family_policy: policy.map(Into::into),
            ip_families,
            session_affinity: options.session_affinity.clone(),
            session_affinity_config: options.affinity_timeout_seconds.map(|t| {
                SessionAffinityConfig {
                    client_ip: Some(ClientIPConfig {
                        timeout_seconds: Some(t),
                    }),
                }
            }),
            internal_traffic_policy: options.internal_traffic_policy.clone(),
            traffic_distribution: options.traffic_distribution.clone(),
            publish_not_ready_addresses: options.publish_not_ready_addresses.then_some(true),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The address families of the plan's hosts, IPv4 first.
pub fn host_families(plan: &Plan) -> Vec<&'static str> {
    let mut families: Vec<&'static str> = plan
        .ports
        .iter()
        .flat_map(|p| p.hosts.iter().map(family))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    families.sort();
    families
}

fn family(ip: &IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

/// The slice name `<object>.<port>.<ipv4|ipv6>.<n>`. Object names are
/// DNS-1035 labels and port keys DNS labels (or `<label>-<targetPort>`),
/// neither holding a dot, so the dots make the name unambiguous: no two
/// (object, port, family, index) give the same name, across objects too.
/// At most 63 + 69 + 4 + 3 separators + the index: far below the 253 an
/// EndpointSlice name (a DNS subdomain) may have.
pub fn slice_name(object: &str, port: &str, address_type: &str, index: usize) -> String {
    format!(
        "{object}.{port}.{}.{index}",
        address_type.to_ascii_lowercase()
    )
}

/// The (object, port, address family, index) of a name [`slice_name`]
/// made; `None` for any other name (for example our older `a-b-ipv4-0`).
pub fn parse_slice_name(name: &str) -> Option<(&str, &str, &'static str, usize)> {
    let mut parts = name.split('.');
    let (object, port, family, index) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || object.is_empty() || port.is_empty() {
        return None;
    }
    let family = match family {
        "ipv4" => "IPv4",
        "ipv6" => "IPv6",
        _ => return None,
    };
    let canonical = index
        .parse::<usize>()
        .ok()
        .filter(|i| i.to_string() == index)?;
    Some((object, port, family, canonical))
}

/// EndpointSlices: per port and address family, at most
/// [`MAX_ENDPOINTS_PER_SLICE`] endpoints each, hosts kept in the slice of
/// `live` that holds them ([`crate::placement`]), sorted by name.
/// Unhealthy hosts stay listed with ready=false and serving=false so they
/// remain visible; drained hosts and backups are listed as
/// [`host_roles`] says, with their zone, hint and hostname.
pub fn endpoint_slices(
    owner: &Owner,
    plan: &Plan,
    health: &BTreeMap<TargetId, Health>,
    controller_id: &str,
    live: &[&EndpointSlice],
) -> Vec<EndpointSlice> {
    let mut labels = BTreeMap::from([
        (LABEL_SERVICE_NAME.to_string(), owner.name.clone()),
        (LABEL_MANAGED_BY.to_string(), controller_id.to_string()),
    ]);
    if plan.headless {
        labels.insert(LABEL_HEADLESS.to_string(), String::new());
    }
    let current = live_layouts(owner, live);
    let mut slices = Vec::new();
    for port in &plan.ports {
        let listing = host_roles::list_port(port, health);
        for address_type in ["IPv4", "IPv6"] {
            let hosts: std::collections::BTreeSet<IpAddr> = port
                .hosts
                .iter()
                .copied()
                .filter(|h| family(h) == address_type)
                .collect();
            let now = current
                .get(&(port.name.as_str(), address_type))
                .cloned()
                .unwrap_or_default();
            let layout = placement::place(&hosts, &now, MAX_ENDPOINTS_PER_SLICE);
            for (index, chunk) in layout {
                let endpoints = chunk
                    .iter()
                    .map(|host| endpoint(port, &listing, *host))
                    .collect();
                slices.push(EndpointSlice {
                    metadata: owner.meta(
                        slice_name(&owner.name, &port.name, address_type, index),
                        labels.clone(),
                    ),
                    address_type: address_type.to_string(),
                    endpoints,
                    ports: Some(vec![SlicePort {
                        name: Some(port.service_port.clone()),
                        port: Some(port.target_port.into()),
                        protocol: Some(port.protocol.clone()),
                        app_protocol: None,
                    }]),
                });
            }
        }
    }
    slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    slices
}

/// One endpoint of a slice: the host's conditions, zone, hint and hostname.
fn endpoint(port: &PortPlan, listing: &host_roles::PortListing, host: IpAddr) -> Endpoint {
    let attrs = attributes(port, host);
    let conditions = listing.hosts.get(&host).copied();
    let hints = attrs
        .zone
        .as_ref()
        .filter(|_| listing.zone_hints)
        .map(|zone| EndpointHints {
            for_zones: Some(vec![ForZone { name: zone.clone() }]),
            ..EndpointHints::default()
        });
    Endpoint {
        addresses: vec![host.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(conditions.is_some_and(|c| c.ready)),
            serving: Some(conditions.is_some_and(|c| c.serving)),
            terminating: Some(conditions.is_some_and(|c| c.terminating)),
        }),
        hostname: attrs.hostname.clone(),
        zone: attrs.zone.clone(),
        hints,
        ..Endpoint::default()
    }
}

/// What our live slices hold, per (port key, address family): the input
/// of placement. Slices of other names (another object's, or our older
/// naming) hold nothing here, so their hosts are placed anew.
fn live_layouts<'a>(
    owner: &Owner,
    live: &[&'a EndpointSlice],
) -> BTreeMap<(&'a str, &'static str), placement::Layout> {
    let mut layouts: BTreeMap<(&str, &str), placement::Layout> = BTreeMap::new();
    for slice in live {
        let Some(name) = slice.metadata.name.as_deref() else {
            continue;
        };
        let Some((object, port, family, index)) = parse_slice_name(name) else {
            continue;
        };
        if object != owner.name || slice.address_type != family {
            continue;
        }
        let hosts = slice
            .endpoints
            .iter()
            .flat_map(|e| &e.addresses)
            .filter_map(|a| a.parse().ok())
            .collect();
        layouts
            .entry((port, family))
            .or_default()
            .insert(index, hosts);
    }
    layouts
}

/// The compatibility Endpoints: one subset per port, ready hosts in
/// `addresses`, the rest (drained hosts and standby backups too) in
/// `notReadyAddresses`.
pub fn endpoints(owner: &Owner, plan: &Plan, health: &BTreeMap<TargetId, Health>) -> Endpoints {
    let subsets = plan
        .ports
        .iter()
        .map(|port| {
            let listing = host_roles::list_port(port, health);
            let (ready, not_ready): (Vec<IpAddr>, Vec<IpAddr>) = port
                .hosts
                .iter()
                .partition(|h| listing.hosts.get(h).is_some_and(|l| l.ready));
            let addresses = |hosts: Vec<IpAddr>| {
                (!hosts.is_empty()).then(|| {
                    hosts
                        .into_iter()
                        .map(|ip| EndpointAddress {
                            ip: ip.to_string(),
                            hostname: attributes(port, ip).hostname.clone(),
                            ..EndpointAddress::default()
                        })
                        .collect()
                })
            };
            EndpointSubset {
                addresses: addresses(ready),
                not_ready_addresses: addresses(not_ready),
                ports: Some(vec![EndpointPort {
                    name: Some(port.service_port.clone()),
                    port: port.target_port.into(),
                    protocol: Some(port.protocol.clone()),
                    app_protocol: None,
                }]),
            }
        })
        .collect();
    let mut subsets: Vec<EndpointSubset> = subsets;
    let truncated = truncate_endpoints(&mut subsets, MAX_ENDPOINTS_ADDRESSES);
    let labels = BTreeMap::from([(LABEL_SKIP_MIRROR.to_string(), "true".to_string())]);
    let mut metadata = owner.meta(owner.name.clone(), labels);
    if truncated {
        metadata.annotations = Some(BTreeMap::from([(
            ANNOTATION_OVER_CAPACITY.to_string(),
            "truncated".to_string(),
        )]));
    }
    Endpoints {
        metadata,
        subsets: Some(subsets),
    }
}

/// Every address of a subset, ready ones first.
pub fn subset_addresses(subset: &EndpointSubset) -> impl Iterator<Item = &EndpointAddress> {
    subset
        .addresses
        .iter()
        .flatten()
        .chain(subset.not_ready_addresses.iter().flatten())
}

/// Keep at most `max` addresses over all subsets, as the Kubernetes
/// endpoints controller does (`truncateEndpoints`): ready addresses first;
/// each subset keeps a share proportional to its size (rounded up, in
/// order, until the budget is spent). Subsets left empty are dropped (the
/// API refuses them). Whether anything was cut.
pub fn truncate_endpoints(subsets: &mut Vec<EndpointSubset>, max: usize) -> bool {
    let count = |a: &Option<Vec<EndpointAddress>>| a.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= max {
        return false;
    }
    let truncate_ready = ready > max;
    let (budget, total) = if truncate_ready {
        (max, ready)
    } else {
        (max - ready, not_ready)
    };
    let mut left = budget;
    for subset in subsets.iter_mut() {
        let list = if truncate_ready {
            subset.not_ready_addresses = None;
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        let size = count(list);
        // ceil(size / total * budget), in integers.
        let share = (size * budget).div_ceil(total.max(1)).min(left);
        if let Some(addresses) = list.as_mut() {
            addresses.truncate(share);
            left -= addresses.len();
        }
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
    }
    subsets.retain(|s| count(&s.addresses) + count(&s.not_ready_addresses) > 0);
    true
}

/// Health to start new targets from, so that taking over hosts that
/// already serve changes nothing until a probe says so: after a restart or
/// failover, when adopting a hand-made Service + Endpoints, and when
/// taking over endpoints-operator's objects. `slices` are the slices of the
/// object's Service that we can see (ours, or orphaned ones of our
/// controller id); `endpoints` is the Endpoints of its name, whoever wrote
/// it (`addresses` ready, `notReadyAddresses` not ready). The slices win
/// where both know a target: they also record why a host is out.
pub fn seed<'a>(
    plan: &Plan,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    endpoints: Option<&Endpoints>,
) -> BTreeMap<TargetId, bool> {
    let mut seed = endpoints
        .map(|e| seed_from_endpoints(plan, e))
        .unwrap_or_default();
    seed.extend(seed_from_slices(plan, slices));
    seed
}

/// Health recorded in an Endpoints: every subset port that matches a plan
/// port by target port and protocol (and by name, when the Endpoints names
/// its ports) gives that port's targets.
pub fn seed_from_endpoints(plan: &Plan, endpoints: &Endpoints) -> BTreeMap<TargetId, bool> {
    let mut seed = BTreeMap::new();
    for subset in endpoints.subsets.iter().flatten() {
        for ep_port in subset.ports.iter().flatten() {
            let protocol = ep_port.protocol.as_deref().unwrap_or("TCP");
            let name = ep_port.name.as_deref().unwrap_or_default();
            let matching = plan.ports.iter().filter(|p| {
                i32::from(p.target_port) == ep_port.port
                    && p.protocol == protocol
                    && (name.is_empty() || name == p.service_port)
            });
            for port in matching {
                let lists = [
                    (&subset.addresses, true),
                    (&subset.not_ready_addresses, false),
                ];
                for (addresses, ready) in lists {
                    for address in addresses.iter().flatten() {
                        if let Ok(host) = address.ip.parse() {
                            let id = TargetId {
                                port: port.name.clone(),
                                host,
                            };
                            seed.insert(id, ready);
                        }
                    }
                }
            }
        }
    }
    seed
}

/// Health recorded in EndpointSlices. A slice's (port name, port number)
/// says which plan port it belongs to; slices of ports no longer in the
/// plan are ignored.
pub fn seed_from_slices<'a>(
    plan: &Plan,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> BTreeMap<TargetId, bool> {
    let ports: BTreeMap<(&str, i32), &str> = plan
        .ports
        .iter()
        .map(|p| {
            (
                (p.service_port.as_str(), i32::from(p.target_port)),
                p.name.as_str(),
            )
        })
        .collect();
    let mut seed = BTreeMap::new();
    for slice in slices {
        let Some(port) = slice
            .ports
            .as_ref()
            .and_then(|p| p.first())
            .and_then(|p| Some((p.name.as_deref()?, p.port?)))
            .and_then(|key| ports.get(&key))
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            // The probe verdict is `serving`: the same as `ready` but for a
            // drained host (terminating) and a backup on standby, which are
            // not ready whatever their verdict ([`crate::host_roles`]).
            let conditions = endpoint.conditions.as_ref();
            let ready = conditions
                .and_then(|c| c.serving.or(c.ready))
                .unwrap_or(false);
            for address in &endpoint.addresses {
                if let Ok(host) = address.parse() {
                    let id = TargetId {
                        port: (*port).to_string(),
                        host,
                    };
                    seed.insert(id, ready);
                }
            }
        }
    }
    seed
}

#[cfg(test)]
#[path = "builder_tests.rs"]
mod tests;
