//! `kube-endpoints import`: turn a hand-made selector-less Service and its
//! Endpoints (for example a Ceph RGW farm: one unnamed Service port, each
//! host listed on 8080 and on 8081) into a ClusterEndpoint that, once
//! applied, adopts that same Service in place.
//!
//! The mapping is pure ([`import`]); the command reads the two objects (from
//! the cluster, [`read_from_cluster`], or a file, [`read_from_manifest`]) and
//! prints YAML ([`to_yaml`]). It mirrors how kube-proxy reads such objects: a
//! Service port is served by the Endpoints ports of the same name and
//! protocol, on whatever port numbers those carry.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use std::path::Path;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::Api;
use kube::{Client, ResourceExt};
use kube_endpoints_api::{
    ClusterEndpointPort, ClusterEndpointSpec, DEFAULT_FAILURE_THRESHOLD, DEFAULT_SUCCESS_THRESHOLD,
    DEFAULT_TIMEOUT_SECONDS, GrpcHandler, HostEntry, HttpGetHandler, KIND, TcpSocketHandler,
    UdpSocketHandler, VERSION,
};
use serde_json::{Value, json};

use crate::plan::{is_endpoint_ip, plan};
use crate::yaml;

/// The health check the imported ports get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeChoice {
    Tcp,
    Http,
    Https,
    Udp,
    Grpc,
    /// No probe: static endpoints, always ready.
    None,
}

#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub group: String,
    pub probe: ProbeChoice,
    /// Path of HTTP(S) probes.
    pub http_path: String,
    pub period_seconds: i32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    #[error(
        "Service {0} has a selector: Kubernetes manages its endpoints, there is nothing to import"
    )]
    HasSelector(String),
    #[error("Service {name} is of type {type_}; only ClusterIP Services can be imported")]
    NotClusterIp { name: String, type_: String },
    #[error("Service {0} has no ports")]
    NoPorts(String),
    #[error(
        "Service {service} port {port}: no Endpoints port named {name:?} ({protocol}) serves it"
    )]
    NoEndpoints {
        service: String,
        port: i32,
        name: String,
        protocol: String,
    },
    #[error("Endpoints {name}: address {ip:?} cannot be a ClusterEndpoint host ({why})")]
    BadAddress {
        name: String,
        ip: String,
        why: &'static str,
    },
    #[error("the imported object would be invalid: {0}")]
    Invalid(String),
}

/// What [`import`] made, with what a human should know about it.
#[derive(Debug)]
pub struct Imported {
    /// The ClusterEndpoint, ready to print as YAML.
    pub object: Value,
    /// Things that were approximated (printed as YAML comments).
    pub notes: Vec<String>,
}

/// Build a ClusterEndpoint from `service` and its `endpoints`.
pub fn import(
    service: &Service,
    endpoints: Option<&Endpoints>,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let name = service.name_any();
    let spec = service.spec.clone().unwrap_or_default();
    if spec.selector.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ImportError::HasSelector(name));
    }
    let type_ = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
    if type_ != "ClusterIP" {
        return Err(ImportError::NotClusterIp { name, type_ });
    }
    let service_ports = spec.ports.clone().unwrap_or_default();
    if service_ports.is_empty() {
        return Err(ImportError::NoPorts(name));
    }
    let mut notes = Vec::new();

    // (port name, protocol) -> target port -> hosts, from every subset.
    let mut served: BTreeMap<(String, String), BTreeMap<i32, BTreeSet<IpAddr>>> = BTreeMap::new();
    for subset in endpoints
        .and_then(|e| e.subsets.clone())
        .unwrap_or_default()
    {
        let addresses = subset
            .addresses
            .iter()
            .flatten()
            .chain(subset.not_ready_addresses.iter().flatten());
        let mut ips = BTreeSet::new();
        for address in addresses {
            ips.insert(endpoint_ip(&name, &address.ip)?);
        }
        for port in subset.ports.iter().flatten() {
            let key = (
                port.name.clone().unwrap_or_default(),
                port.protocol.clone().unwrap_or_else(|| "TCP".into()),
            );
            served
                .entry(key)
                .or_default()
                .entry(port.port)
                .or_default()
                .extend(ips.iter().copied());
        }
    }

    let mut ports = Vec::with_capacity(service_ports.len());
    for sp in &service_ports {
        let protocol = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
        let service_port_name = sp.name.clone().unwrap_or_default();
        let by_target = served
            .get(&(service_port_name.clone(), protocol.clone()))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ImportError::NoEndpoints {
                service: name.clone(),
                port: sp.port,
                name: service_port_name.clone(),
                protocol: protocol.clone(),
            })?;
        // A ClusterEndpoint port needs a name; a single unnamed Service
        // port gets one (the adopted Service's port is renamed to it).
        let port_name = if service_port_name.is_empty() {
            let generated = format!("{}-{}", protocol.to_ascii_lowercase(), sp.port);
            notes.push(format!(
                "Service port {}/{protocol} has no name; it is named {generated:?}",
                sp.port
            ));
            generated
        } else {
            service_port_name
        };
        let target_ports: Vec<i32> = by_target.keys().copied().collect();
        let hosts: BTreeSet<IpAddr> = by_target.values().flatten().copied().collect();
        if by_target.values().any(|h| h.len() != hosts.len()) {
            notes.push(format!(
                "port {port_name}: not every host served every target port ({}); each host is now probed on all of them",
                target_ports
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let mut port = ClusterEndpointPort {
            name: port_name,
            hosts: hosts
                .iter()
                .map(|h| HostEntry::Address(h.to_string()))
                .collect(),
            min_ready: None,
            protocol: protocol.clone(),
            port: sp.port,
            target_port: target_ports[0],
            additional_target_ports: target_ports[1..].to_vec(),
            tcp_socket: None,
            http_get: None,
            udp_socket: None,
            grpc: None,
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            success_threshold: DEFAULT_SUCCESS_THRESHOLD,
            period_seconds: None,
            initial_delay_seconds: None,
            probe_port: None,
            unhealthy_period_seconds: None,
            jitter_percent: None,
            edge_period_seconds: None,
            fail_open: Default::default(),
            resolve_period_seconds: None,
        };
        set_probe(&mut port, options);
        ports.push(port);
    }

    let spec = ClusterEndpointSpec {
        period_seconds: options.period_seconds,
        cluster_ip: (spec.cluster_ip.as_deref() == Some("None")).then(|| "None".to_string()),
        hosts: Vec::new(),
        resolve_period_seconds: None,
        ports,
        fail_open: Default::default(),
        session_affinity: None,
        session_affinity_config: None,
        internal_traffic_policy: None,
        traffic_distribution: None,
        service_labels: Default::default(),
        service_annotations: Default::default(),
        publish_not_ready_addresses: None,
    };
    // Only ever print what the apiserver and the controller will accept.
    plan(&name, &spec).map_err(|e| ImportError::Invalid(e.to_string()))?;
    let mut metadata = json!({"name": name});
    if let Some(ns) = service.namespace() {
        metadata["namespace"] = json!(ns);
    }
    let object = json!({
        "apiVersion": format!("{}/{VERSION}", options.group),
        "kind": KIND,
        "metadata": metadata,
        "spec": spec,
    });
    Ok(Imported { object, notes })
}

fn endpoint_ip(name: &str, ip: &str) -> Result<IpAddr, ImportError> {
    let bad = |why| ImportError::BadAddress {
        name: name.to_string(),
        ip: ip.to_string(),
        why,
    };
    let parsed: IpAddr = ip.parse().map_err(|_| bad("not an IP literal"))?;
    if !is_endpoint_ip(&parsed) {
        return Err(bad(
            "loopback, link-local, multicast and unspecified addresses cannot be endpoints",
        ));
    }
    Ok(parsed)
}

fn set_probe(port: &mut ClusterEndpointPort, options: &ImportOptions) {
    let http = |scheme: &str| HttpGetHandler {
        path: Some(options.http_path.clone()),
        scheme: Some(scheme.to_string()),
        host: None,
        http_headers: Vec::new(),
        ..HttpGetHandler::default()
    };
    match options.probe {
        ProbeChoice::Tcp => {
            port.tcp_socket = Some(TcpSocketHandler {
                enable: true,
                ..TcpSocketHandler::default()
            })
        }
        ProbeChoice::Http => port.http_get = Some(http("http")),
        ProbeChoice::Https => port.http_get = Some(http("https")),
        ProbeChoice::Udp => {
            port.udp_socket = Some(UdpSocketHandler {
                enable: true,
                data: None,
                ..UdpSocketHandler::default()
            })
        }
        ProbeChoice::Grpc => {
            port.grpc = Some(GrpcHandler {
                enable: true,
                service: None,
                ..GrpcHandler::default()
            })
        }
        ProbeChoice::None => {}
    }
}

/// The YAML the command prints: notes as comments, then the object.
pub fn to_yaml(imported: &Imported) -> Result<String, yaml::WriteError> {
    let mut out = String::new();
    for note in &imported.notes {
        out.push_str("# note: ");
        out.push_str(note);
        out.push('\n');
    }
    out.push_str(&yaml::to_string(&imported.object)?);
    Ok(out)
}

/// Why the Service and Endpoints to import could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    File(#[from] yaml::FileError),
    #[error("document {index} of {path}: invalid {kind}: {source}")]
    Invalid {
        path: String,
        index: usize,
        kind: &'static str,
        source: serde_json::Error,
    },
    #[error("{path} has no Service named {name:?}")]
    NotInManifest { path: String, name: String },
    #[error("Service {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    #[error("cannot read {what}: {source}")]
    Api { what: String, source: kube::Error },
}

/// The Service named `name` and the Endpoints of that name, from a manifest.
pub fn read_from_manifest(
    file: &Path,
    name: &str,
) -> Result<(Service, Option<Endpoints>), ReadError> {
    let path = file.display().to_string();
    let (mut service, mut endpoints) = (None, None);
    for (index, value) in yaml::read_file(file)?.into_iter().enumerate() {
        if value["metadata"]["name"].as_str() != Some(name) {
            continue;
        }
        let invalid = |kind| {
            let path = path.clone();
            move |source| ReadError::Invalid {
                path,
                index,
                kind,
                source,
            }
        };
        match value["kind"].as_str() {
            Some("Service") => {
                service = Some(serde_json::from_value(value).map_err(invalid("Service"))?);
            }
            Some("Endpoints") => {
                endpoints = Some(serde_json::from_value(value).map_err(invalid("Endpoints"))?);
            }
            _ => {}
        }
    }
    let service = service.ok_or_else(|| ReadError::NotInManifest {
        path,
        name: name.to_string(),
    })?;
    Ok((service, endpoints))
}

/// The Service `namespace/name` and its Endpoints, from the cluster.
pub async fn read_from_cluster(
    client: Client,
    namespace: &str,
    name: &str,
) -> Result<(Service, Option<Endpoints>), ReadError> {
    let api_error = |what: &str| {
        let what = format!("{what} {namespace}/{name}");
        move |source| ReadError::Api { what, source }
    };
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let service = services
        .get_opt(name)
        .await
        .map_err(api_error("Service"))?
        .ok_or_else(|| ReadError::NotFound {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })?;
    let endpoints: Api<Endpoints> = Api::namespaced(client, namespace);
    let endpoints = endpoints
        .get_opt(name)
        .await
        .map_err(api_error("Endpoints"))?;
    Ok((service, endpoints))
}

#[cfg(test)]
#[path = "import_tests.rs"]
mod tests;
