//! Build: the pure heart of the controller. From a validated [`Plan`] and a
//! health snapshot it computes the [`Desired`] state: the Service,
//! EndpointSlices and Endpoints that should exist. No I/O and no clock, so
//! equal input always gives byte-equal output; the `writes` module compares
//! it with what is live and `status` reports on it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube_endpoints_probe::{Health, HealthState, TargetId};

use crate::plan::{Plan, PortPlan};

/// Label tying an EndpointSlice to its Service (read by kube-proxy).
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages an EndpointSlice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// Stops Kubernetes mirroring our compatibility Endpoints into a second set of slices.
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Kubernetes allows up to 1000; 100 is what the EndpointSlice controller uses
/// and keeps each write small when one host flips.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

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

/// The whole desired state at once, from one health snapshot.
pub fn desired(
    owner: &Owner,
    plan: &Plan,
    health: &BTreeMap<TargetId, Health>,
    settings: &BuildSettings,
) -> Desired {
    Desired {
        owner: owner.clone(),
        service: service(owner, plan),
        slices: endpoint_slices(owner, plan, health, &settings.controller_id),
        endpoints: settings
            .compat_endpoints
            .then(|| endpoints(owner, plan, health)),
    }
}

/// Whether `slice` is one of the EndpointSlices we built for `owner`: our
/// labels and `owner` as controller. Only those are seeded from and pruned.
pub fn is_own_slice(slice: &EndpointSlice, owner: &Owner, controller_id: &str) -> bool {
    slice.metadata.namespace.as_deref() == Some(owner.namespace.as_str())
        && slice.labels().get(LABEL_SERVICE_NAME) == Some(&owner.name)
        && slice.labels().get(LABEL_MANAGED_BY).map(String::as_str) == Some(controller_id)
        && slice.owner_references().iter().any(|r| r.uid == owner.uid)
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
/// apply leaves an adopted Service's clusterIP, labels and annotations alone.
pub fn service(owner: &Owner, plan: &Plan) -> Service {
    let ports = plan
        .ports
        .iter()
        .filter(|p| p.primary)
        .map(|p| ServicePort {
            name: Some(p.name.clone()),
            port: p.port,
            protocol: Some(p.protocol.clone()),
            target_port: Some(IntOrString::Int(p.target_port.into())),
            ..ServicePort::default()
        })
        .collect();
    Service {
        metadata: owner.meta(owner.name.clone(), BTreeMap::new()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: plan.headless.then(|| "None".to_string()),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn family(ip: &IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

/// Deterministic slice name: `<object>-<port>-<ipv4|ipv6>-<n>`.
fn slice_name(object: &str, port: &str, address_type: &str, index: usize) -> String {
    format!(
        "{object}-{port}-{}-{index}",
        address_type.to_ascii_lowercase()
    )
}

/// EndpointSlices: per port and address family, at most
/// [`MAX_ENDPOINTS_PER_SLICE`] endpoints each, sorted by name. Unhealthy hosts
/// stay listed with ready=false and serving=false so they remain visible.
pub fn endpoint_slices(
    owner: &Owner,
    plan: &Plan,
    health: &BTreeMap<TargetId, Health>,
    controller_id: &str,
) -> Vec<EndpointSlice> {
    let labels = BTreeMap::from([
        (LABEL_SERVICE_NAME.to_string(), owner.name.clone()),
        (LABEL_MANAGED_BY.to_string(), controller_id.to_string()),
    ]);
    let mut slices = Vec::new();
    for port in &plan.ports {
        for address_type in ["IPv4", "IPv6"] {
            // Hosts are sorted, so each family's chunks are stable.
            let hosts: Vec<IpAddr> = port
                .hosts
                .iter()
                .copied()
                .filter(|h| family(h) == address_type)
                .collect();
            for (index, chunk) in hosts.chunks(MAX_ENDPOINTS_PER_SLICE).enumerate() {
                let endpoints = chunk
                    .iter()
                    .map(|host| {
                        let ready = is_ready(port, *host, health);
                        Endpoint {
                            addresses: vec![host.to_string()],
                            conditions: Some(EndpointConditions {
                                ready: Some(ready),
                                serving: Some(ready),
                                terminating: Some(false),
                            }),
                            ..Endpoint::default()
                        }
                    })
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

/// The compatibility Endpoints: one subset per port, ready hosts in
/// `addresses`, the rest in `notReadyAddresses`.
pub fn endpoints(owner: &Owner, plan: &Plan, health: &BTreeMap<TargetId, Health>) -> Endpoints {
    let subsets = plan
        .ports
        .iter()
        .map(|port| {
            let (ready, not_ready): (Vec<IpAddr>, Vec<IpAddr>) =
                port.hosts.iter().partition(|h| is_ready(port, **h, health));
            let addresses = |hosts: Vec<IpAddr>| {
                (!hosts.is_empty()).then(|| {
                    hosts
                        .into_iter()
                        .map(|ip| EndpointAddress {
                            ip: ip.to_string(),
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
    let labels = BTreeMap::from([(LABEL_SKIP_MIRROR.to_string(), "true".to_string())]);
    Endpoints {
        metadata: owner.meta(owner.name.clone(), labels),
        subsets: Some(subsets),
    }
}

/// Health recorded in our own EndpointSlices, used to seed the probe engine
/// after a restart or failover so that nothing changes until a probe says so.
/// A slice's (port name, port number) says which plan port it belongs to;
/// slices of ports no longer in the plan are ignored.
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
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
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
