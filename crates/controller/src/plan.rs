//! Validate: turn a ClusterEndpoint spec into a [`Plan`] — defaults applied,
//! hosts parsed and sorted, probes translated for the probe engine — or into
//! field errors that name exactly what is wrong.
//!
//! The apiserver enforces the same rules through the CRD schema; this step
//! exists because objects may also come through a CRD that is not ours (the
//! predecessor's has no validation), and because `kube-endpoints check`
//! validates manifests with no cluster at all.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use kube_endpoints_api::{
    ClusterEndpointPort, ClusterEndpointSpec, HttpGetHandler, MAX_HOSTS, MAX_PORTS, MAX_SECONDS,
    MAX_TARGETS_PER_OBJECT, MAX_THRESHOLD, OWNED_HEADERS, UdpData,
};
use kube_endpoints_probe::{
    GrpcProbe, HttpGet, Intervals, Probe, Scheme, TargetId, TargetSpec, Thresholds, UdpProbe,
};

/// A validated, normalised ClusterEndpoint: everything the builder and the
/// probe engine need, with no optional fields left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub headless: bool,
    /// Sorted by name.
    pub ports: Vec<PortPlan>,
}

/// One (Service port, target port) pair. A spec port with
/// `additionalTargetPorts` becomes several: the first keeps the spec port's
/// name, the others are named `<name>-<targetPort>`; all share the Service
/// port named `service_port`. The one port of a single-port object may be
/// unnamed, as in endpoints-operator (and a Kubernetes Service): its Service
/// port stays unnamed and its key is `<protocol>-<port>` (`tcp-80`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortPlan {
    /// Unique key: names the EndpointSlices and the status entry.
    pub name: String,
    /// The Service port these hosts serve (the spec port's name).
    pub service_port: String,
    /// Whether this entry defines the Service port (false for the extra
    /// target ports of a spec port).
    pub primary: bool,
    pub protocol: String,
    pub port: i32,
    pub target_port: u16,
    /// Sorted, unique; probed and written.
    pub hosts: Vec<IpAddr>,
    /// Listed hosts the address policy refuses (see [`crate::policy`]):
    /// never probed, never written, only reported. Empty as `plan` makes it.
    pub denied: Vec<crate::policy::Denial>,
    /// `None` for a static port: always ready, never probed.
    pub probe: Option<Probe>,
    pub period: Duration,
    pub timeout: Duration,
    pub thresholds: Thresholds,
    pub initial_delay: Duration,
}

impl PortPlan {
    /// The probe-type label used in status and metrics.
    pub fn probe_label(&self) -> &'static str {
        self.probe.as_ref().map_or("none", |p| p.kind().as_str())
    }

    fn target_spec(&self) -> Option<TargetSpec> {
        let probe = self.probe.clone()?;
        Some(TargetSpec {
            probe: std::sync::Arc::new(probe),
            target_port: self.target_port,
            probe_port: None,
            period: self.period,
            timeout: self.timeout,
            thresholds: self.thresholds,
            initial_delay: self.initial_delay,
            intervals: Intervals::default(),
        })
    }
}

impl Plan {
    /// Host-ports the object declares (allowed or denied), what the target
    /// budgets count.
    pub fn target_count(&self) -> usize {
        self.ports
            .iter()
            .map(|p| p.hosts.len() + p.denied.len())
            .sum()
    }

    /// Every probed (port, host) target and how to probe it.
    pub fn targets(&self) -> BTreeMap<TargetId, TargetSpec> {
        let mut targets = BTreeMap::new();
        for port in &self.ports {
            let Some(spec) = port.target_spec() else {
                continue;
            };
            for host in &port.hosts {
                targets.insert(
                    TargetId {
                        port: port.name.clone(),
                        host: *host,
                    },
                    spec.clone(),
                );
            }
        }
        targets
    }
}

/// Bounds the CRD's schema also enforces (see the api crate); repeated here
/// for objects stored before our CRD replaced the predecessor's.
const MAX_ADDITIONAL_TARGET_PORTS: usize = 10;
const MAX_UDP_DATA: usize = 8192;
const MAX_PATH: usize = 2048;
const MAX_HEADERS: usize = 32;
const MAX_HEADER_NAME: usize = 256;
const MAX_HEADER_VALUE: usize = 4096;
const MAX_GRPC_SERVICE: usize = 253;

/// One problem with one field, in the apiserver's own style
/// (`spec.ports[1].targetPort: must be between 1 and 65535, got 0`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All field errors of one object, joined for conditions and Events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSpec(pub Vec<FieldError>);

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for InvalidSpec {}

struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn range(&mut self, field: &str, value: i64, min: i64, max: i64) {
        if value < min || value > max {
            self.push(
                field,
                format!("must be between {min} and {max}, got {value}"),
            );
        }
    }
}

/// Validate `name` (the object's name, which becomes the Service's) and
/// `spec`, returning the plan or every error found. References to Secrets
/// and ConfigMaps are not resolved ([`Deferred`]): the probes miss that
/// material. What the controller acts on comes from [`plan_with`].
pub fn plan(name: &str, spec: &ClusterEndpointSpec) -> Result<Plan, InvalidSpec> {
    plan_with(name, spec, &Deferred)
}

/// [`plan`], with the Secrets and ConfigMaps the spec refers to resolved
/// by `resolve` (a missing one is a field error naming it).
pub fn plan_with(
    name: &str,
    spec: &ClusterEndpointSpec,
    resolve: &dyn Resolve,
) -> Result<Plan, InvalidSpec> {
    let mut errors = Errors(Vec::new());
    if !is_dns1035_label(name) {
        errors.push(
            "metadata.name",
            "must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, at most 63 characters) because it names the Service",
        );
    }
    errors.range(
        "spec.periodSeconds",
        spec.period_seconds.into(),
        1,
        MAX_SECONDS.into(),
    );
    let headless = match spec.cluster_ip.as_deref() {
        None | Some("") => false,
        Some("None") => true,
        Some(other) => {
            errors.push(
                "spec.clusterIP",
                format!("only \"None\" (headless) may be set, got {other:?}"),
            );
            false
        }
    };
    let legacy_hosts = parse_hosts("spec.hosts", &spec.hosts, &mut errors);

    if spec.ports.is_empty() {
        errors.push("spec.ports", "must list at least one port");
    }
    if spec.ports.len() > MAX_PORTS {
        errors.push(
            "spec.ports",
            format!(
                "must have at most {MAX_PORTS} entries, got {}",
                spec.ports.len()
            ),
        );
    }
    let mut names = BTreeSet::new();
    let mut service_ports = BTreeSet::new();
    let mut ports = Vec::with_capacity(spec.ports.len());
    let single = spec.ports.len() == 1;
    for (i, port) in spec.ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        if port.additional_target_ports.len() > MAX_ADDITIONAL_TARGET_PORTS {
            errors.push(
                format!("{field}.additionalTargetPorts"),
                format!(
                    "must have at most {MAX_ADDITIONAL_TARGET_PORTS} entries, got {}",
                    port.additional_target_ports.len()
                ),
            );
        }
        if !names.insert(port.name.as_str()) {
            errors.push(
                format!("{field}.name"),
                format!("duplicate port name {:?}", port.name),
            );
        }
        if !service_ports.insert((port.port, port.protocol.as_str())) {
            errors.push(
                format!("{field}.port"),
                format!(
                    "port {}/{} is already used by another port of this object",
                    port.port, port.protocol
                ),
            );
        }
        if let Some(p) = plan_port(
            &field,
            port,
            single,
            spec.period_seconds,
            &legacy_hosts,
            &mut errors,
        ) {
            for (j, extra) in port.additional_target_ports.iter().enumerate() {
                let field = format!("{field}.additionalTargetPorts[{j}]");
                errors.range(&field, (*extra).into(), 1, 65535);
                let Ok(target_port) = u16::try_from(*extra) else {
                    continue;
                };
                if target_port == p.target_port || port.additional_target_ports[..j].contains(extra)
                {
                    errors.push(field, format!("duplicate target port {extra}"));
                    continue;
                }
                ports.push(PortPlan {
                    name: format!("{}-{extra}", p.name),
                    primary: false,
                    target_port,
                    ..p.clone()
                });
            }
            ports.push(p);
        }
    }
    // An extra target port's key must not collide with a spec port's name.
    for p in ports.iter().filter(|p| !p.primary) {
        if names.contains(p.name.as_str()) {
            errors.push(
                format!("spec.ports[name={}].additionalTargetPorts", p.service_port),
                format!(
                    "target port {} would be reported as {:?}, which is the name of another port; rename that port",
                    p.target_port, p.name
                ),
            );
        }
    }
    let targets: usize = ports.iter().map(|p| p.hosts.len()).sum();
    if targets > MAX_TARGETS_PER_OBJECT {
        errors.push(
            "spec.ports",
            format!(
                "at most {MAX_TARGETS_PER_OBJECT} host-ports per object (the sum over ports of hosts × (1 + additionalTargetPorts)), got {targets}; split the hosts over several ClusterEndpoints"
            ),
        );
    }
    credentials::apply(spec, &mut ports, resolve, &mut errors);
    if !errors.0.is_empty() {
        return Err(InvalidSpec(errors.0));
    }
    ports.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Plan { headless, ports })
}

fn plan_port(
    field: &str,
    port: &ClusterEndpointPort,
    single: bool,
    spec_period: i32,
    legacy_hosts: &[IpAddr],
    errors: &mut Errors,
) -> Option<PortPlan> {
    let before = errors.0.len();
    let unnamed = single && port.name.is_empty();
    if !unnamed && !is_dns1123_label(&port.name) {
        errors.push(
            format!("{field}.name"),
            format!(
                "{:?} must be a DNS label (lowercase letters, digits and '-', at most 63 characters)",
                port.name
            ),
        );
    }
    if !matches!(port.protocol.as_str(), "TCP" | "UDP" | "SCTP") {
        errors.push(
            format!("{field}.protocol"),
            format!("must be TCP, UDP or SCTP, got {:?}", port.protocol),
        );
    }
    errors.range(&format!("{field}.port"), port.port.into(), 1, 65535);
    errors.range(
        &format!("{field}.targetPort"),
        port.target_port.into(),
        1,
        65535,
    );
    errors.range(
        &format!("{field}.timeoutSeconds"),
        port.timeout_seconds.into(),
        1,
        MAX_SECONDS.into(),
    );
    errors.range(
        &format!("{field}.failureThreshold"),
        port.failure_threshold.into(),
        1,
        MAX_THRESHOLD.into(),
    );
    errors.range(
        &format!("{field}.successThreshold"),
        port.success_threshold.into(),
        1,
        MAX_THRESHOLD.into(),
    );
    if let Some(period) = port.period_seconds {
        errors.range(
            &format!("{field}.periodSeconds"),
            period.into(),
            1,
            MAX_SECONDS.into(),
        );
    }
    if let Some(delay) = port.initial_delay_seconds {
        errors.range(
            &format!("{field}.initialDelaySeconds"),
            delay.into(),
            0,
            MAX_SECONDS.into(),
        );
    }
    let period = port.period_seconds.unwrap_or(spec_period);
    if port.timeout_seconds > period && (1..=MAX_SECONDS).contains(&period) {
        errors.push(
            format!("{field}.timeoutSeconds"),
            format!(
                "must not exceed the probe period ({period}s), got {}",
                port.timeout_seconds
            ),
        );
    }
    let own_hosts = parse_hosts(&format!("{field}.hosts"), &port.hosts, errors);
    let hosts = if port.hosts.is_empty() {
        if legacy_hosts.is_empty() {
            errors.push(
                format!("{field}.hosts"),
                "must list at least one host (or set the legacy spec.hosts)",
            );
        }
        legacy_hosts.to_vec()
    } else {
        own_hosts
    };
    let probe = plan_probe(field, port, errors);
    if errors.0.len() != before {
        return None;
    }
    let name = if unnamed {
        format!("{}-{}", port.protocol.to_ascii_lowercase(), port.port)
    } else {
        port.name.clone()
    };
    Some(PortPlan {
        name,
        service_port: port.name.clone(),
        primary: true,
        protocol: port.protocol.clone(),
        port: port.port,
        target_port: u16::try_from(port.target_port).ok()?,
        hosts,
        denied: Vec::new(),
        probe,
        period: seconds(period),
        timeout: seconds(port.timeout_seconds),
        thresholds: Thresholds {
            failure: u32::try_from(port.failure_threshold).ok()?,
            success: u32::try_from(port.success_threshold).ok()?,
        },
        initial_delay: seconds(port.initial_delay_seconds.unwrap_or(0)),
    })
}

fn plan_probe(field: &str, port: &ClusterEndpointPort, errors: &mut Errors) -> Option<Probe> {
    let mut handlers: Vec<(&str, Probe)> = Vec::new();
    if port.tcp_socket.as_ref().is_some_and(|h| h.enable) {
        handlers.push(("tcpSocket", Probe::tcp()));
    }
    if let Some(http) = &port.http_get
        && let Some(probe) = plan_http(&format!("{field}.httpGet"), http, errors)
    {
        handlers.push(("httpGet", probe));
    }
    if let Some(udp) = port.udp_socket.as_ref().filter(|h| h.enable)
        && let Some(data) = udp_data(&format!("{field}.udpSocket.data"), &udp.data, errors)
    {
        handlers.push(("udpSocket", Probe::Udp(UdpProbe { data, expect: None })));
    }
    if let Some(grpc) = port.grpc.as_ref().filter(|h| h.enable) {
        let service = grpc.service.clone().unwrap_or_default();
        if service.len() > MAX_GRPC_SERVICE {
            errors.push(
                format!("{field}.grpc.service"),
                format!("must be at most {MAX_GRPC_SERVICE} characters"),
            );
        }
        handlers.push(("grpc", Probe::Grpc(GrpcProbe { service, tls: None })));
    }
    if handlers.len() > 1 {
        let set: Vec<&str> = handlers.iter().map(|(n, _)| *n).collect();
        errors.push(
            field.to_string(),
            format!(
                "at most one of tcpSocket, httpGet, udpSocket and grpc may be set, found {}",
                set.join(", ")
            ),
        );
        return None;
    }
    handlers.pop().map(|(_, probe)| probe)
}

/// The UDP payload as bytes: a string's UTF-8 bytes, or the byte values
/// of endpoints-operator's stored form.
fn udp_data(field: &str, data: &Option<UdpData>, errors: &mut Errors) -> Option<Vec<u8>> {
    let bytes = match data {
        None => Vec::new(),
        Some(UdpData::Text(text)) => {
            if text.chars().count() > MAX_UDP_DATA {
                errors.push(field, format!("must be at most {MAX_UDP_DATA} characters"));
                return None;
            }
            text.clone().into_bytes()
        }
        Some(UdpData::Bytes(values)) => {
            if values.len() > MAX_UDP_DATA {
                errors.push(field, format!("must be at most {MAX_UDP_DATA} bytes"));
                return None;
            }
            let mut bytes = Vec::with_capacity(values.len());
            for (i, v) in values.iter().enumerate() {
                match u8::try_from(*v) {
                    Ok(b) => bytes.push(b),
                    Err(_) => {
                        errors.push(
                            format!("{field}[{i}]"),
                            format!("must be a byte value between 0 and 255, got {v}"),
                        );
                        return None;
                    }
                }
            }
            bytes
        }
    };
    Some(bytes)
}

fn plan_http(field: &str, http: &HttpGetHandler, errors: &mut Errors) -> Option<Probe> {
    let scheme = match http
        .scheme
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("") | Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        Some(other) => {
            errors.push(
                format!("{field}.scheme"),
                format!("must be http or https, got {other:?}"),
            );
            return None;
        }
    };
    let mut path = http.path.clone().unwrap_or_default();
    if path.chars().any(char::is_whitespace) {
        errors.push(format!("{field}.path"), "must not contain whitespace");
        return None;
    }
    if path.chars().count() > MAX_PATH {
        errors.push(
            format!("{field}.path"),
            format!("must be at most {MAX_PATH} characters"),
        );
        return None;
    }
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    if http.http_headers.len() > MAX_HEADERS {
        errors.push(
            format!("{field}.httpHeaders"),
            format!(
                "must have at most {MAX_HEADERS} entries, got {}",
                http.http_headers.len()
            ),
        );
        return None;
    }
    let mut headers = Vec::with_capacity(http.http_headers.len());
    for (i, h) in http.http_headers.iter().enumerate() {
        if let Err(message) = header(&h.name, &h.value) {
            errors.push(format!("{field}.httpHeaders[{i}].{}", message.0), message.1);
            return None;
        }
        headers.push((h.name.clone(), h.value.clone()));
    }
    let host = http.host.clone().filter(|h| !h.is_empty());
    if let Some(host) = &host
        && let Err(message) = validate_virtual_host(host)
    {
        errors.push(format!("{field}.host"), format!("{host:?} {message}"));
        return None;
    }
    Some(Probe::Http(HttpGet {
        scheme,
        path,
        host,
        headers,
        ..HttpGet::default()
    }))
}

/// Check one request header; the error names the part (`name` or
/// `value`) and says why. The same rules as the CRD's schema and CEL.
fn header(name: &str, value: &str) -> Result<(), (&'static str, String)> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-!#$%&'*+.^_`|~".contains(&b));
    if !token || name.len() > MAX_HEADER_NAME {
        return Err((
            "name",
            format!(
                "{name:?} is not a valid HTTP header name (a token of at most {MAX_HEADER_NAME} characters)"
            ),
        ));
    }
    if OWNED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err((
            "name",
            format!("{name} is set by the prober itself and cannot be set"),
        ));
    }
    if value.chars().count() > MAX_HEADER_VALUE {
        return Err((
            "value",
            format!("must be at most {MAX_HEADER_VALUE} characters"),
        ));
    }
    if value.chars().any(|c| c != '\t' && (c.is_ascii_control())) {
        return Err((
            "value",
            "must not contain control characters (tab excepted)".into(),
        ));
    }
    if name.eq_ignore_ascii_case("host")
        && let Err(message) = validate_host_header(value)
    {
        return Err(("value", format!("Host header {value:?} {message}")));
    }
    Ok(())
}

/// A virtual host (`httpGet.host`) and a `Host` header value are checked
/// by the prober's own rules, the same as the CRD's CEL rule for the former.
pub use kube_endpoints_probe::{validate_host_header, validate_virtual_host};

/// Parse, check and sort a host list; errors name the exact item.
fn parse_hosts(field: &str, hosts: &[String], errors: &mut Errors) -> Vec<IpAddr> {
    if hosts.len() > MAX_HOSTS {
        errors.push(
            field,
            format!("must have at most {MAX_HOSTS} entries, got {}", hosts.len()),
        );
    }
    let mut parsed = BTreeSet::new();
    for (i, host) in hosts.iter().enumerate() {
        match host.parse::<IpAddr>() {
            Ok(ip) if !is_endpoint_ip(&ip) => errors.push(
                format!("{field}[{i}]"),
                format!("{host} cannot be an endpoint: loopback, link-local, multicast and unspecified addresses are refused by Kubernetes"),
            ),
            Ok(ip) => {
                if !parsed.insert(ip) {
                    errors.push(format!("{field}[{i}]"), format!("duplicate host {host}"));
                }
            }
            Err(_) => errors.push(
                format!("{field}[{i}]"),
                format!("{host:?} is not an IPv4 or IPv6 address literal"),
            ),
        }
    }
    parsed.into_iter().collect()
}

/// What EndpointSlice validation accepts as an endpoint address.
pub fn is_endpoint_ip(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unicast_link_local()
                || v6.to_ipv4_mapped().is_some())
        }
    }
}

fn seconds(s: i32) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

#[path = "plan_credentials.rs"]
mod credentials;
pub use credentials::{Deferred, Lookup, Resolve, Sensitive, SourceKind, references};

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "plan_credentials_tests.rs"]
mod credentials_tests;
