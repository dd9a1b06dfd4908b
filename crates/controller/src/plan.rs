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

use crate::fail_open::FailOpenPolicy;
use kube_endpoints_api::{
    ClusterEndpointPort, ClusterEndpointSpec, DEFAULT_MIN_READY, DEFAULT_RESOLVE_PERIOD_SECONDS,
    HttpGetHandler, MAX_HOST_LENGTH, MAX_PORTS, MAX_SECONDS, MAX_TARGETS_PER_OBJECT, MAX_THRESHOLD,
    UdpData,
};
use kube_endpoints_api::{
    ExpectedStatus, MAX_EXPECTED_STATUSES, MAX_HTTP_BODY, MAX_MATCH, MAX_PAYLOAD, Payload,
    ReplyMatch, TcpSocketHandler, UdpSocketHandler,
};
use kube_endpoints_probe::{
    BoundedRegex, Expect, HttpMethod, OWNED_HEADERS, StatusRange, TcpProbe,
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
    /// Fields copied onto the Service.
    pub service: ServiceOptions,
}

/// A host the policy refuses, and why (the message names the range).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub host: IpAddr,
    pub message: String,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
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
    /// Sorted, unique; probed and written. As `plan` makes it: the listed
    /// IP literals only; [`crate::names::expand`] adds the addresses the
    /// listed DNS names resolve to (before the address policy runs).
    pub hosts: Vec<IpAddr>,
    /// Hosts listed as DNS names: sorted, unique.
    pub names: Vec<String>,
    /// How often each name is resolved again at most (`resolvePeriodSeconds`).
    pub resolve_period: Duration,
    /// The addresses in `hosts` that come from a name and not from a
    /// literal, and that name (the first in order when several resolve to
    /// one): probed with the name as `Host` and TLS server name.
    pub named: BTreeMap<IpAddr, String>,
    /// What each of `names` resolved to (for status); filled by
    /// [`crate::names::expand`].
    pub resolutions: crate::resolve::Resolutions,
    /// Per-host fields of the hosts that have any (zone, drain, priority,
    /// hostname); a host not here has the defaults.
    pub attributes: BTreeMap<IpAddr, HostAttributes>,
    /// Per-host fields of hosts given as DNS names (never a hostname):
    /// every address of the name gets them when [`crate::names::expand`]
    /// adds it (a literal listing the same address keeps its own).
    pub name_attributes: BTreeMap<String, HostAttributes>,
    /// Backups are ready only while fewer primaries than this are ready.
    pub min_ready: usize,
    /// Listed hosts the address policy refuses (see [`crate::policy`]):
    /// never probed, never written, only reported. Empty as `plan` makes it.
    pub denied: Vec<Denial>,
    /// `None` for a static port: always ready, never probed.
    pub probe: Option<Probe>,
    pub period: Duration,
    pub timeout: Duration,
    pub thresholds: Thresholds,
    pub initial_delay: Duration,
    /// The port probes go to instead of `target_port` (`probePort`);
    /// `None`: `target_port`. Endpoints always carry `target_port`.
    pub probe_port: Option<u16>,
    /// The schedule beyond the fixed period: unhealthy period, jitter,
    /// confirmation probe. The default is today's fixed period.
    pub intervals: Intervals,
    /// When failing hosts stay in rotation ([`crate::fail_open`]).
    pub fail_open: FailOpenPolicy,
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
            probe_port: self.probe_port,
            period: self.period,
            timeout: self.timeout,
            thresholds: self.thresholds,
            initial_delay: self.initial_delay,
            intervals: self.intervals,
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
                let spec = match port.named.get(host) {
                    Some(name) => crate::names::with_name(&spec, name),
                    None => spec.clone(),
                };
                targets.insert(
                    TargetId {
                        port: port.name.clone(),
                        host: *host,
                    },
                    spec,
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
    let mut hostnames = Hostnames::default();
    let legacy_hosts = parse_hosts("spec.hosts", &spec.hosts, &mut hostnames, &mut errors);
    let service = plan_service(spec, headless, &mut errors);
    if let Some(period) = spec.resolve_period_seconds {
        errors.range(
            "spec.resolvePeriodSeconds",
            period.into(),
            1,
            MAX_SECONDS.into(),
        );
    }
    let resolve_period = spec
        .resolve_period_seconds
        .unwrap_or(DEFAULT_RESOLVE_PERIOD_SECONDS);

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
        let inherited = Inherited {
            period: spec.period_seconds,
            resolve_period,
            hosts: &legacy_hosts,
        };
        if let Some(p) = plan_port(
            &field,
            port,
            single,
            &inherited,
            &mut hostnames,
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
    let targets: usize = ports.iter().map(|p| p.hosts.len() + p.names.len()).sum();
    if targets > MAX_TARGETS_PER_OBJECT {
        errors.push(
            "spec.ports",
            format!(
                "at most {MAX_TARGETS_PER_OBJECT} host-ports per object (the sum over ports of hosts × (1 + additionalTargetPorts)), got {targets}; split the hosts over several ClusterEndpoints"
            ),
        );
    }
    credentials::apply(spec, &mut ports, resolve, &mut errors);
    fail_open_policy::apply(spec, &mut ports, &mut errors);
    if !errors.0.is_empty() {
        return Err(InvalidSpec(errors.0));
    }
    ports.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Plan {
        headless,
        ports,
        service,
    })
}

/// What a port takes from the object-level fields when it sets none.
struct Inherited<'a> {
    /// `spec.periodSeconds`.
    period: i32,
    /// `spec.resolvePeriodSeconds` or its default.
    resolve_period: i32,
    /// The legacy `spec.hosts`.
    hosts: &'a ParsedHosts,
}

fn plan_port(
    field: &str,
    port: &ClusterEndpointPort,
    single: bool,
    inherited: &Inherited,
    hostnames: &mut Hostnames,
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
    let period = port.period_seconds.unwrap_or(inherited.period);
    if port.timeout_seconds > period && (1..=MAX_SECONDS).contains(&period) {
        errors.push(
            format!("{field}.timeoutSeconds"),
            format!(
                "must not exceed the probe period ({period}s), got {}",
                port.timeout_seconds
            ),
        );
    }
    if let Some(period) = port.resolve_period_seconds {
        errors.range(
            &format!("{field}.resolvePeriodSeconds"),
            period.into(),
            1,
            MAX_SECONDS.into(),
        );
    }
    let own_hosts = parse_hosts(&format!("{field}.hosts"), &port.hosts, hostnames, errors);
    let ParsedHosts {
        hosts,
        names,
        attributes,
        name_attributes,
    } = if port.hosts.is_empty() {
        if inherited.hosts.is_empty() {
            errors.push(
                format!("{field}.hosts"),
                "must list at least one host (or set the legacy spec.hosts)",
            );
        }
        inherited.hosts.clone()
    } else {
        own_hosts
    };
    let min_ready = port.min_ready.unwrap_or(DEFAULT_MIN_READY);
    errors.range(&format!("{field}.minReady"), min_ready.into(), 1, 1000);
    let probe = plan_probe(field, port, errors);
    let (probe_port, intervals) = plan_schedule(field, port, errors);
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
        names,
        resolve_period: seconds(
            port.resolve_period_seconds
                .unwrap_or(inherited.resolve_period),
        ),
        named: BTreeMap::new(),
        resolutions: BTreeMap::new(),
        attributes,
        name_attributes,
        min_ready: usize::try_from(min_ready).ok()?,
        denied: Vec::new(),
        probe,
        period: seconds(period),
        timeout: seconds(port.timeout_seconds),
        thresholds: Thresholds {
            failure: u32::try_from(port.failure_threshold).ok()?,
            success: u32::try_from(port.success_threshold).ok()?,
        },
        initial_delay: seconds(port.initial_delay_seconds.unwrap_or(0)),
        probe_port,
        intervals,
        fail_open: FailOpenPolicy::default(),
    })
}

fn plan_probe(field: &str, port: &ClusterEndpointPort, errors: &mut Errors) -> Option<Probe> {
    let mut handlers: Vec<(&str, Probe)> = Vec::new();
    check_enabled_for_exchange(field, port, errors);
    if let Some(tcp) = port.tcp_socket.as_ref().filter(|h| h.enable)
        && let Some(probe) = plan_tcp(&format!("{field}.tcpSocket"), tcp, errors)
    {
        handlers.push(("tcpSocket", probe));
    }
    if let Some(http) = &port.http_get {
        let field = format!("{field}.httpGet");
        let probe = plan_http(&field, http, errors);
        let expectations = http_expectations(&field, http, errors);
        if let (Some(Probe::Http(get)), Some(expectations)) = (probe, expectations) {
            handlers.push(("httpGet", Probe::Http(expectations.apply(get))));
        }
    }
    if let Some(udp) = port.udp_socket.as_ref().filter(|h| h.enable)
        && let Some(data) = udp_data(&format!("{field}.udpSocket.data"), &udp.data, errors)
        && let Some(probe) = plan_udp(&format!("{field}.udpSocket"), udp, data, errors)
    {
        handlers.push(("udpSocket", probe));
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

// ------------------------------------------------------- probe options
// `probePort`, the schedule options, TCP/UDP send and expect, and the HTTP
// method, body, statuses and body match: the same rules as the CRD's
// schema and CEL (see the api crate). Errors never quote what a probe
// sends or expects (a payload may be a credential, a pattern a secret).

/// `probePort` and the schedule options of a port.
fn plan_schedule(
    field: &str,
    port: &ClusterEndpointPort,
    errors: &mut Errors,
) -> (Option<u16>, Intervals) {
    let mut probe_port = None;
    if let Some(p) = port.probe_port {
        let name = format!("{field}.probePort");
        errors.range(&name, p.into(), 1, 65535);
        if !has_probe_handler(port) {
            errors.push(
                name.clone(),
                "needs a probe (tcpSocket, httpGet, udpSocket or grpc): a port without one is static and never probed",
            );
        }
        if !port.additional_target_ports.is_empty() {
            errors.push(
                name,
                "cannot be combined with additionalTargetPorts (every target port would be judged by the same probe)",
            );
        }
        probe_port = u16::try_from(p).ok().filter(|p| *p != 0);
    }
    let mut intervals = Intervals::default();
    if let Some(s) = port.unhealthy_period_seconds {
        errors.range(
            &format!("{field}.unhealthyPeriodSeconds"),
            s.into(),
            1,
            MAX_SECONDS.into(),
        );
        if port.timeout_seconds > s && (1..=MAX_SECONDS).contains(&s) {
            errors.push(
                format!("{field}.timeoutSeconds"),
                format!(
                    "must not exceed unhealthyPeriodSeconds ({s}s), got {}",
                    port.timeout_seconds
                ),
            );
        }
        intervals.unhealthy_period = Some(seconds(s));
    }
    if let Some(p) = port.jitter_percent {
        errors.range(&format!("{field}.jitterPercent"), p.into(), 0, 100);
        intervals.jitter_percent = u8::try_from(p.clamp(0, 100)).unwrap_or(0);
    }
    if let Some(s) = port.edge_period_seconds {
        errors.range(
            &format!("{field}.edgePeriodSeconds"),
            s.into(),
            0,
            MAX_SECONDS.into(),
        );
        intervals.edge_period = Some(seconds(s));
    }
    (probe_port, intervals)
}

/// Whether the port has a probe handler (`enable: false` counts as unset).
fn has_probe_handler(port: &ClusterEndpointPort) -> bool {
    port.http_get.is_some()
        || port.tcp_socket.as_ref().is_some_and(|h| h.enable)
        || port.udp_socket.as_ref().is_some_and(|h| h.enable)
        || port.grpc.as_ref().is_some_and(|h| h.enable)
}

/// `send` and `expect` on a disabled handler would silently probe nothing.
fn check_enabled_for_exchange(field: &str, port: &ClusterEndpointPort, errors: &mut Errors) {
    let disabled = |enable: bool, send: bool, expect: bool| !enable && (send || expect);
    if let Some(h) = &port.tcp_socket
        && disabled(h.enable, h.send.is_some(), h.expect.is_some())
    {
        errors.push(
            format!("{field}.tcpSocket"),
            "send and expect need enable: true (a disabled handler is no probe)",
        );
    }
    if let Some(h) = &port.udp_socket
        && disabled(h.enable, h.send.is_some(), h.expect.is_some())
    {
        errors.push(
            format!("{field}.udpSocket"),
            "send and expect need enable: true (a disabled handler is no probe)",
        );
    }
}

fn plan_tcp(field: &str, tcp: &TcpSocketHandler, errors: &mut Errors) -> Option<Probe> {
    let before = errors.0.len();
    let send = tcp
        .send
        .as_ref()
        .and_then(|p| payload(&format!("{field}.send"), p, errors))
        .unwrap_or_default();
    let expect = tcp
        .expect
        .as_ref()
        .and_then(|m| reply_match(&format!("{field}.expect"), m, errors));
    (errors.0.len() == before).then(|| {
        Probe::Tcp(TcpProbe {
            send,
            expect,
            ..TcpProbe::default()
        })
    })
}

/// A UDP probe of `data` (the older field) or `send`, and `expect`.
fn plan_udp(
    field: &str,
    udp: &UdpSocketHandler,
    data: Vec<u8>,
    errors: &mut Errors,
) -> Option<Probe> {
    let before = errors.0.len();
    let data = match &udp.send {
        Some(_) if udp.data.is_some() => {
            errors.push(format!("{field}.send"), "set either data or send, not both");
            None
        }
        Some(send) => payload(&format!("{field}.send"), send, errors),
        None => Some(data),
    };
    let expect = udp
        .expect
        .as_ref()
        .and_then(|m| reply_match(&format!("{field}.expect"), m, errors));
    if errors.0.len() != before {
        return None;
    }
    data.map(|data| Probe::Udp(UdpProbe { data, expect }))
}

/// Bytes to send: exactly one of `text` and `base64`.
fn payload(field: &str, p: &Payload, errors: &mut Errors) -> Option<Vec<u8>> {
    match (&p.text, &p.base64) {
        (Some(text), None) => {
            if text.chars().count() > MAX_PAYLOAD {
                errors.push(
                    format!("{field}.text"),
                    format!("must be at most {MAX_PAYLOAD} characters"),
                );
                return None;
            }
            Some(text.clone().into_bytes())
        }
        (None, Some(encoded)) => {
            let bytes = decode_base64(&format!("{field}.base64"), encoded, errors)?;
            if bytes.len() > MAX_PAYLOAD {
                errors.push(
                    format!("{field}.base64"),
                    format!("must decode to at most {MAX_PAYLOAD} bytes"),
                );
                return None;
            }
            Some(bytes)
        }
        _ => {
            errors.push(field, "set exactly one of text and base64");
            None
        }
    }
}

/// What a reply must contain: exactly one of `text`, `base64` and `regex`.
fn reply_match(field: &str, m: &ReplyMatch, errors: &mut Errors) -> Option<Expect> {
    let set = [m.text.is_some(), m.base64.is_some(), m.regex.is_some()];
    if set.iter().filter(|s| **s).count() != 1 {
        errors.push(field, "set exactly one of text, base64 and regex");
        return None;
    }
    let too_long = |what: &str| format!("must be 1 to {MAX_MATCH} {what}");
    if let Some(text) = &m.text {
        if text.is_empty() || text.chars().count() > MAX_MATCH {
            errors.push(format!("{field}.text"), too_long("characters"));
            return None;
        }
        return Some(Expect::Contains(text.clone().into_bytes()));
    }
    if let Some(encoded) = &m.base64 {
        let bytes = decode_base64(&format!("{field}.base64"), encoded, errors)?;
        if bytes.is_empty() || bytes.len() > MAX_MATCH {
            errors.push(format!("{field}.base64"), too_long("bytes"));
            return None;
        }
        return Some(Expect::Contains(bytes));
    }
    let pattern = m.regex.as_deref().unwrap_or_default();
    if pattern.is_empty() || pattern.chars().count() > MAX_MATCH {
        errors.push(format!("{field}.regex"), too_long("characters"));
        return None;
    }
    match BoundedRegex::new(pattern) {
        Ok(re) => Some(Expect::Regex(re)),
        Err(message) => {
            errors.push(format!("{field}.regex"), message);
            None
        }
    }
}

/// Standard base64 with padding, as the CRD's `byte` format accepts it.
fn decode_base64(field: &str, encoded: &str, errors: &mut Errors) -> Option<Vec<u8>> {
    use base64::Engine as _;
    match base64::engine::general_purpose::STANDARD.decode(encoded) {
        Ok(bytes) => Some(bytes),
        Err(_) => {
            errors.push(
                field,
                "must be standard base64 (A-Z, a-z, 0-9, +, /, with = padding)",
            );
            None
        }
    }
}

/// The HTTP options beyond the kubelet's, validated.
struct HttpExpectations {
    method: HttpMethod,
    body: Vec<u8>,
    expected_statuses: Vec<StatusRange>,
    body_match: Option<Expect>,
}

impl HttpExpectations {
    fn apply(self, get: HttpGet) -> HttpGet {
        HttpGet {
            method: self.method,
            body: self.body,
            expected_statuses: self.expected_statuses,
            body_match: self.body_match,
            ..get
        }
    }
}

fn http_expectations(
    field: &str,
    http: &HttpGetHandler,
    errors: &mut Errors,
) -> Option<HttpExpectations> {
    let before = errors.0.len();
    let method = match http.method.as_deref() {
        None => HttpMethod::Get,
        Some("GET") => HttpMethod::Get,
        Some("HEAD") => HttpMethod::Head,
        Some("POST") => HttpMethod::Post,
        Some("OPTIONS") => HttpMethod::Options,
        Some(_) => {
            errors.push(
                format!("{field}.method"),
                "must be GET, HEAD, POST or OPTIONS",
            );
            HttpMethod::Get
        }
    };
    let mut body = Vec::new();
    if let Some(text) = &http.body {
        if method != HttpMethod::Post {
            errors.push(format!("{field}.body"), "is sent only with method: POST");
        }
        if text.chars().count() > MAX_HTTP_BODY {
            errors.push(
                format!("{field}.body"),
                format!("must be at most {MAX_HTTP_BODY} characters"),
            );
        }
        body = text.clone().into_bytes();
    }
    if http.expected_statuses.len() > MAX_EXPECTED_STATUSES {
        errors.push(
            format!("{field}.expectedStatuses"),
            format!(
                "must have at most {MAX_EXPECTED_STATUSES} entries, got {}",
                http.expected_statuses.len()
            ),
        );
    }
    let mut expected_statuses = Vec::with_capacity(http.expected_statuses.len());
    for (i, status) in http.expected_statuses.iter().enumerate() {
        match status_range(status) {
            Some(range) => expected_statuses.push(range),
            None => errors.push(
                format!("{field}.expectedStatuses[{i}]"),
                "must be an HTTP status (100-599) or a range \"from-to\" of them with from <= to, e.g. 204 or \"200-299\"",
            ),
        }
    }
    let body_match = http
        .body_match
        .as_ref()
        .and_then(|m| reply_match(&format!("{field}.bodyMatch"), m, errors));
    if http.body_match.is_some() && method == HttpMethod::Head {
        errors.push(
            format!("{field}.bodyMatch"),
            "needs a response body, and HEAD has none",
        );
    }
    (errors.0.len() == before).then_some(HttpExpectations {
        method,
        body,
        expected_statuses,
        body_match,
    })
}

/// `204`, `"204"` or `"200-299"` (inclusive, from <= to, within 100-599).
fn status_range(status: &ExpectedStatus) -> Option<StatusRange> {
    let code = |v: i64| u16::try_from(v).ok().filter(|c| (100..=599).contains(c));
    let (from, to) = match status {
        ExpectedStatus::Code(c) => (code(*c)?, code(*c)?),
        ExpectedStatus::Text(text) => {
            let parse = |s: &str| {
                (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| s.parse::<i64>().ok())
                    .flatten()
                    .and_then(code)
            };
            match text.split_once('-') {
                None => (parse(text)?, parse(text)?),
                Some((from, to)) => (parse(from)?, parse(to)?),
            }
        }
    };
    (from <= to).then_some(StatusRange { from, to })
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

/// One host string: an IP literal or a DNS name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Host {
    Address(IpAddr),
    Name(String),
}

/// The one check of a host string, the same as the CRD's `HOST_PATTERN`
/// (exact where the pattern is loose): an IP literal that can be an
/// endpoint, or a lower-case RFC 1123 DNS name of at most
/// `MAX_HOST_LENGTH` (253) characters (the prober's rule for
/// virtual hosts, lower-case only) whose last label starts with a letter,
/// so that no name reads as an IPv4 address elsewhere (`127.1`, `0x7f.1`).
pub fn parse_host(host: &str) -> Result<Host, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if is_endpoint_ip(&ip) {
            Ok(Host::Address(ip))
        } else {
            Err(format!(
                "{host} cannot be an endpoint: loopback, link-local, multicast and unspecified addresses are refused by Kubernetes"
            ))
        };
    }
    let not_a_host =
        || format!("{host:?} is not an IPv4 or IPv6 address literal nor a lower-case DNS name");
    if host.len() > MAX_HOST_LENGTH {
        return Err(format!(
            "must be at most {MAX_HOST_LENGTH} characters, got {}",
            host.len()
        ));
    }
    if host.starts_with('[') || host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(not_a_host());
    }
    validate_virtual_host(host).map_err(|why| format!("{} ({why})", not_a_host()))?;
    let last = host.rsplit('.').next().unwrap_or(host);
    if !last.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!(
            "{} (its last label must start with a letter)",
            not_a_host()
        ));
    }
    Ok(Host::Name(host.to_string()))
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

#[path = "plan_fail_open.rs"]
mod fail_open_policy;
#[path = "plan_hosts.rs"]
mod hosts;
pub use hosts::{HostAttributes, is_label_value};
use hosts::{Hostnames, ParsedHosts, parse_hosts};
#[path = "plan_service.rs"]
mod service;
pub use credentials::{Deferred, Lookup, Resolve, Sensitive, SourceKind, references};
pub use service::ServiceOptions;
use service::plan_service;

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "plan_options_tests.rs"]
mod options_tests;

#[cfg(test)]
#[path = "plan_credentials_tests.rs"]
mod credentials_tests;
