//! Build: the pure heart of the controller. From a validated [`Plan`] and a
//! health snapshot it computes the Service, EndpointSlices, Endpoints and
//! status that should exist. No I/O and no clock: the caller passes `now`, so
//! equal input always gives byte-equal output and the reconciler can skip
//! writes when nothing changed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube_endpoints_api::{
    CONDITION_INITIALIZED, CONDITION_READY, CONDITION_SYNC_ENDPOINT, CONDITION_SYNC_SERVICE,
    ClusterEndpointStatus, Condition, Phase, PortStatus, UnhealthyHost,
};
use kube_endpoints_probe::{Health, HealthState, TargetId};

use crate::plan::{InvalidSpec, Plan, PortPlan};

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
pub fn slice_name(object: &str, port: &str, address_type: &str, index: usize) -> String {
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

/// Why a Service or Endpoints of the object's name cannot be managed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Stable, CamelCase; used as condition reason, Event reason and metric label.
    pub reason: &'static str,
    pub message: String,
}

/// What to do with an object of our name that may already exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Nothing there: create it.
    Create,
    /// Already ours.
    Owned,
    /// Hand-made and unowned: take it over in place.
    Adopt,
    Refuse(Refusal),
}

fn controller_uid(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

fn ownership_by_refs(meta: &ObjectMeta, owner: &Owner, what: &str) -> Ownership {
    match controller_uid(meta) {
        Some(r) if r.uid == owner.uid => Ownership::Owned,
        Some(r) => Ownership::Refuse(Refusal {
            reason: "OwnedByAnotherController",
            message: format!(
                "{what} {}/{} is controlled by {} {}; refusing to take it over",
                owner.namespace, owner.name, r.kind, r.name
            ),
        }),
        None => Ownership::Adopt,
    }
}

/// Decide whether an existing Service may be managed (SPEC §2.2: adopt an
/// unowned selector-less ClusterIP Service; refuse anything else, saying why).
pub fn service_ownership(existing: Option<&Service>, owner: &Owner, plan: &Plan) -> Ownership {
    let Some(svc) = existing else {
        return Ownership::Create;
    };
    let decision = ownership_by_refs(&svc.metadata, owner, "Service");
    if matches!(decision, Ownership::Refuse(_)) {
        return decision;
    }
    let spec = svc.spec.clone().unwrap_or_default();
    let refuse = |reason, message: String| Ownership::Refuse(Refusal { reason, message });
    if spec.selector.as_ref().is_some_and(|s| !s.is_empty()) {
        return refuse(
            "ServiceHasSelector",
            format!(
                "Service {}/{} has a selector, so Kubernetes manages its endpoints; remove the selector or choose another name",
                owner.namespace, owner.name
            ),
        );
    }
    let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
    if type_ != "ClusterIP" {
        return refuse(
            "ServiceTypeConflict",
            format!(
                "Service {}/{} is of type {type_}; only ClusterIP Services can be managed",
                owner.namespace, owner.name
            ),
        );
    }
    let existing_headless = spec.cluster_ip.as_deref() == Some("None");
    let has_ip = spec.cluster_ip.as_deref().is_some_and(|ip| !ip.is_empty());
    if has_ip && existing_headless != plan.headless {
        let (have, want) = if existing_headless {
            ("headless", "a ClusterIP")
        } else {
            ("a ClusterIP", "headless")
        };
        return refuse(
            "ClusterIPConflict",
            format!(
                "Service {}/{} is {have} Service but spec.clusterIP asks for {want} one; clusterIP is immutable, delete the Service or change spec.clusterIP",
                owner.namespace, owner.name
            ),
        );
    }
    decision
}

/// Decide whether an existing Endpoints may be managed.
pub fn endpoints_ownership(existing: Option<&Endpoints>, owner: &Owner) -> Ownership {
    match existing {
        None => Ownership::Create,
        Some(ep) => ownership_by_refs(&ep.metadata, owner, "Endpoints"),
    }
}

/// Outcome of one sync step, as reported in a condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sync {
    Done,
    Failed { reason: String, message: String },
}

/// Everything that decides the status.
pub struct StatusInput<'a> {
    pub generation: Option<i64>,
    pub plan: Result<&'a Plan, &'a InvalidSpec>,
    pub health: &'a BTreeMap<TargetId, Health>,
    pub service: Sync,
    pub endpoints: Sync,
    pub previous: Option<&'a ClusterEndpointStatus>,
    /// RFC 3339, seconds precision.
    pub now: &'a str,
}

/// The status for this input. Times are kept from `previous` wherever the
/// thing they date did not change, so equal health gives an equal status.
pub fn status(input: &StatusInput<'_>) -> ClusterEndpointStatus {
    let previous_ports: BTreeMap<&str, &PortStatus> = input
        .previous
        .map(|s| s.ports.iter().map(|p| (p.name.as_str(), p)).collect())
        .unwrap_or_default();
    let (phase, ready, ports) = match input.plan {
        Ok(plan) => {
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
            (phase, Some(format!("{ready}/{total}")), ports)
        }
        Err(_) => (Phase::UnHealthy, None, Vec::new()),
    };

    let mut conditions = Vec::with_capacity(4);
    let initialized = match input.plan {
        Ok(_) => cond(
            CONDITION_INITIALIZED,
            true,
            "Initialized",
            "cluster endpoints has been initialized",
        ),
        Err(invalid) => cond(
            CONDITION_INITIALIZED,
            false,
            "InvalidSpec",
            &invalid.to_string(),
        ),
    };
    conditions.push(initialized);
    let sync_cond = |type_, ok_reason, ok_message, sync: &Sync| match sync {
        Sync::Done => cond(type_, true, ok_reason, ok_message),
        Sync::Failed { reason, message } => cond(type_, false, reason, message),
    };
    let not_attempted = Sync::Failed {
        reason: "InvalidSpec".into(),
        message: "not synced: the spec is invalid".into(),
    };
    let (service, endpoints) = match input.plan {
        Ok(_) => (&input.service, &input.endpoints),
        Err(_) => (&not_attempted, &not_attempted),
    };
    conditions.push(sync_cond(
        CONDITION_SYNC_SERVICE,
        "SyncServiceReady",
        "sync service successfully",
        service,
    ));
    conditions.push(sync_cond(
        CONDITION_SYNC_ENDPOINT,
        "SyncEndpointReady",
        "sync endpoint successfully",
        endpoints,
    ));
    let ready_cond = match (input.plan, service, endpoints, phase) {
        (Err(invalid), ..) => cond(CONDITION_READY, false, "InvalidSpec", &invalid.to_string()),
        (Ok(_), Sync::Failed { reason, message }, _, _)
        | (Ok(_), Sync::Done, Sync::Failed { reason, message }, _) => {
            cond(CONDITION_READY, false, reason, message)
        }
        (Ok(_), Sync::Done, Sync::Done, Phase::Healthy) => cond(
            CONDITION_READY,
            true,
            "Ready",
            "ClusterEndpoint is available now",
        ),
        (Ok(_), Sync::Done, Sync::Done, Phase::Pending) => cond(
            CONDITION_READY,
            false,
            "Pending",
            "waiting for the first probe results",
        ),
        (Ok(_), Sync::Done, Sync::Done, Phase::UnHealthy) => {
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
    conditions.push(ready_cond);

    let previous_conditions: BTreeMap<&str, &Condition> = input
        .previous
        .map(|s| s.conditions.iter().map(|c| (c.type_.as_str(), c)).collect())
        .unwrap_or_default();
    for c in &mut conditions {
        stamp(
            c,
            previous_conditions.get(c.type_.as_str()).copied(),
            input.now,
        );
    }

    ClusterEndpointStatus {
        observed_generation: input.generation,
        phase: Some(phase),
        ready,
        conditions,
        ports,
    }
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
        total: i32::try_from(port.hosts.len()).unwrap_or(i32::MAX),
        unhealthy,
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

/// Names of the slices in `desired`, to find stale ones to delete.
pub fn names<'a, T: kube::Resource + 'a>(
    objects: impl IntoIterator<Item = &'a T>,
) -> BTreeSet<String> {
    objects
        .into_iter()
        .filter_map(|o| o.meta().name.clone())
        .collect()
}

#[cfg(test)]
#[path = "builder_tests.rs"]
mod tests;
