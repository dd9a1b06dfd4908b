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
    MAX_TARGETS_PER_OBJECT, MAX_THRESHOLD,
};
use kube_endpoints_probe::{HttpGet, Probe, Scheme, TargetId, TargetSpec, Thresholds};

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
/// port named `service_port`.
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
            probe,
            target_port: self.target_port,
            period: self.period,
            timeout: self.timeout,
            thresholds: self.thresholds,
            initial_delay: self.initial_delay,
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
/// `spec`, returning the plan or every error found.
pub fn plan(name: &str, spec: &ClusterEndpointSpec) -> Result<Plan, InvalidSpec> {
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
    for (i, port) in spec.ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
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
    if !errors.0.is_empty() {
        return Err(InvalidSpec(errors.0));
    }
    ports.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Plan { headless, ports })
}

fn plan_port(
    field: &str,
    port: &ClusterEndpointPort,
    spec_period: i32,
    legacy_hosts: &[IpAddr],
    errors: &mut Errors,
) -> Option<PortPlan> {
    let before = errors.0.len();
    if !is_dns1123_label(&port.name) {
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
    Some(PortPlan {
        name: port.name.clone(),
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
        handlers.push(("tcpSocket", Probe::Tcp));
    }
    if let Some(http) = &port.http_get
        && let Some(probe) = plan_http(&format!("{field}.httpGet"), http, errors)
    {
        handlers.push(("httpGet", probe));
    }
    if let Some(udp) = port.udp_socket.as_ref().filter(|h| h.enable) {
        let data = udp.data.clone().unwrap_or_default().into_bytes();
        handlers.push(("udpSocket", Probe::Udp { data }));
    }
    if let Some(grpc) = port.grpc.as_ref().filter(|h| h.enable) {
        let service = grpc.service.clone().unwrap_or_default();
        handlers.push(("grpc", Probe::Grpc { service }));
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
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let mut headers = Vec::with_capacity(http.http_headers.len());
    for (i, h) in http.http_headers.iter().enumerate() {
        let valid_name = !h.name.is_empty()
            && h.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-!#$%&'*+.^_`|~".contains(&b));
        if !valid_name {
            errors.push(
                format!("{field}.httpHeaders[{i}].name"),
                format!("{:?} is not a valid HTTP header name", h.name),
            );
            return None;
        }
        if h.value.contains(['\r', '\n']) {
            errors.push(
                format!("{field}.httpHeaders[{i}].value"),
                "must not contain line breaks",
            );
            return None;
        }
        headers.push((h.name.clone(), h.value.clone()));
    }
    let host = http.host.clone().filter(|h| !h.is_empty());
    Some(Probe::Http(HttpGet {
        scheme,
        path,
        host,
        headers,
    }))
}

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

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
