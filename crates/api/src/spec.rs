//! `spec` of ClusterEndpoint: the external hosts, the ports they serve, and how
//! each port is health-checked.
//!
//! Every bound here is enforced twice: by the apiserver (OpenAPI bounds and CEL
//! rules generated from these attributes) and again by the controller's
//! `plan` step, because objects can also arrive through a CRD that is not
//! ours (the predecessor's `sealos.io` CRD has no validation at all).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ClusterEndpointStatus;
use crate::HostEntry;
use crate::host::host_list_schema;

pub const DEFAULT_PERIOD_SECONDS: i32 = 10;
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 1;
pub const DEFAULT_FAILURE_THRESHOLD: i32 = 3;
pub const DEFAULT_SUCCESS_THRESHOLD: i32 = 1;
pub const MAX_PORTS: usize = 100;
pub const MAX_HOSTS: usize = 1000;
pub const MAX_SECONDS: i32 = 3600;
pub const MAX_THRESHOLD: i32 = 1000;
/// Host-ports one object may declare: the sum over its ports of hosts ×
/// (1 + additionalTargetPorts). Ten ports of a thousand hosts fit; the
/// 1.1 million targets the list limits alone would allow do not.
pub const MAX_TARGETS_PER_OBJECT: usize = 10_000;

/// Longest host string: an IP literal (at most 45 characters) or a DNS
/// name (RFC 1123: at most 253).
pub const MAX_HOST_LENGTH: usize = 253;
/// Default `resolvePeriodSeconds`: how often a host given as a DNS name is
/// resolved again at most (a shorter TTL, within the controller's
/// `--dns-min-ttl`, resolves it sooner).
pub const DEFAULT_RESOLVE_PERIOD_SECONDS: i32 = 30;
/// Longest `sessionAffinityConfig.clientIP.timeoutSeconds` (a day, as the
/// Service API allows).
pub const MAX_SESSION_AFFINITY_SECONDS: i32 = 86_400;

/// External hosts and ports that a selector-less Service should reach, with
/// kubelet-style health checks per port.
// Each `printcolumn(...)` repeats `type_`; clippy mistakes that for a
// duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "khulnasoft-lab.github.io",
    version = "v1beta1",
    kind = "ClusterEndpoint",
    plural = "clusterendpoints",
    shortname = "cep",
    namespaced,
    status = "ClusterEndpointStatus",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.ready",
        description = "ready host-ports / all host-ports"
    ),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.ports.all(p, self.ports.filter(q, q.port == p.port && q.protocol == p.protocol).size() == 1)",
        "message": "spec.ports[].port must be unique per protocol: the Service cannot expose the same port and protocol twice",
        "fieldPath": ".ports",
        "reason": "FieldValueInvalid"
    },
    // No rule here can read `hosts`: a list whose items are strings or
    // objects has no CEL type (see the `host` module), so "every port
    // needs hosts" and the host-port budget are checked by the
    // controller's `plan` only.
    {
        "rule": "!has(self.publishNotReadyAddresses) || !self.publishNotReadyAddresses || (has(self.clusterIP) && self.clusterIP == 'None')",
        "message": "publishNotReadyAddresses is only for a headless Service (clusterIP: None)",
        "fieldPath": ".publishNotReadyAddresses",
        "reason": "FieldValueForbidden"
    },
    {
        "rule": "!has(self.sessionAffinityConfig) || (has(self.sessionAffinity) && self.sessionAffinity == 'ClientIP')",
        "message": "sessionAffinityConfig needs sessionAffinity: ClientIP",
        "fieldPath": ".sessionAffinityConfig",
        "reason": "FieldValueForbidden"
    },
    {
        "rule": "has(self.clusterIP) == has(oldSelf.clusterIP) && (!has(self.clusterIP) || self.clusterIP == oldSelf.clusterIP)",
        "message": "spec.clusterIP is immutable (a Service cannot switch between ClusterIP and headless); recreate the ClusterEndpoint to change it",
        "fieldPath": ".clusterIP",
        "reason": "FieldValueForbidden"
    }
]))]
pub struct ClusterEndpointSpec {
    /// How often, in seconds, each host-port is probed. Default 10.
    #[serde(default = "default_period")]
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: i32,

    /// `None` makes the Service headless; leave unset for a normal ClusterIP Service.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["None", ""]))]
    pub cluster_ip: Option<String>,

    /// Legacy (endpoints-operator 0.1): hosts used by every port that lists none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "host_list_schema")]
    pub hosts: Vec<HostEntry>,

    /// Extension: for hosts given as DNS names, resolve each name again
    /// at least this often, in seconds (a shorter TTL, no shorter than the
    /// controller's `--dns-min-ttl`, resolves it sooner). Default 30; a
    /// port's own `resolvePeriodSeconds` wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub resolve_period_seconds: Option<i32>,

    /// The ports of the Service, each with its hosts and health check.
    #[schemars(length(min = 1, max = 100), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub ports: Vec<ClusterEndpointPort>,

    /// Extension: the fail-open policy of every port (a port may override
    /// each field).
    #[serde(flatten)]
    pub fail_open: FailOpen,
    // Service passthrough: copied onto the Service as they are.
    /// `None` (default) or `ClientIP`: the Service's session affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["None", "ClientIP"]))]
    pub session_affinity: Option<String>,
    /// With `sessionAffinity: ClientIP`: `{clientIP: {timeoutSeconds: N}}`
    /// (1..86400; the Service's default is 10800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_config: Option<SessionAffinityConfig>,
    /// `Cluster` (default) or `Local`: the Service's internalTrafficPolicy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Cluster", "Local"]))]
    pub internal_traffic_policy: Option<String>,
    /// `PreferClose`: kube-proxy prefers ready hosts of the client's zone
    /// (using the zone hints written when every ready host has a zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["PreferClose"]))]
    pub traffic_distribution: Option<String>,
    /// Labels set on the Service (merged: labels others set stay).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub service_labels: std::collections::BTreeMap<String, String>,
    /// Annotations set on the Service (merged: annotations others set stay).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub service_annotations: std::collections::BTreeMap<String, String>,
    /// Headless Services only: DNS publishes every host, ready or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_not_ready_addresses: Option<bool>,
}

/// The Service's `sessionAffinityConfig`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
pub struct SessionAffinityConfig {
    #[serde(default, rename = "clientIP", skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<ClientIpConfig>,
}

/// How long a client sticks to one host.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClientIpConfig {
    /// Seconds, 1..86400 (Service default 10800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout_seconds: Option<i32>,
}

/// What happens to a port when its probes say that all or most of its
/// hosts are down: by default they leave rotation (fail closed); with a
/// fail-open policy the hosts that were ready last stay ready, on the
/// grounds that a probe failing everywhere at once more likely means the
/// probe (or the path to the hosts) is broken than every host.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct FailOpen {
    /// Extension: `FailClosed` (default) takes every failing host out of
    /// rotation even when that leaves no ready host; `KeepLastReady` keeps
    /// the hosts that were ready last in rotation while every probed host
    /// of the port fails (reported by the `FailingOpen` condition). On a
    /// port, overrides the spec's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = [FAIL_CLOSED, KEEP_LAST_READY]))]
    pub all_hosts_down: Option<String>,

    /// Extension: when fewer than this percentage of a port's probed hosts
    /// are healthy, keep the hosts that were ready last in rotation
    /// (Envoy's panic threshold). 0 (default) switches it off. On a port,
    /// overrides the spec's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub panic_threshold_percent: Option<i32>,
}

/// `allHostsDown` value: a port whose probed hosts all fail has no ready
/// endpoint (the default).
pub const FAIL_CLOSED: &str = "FailClosed";
/// `allHostsDown` value: a port whose probed hosts all fail keeps the hosts
/// its EndpointSlices list as ready.
pub const KEEP_LAST_READY: &str = "KeepLastReady";

/// One Service port, the external hosts behind it, and how they are probed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.additionalTargetPorts) || !(self.targetPort in self.additionalTargetPorts)",
        "message": "additionalTargetPorts must not repeat targetPort",
        "fieldPath": ".additionalTargetPorts",
        "reason": "FieldValueDuplicate"
    },
    // A probe never outlives its period (so probes of a target cannot pile
    // up sockets behind a slow host). Checked here against the port's own
    // period; against `spec.periodSeconds` by the controller's `plan` only:
    // a rule at the spec level would read `spec.periodSeconds`, which
    // endpoints-operator's CRD stored as a string in some objects, and the
    // rule's evaluation error would then refuse even the status writes that
    // report such an object.
    {
        "rule": "!has(self.periodSeconds) || self.timeoutSeconds <= self.periodSeconds",
        "message": "timeoutSeconds must not exceed the port's probe period (periodSeconds)",
        "fieldPath": ".timeoutSeconds",
        "reason": "FieldValueInvalid"
    },
    {
        "rule": "((has(self.tcpSocket) && has(self.tcpSocket.enable) && self.tcpSocket.enable) ? 1 : 0) + (has(self.httpGet) ? 1 : 0) + ((has(self.udpSocket) && has(self.udpSocket.enable) && self.udpSocket.enable) ? 1 : 0) + ((has(self.grpc) && has(self.grpc.enable) && self.grpc.enable) ? 1 : 0) <= 1",
        "message": "at most one of tcpSocket, httpGet, udpSocket and grpc may be set (enable: false counts as unset)",
        "reason": "FieldValueInvalid"
    },
    // Probe port and schedule (extensions).
    {
        "rule": PROBE_PORT_NEEDS_PROBE_RULE,
        "message": "probePort needs a probe (tcpSocket, httpGet, udpSocket or grpc): a port without one is static and never probed",
        "fieldPath": ".probePort",
        "reason": "FieldValueForbidden"
    },
    {
        "rule": "!has(self.probePort) || !has(self.additionalTargetPorts) || size(self.additionalTargetPorts) == 0",
        "message": "probePort cannot be combined with additionalTargetPorts (every target port would be judged by the same probe)",
        "fieldPath": ".probePort",
        "reason": "FieldValueForbidden"
    },
    {
        "rule": "!has(self.unhealthyPeriodSeconds) || self.timeoutSeconds <= self.unhealthyPeriodSeconds",
        "message": "timeoutSeconds must not exceed unhealthyPeriodSeconds",
        "fieldPath": ".timeoutSeconds",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct ClusterEndpointPort {
    /// DNS label, unique within the object; becomes the Service port name.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// External hosts serving this port: IPv4 or IPv6 literals or DNS
    /// names (resolved, A and AAAA, and re-resolved; every address of a name
    /// is probed and written on its own), as strings or as objects
    /// `{address, zone, drain, priority, hostname}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "host_list_schema")]
    pub hosts: Vec<HostEntry>,

    /// Extension: backups (hosts of `priority` 1 and up) are ready only
    /// while fewer than this many primaries (priority 0) are ready.
    /// Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_ready: Option<i32>,

    /// TCP, UDP or SCTP. Default TCP.
    #[serde(default = "default_protocol")]
    #[schemars(extend("enum" = ["TCP", "UDP", "SCTP"]))]
    pub protocol: String,

    /// The port the Service exposes.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// The port on the external hosts.
    #[schemars(range(min = 1, max = 65535))]
    pub target_port: i32,

    /// Extension: more ports on the same hosts that also serve this Service
    /// port (e.g. two instances per host on 8080 and 8081, as in a
    /// hand-made Endpoints object); each host-port is probed on its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 10),
        extend("x-kubernetes-list-type" = "set", "items" = {"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535})
    )]
    pub additional_target_ports: Vec<i32>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketHandler>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetHandler>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_socket: Option<UdpSocketHandler>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcHandler>,

    /// Seconds after which a probe counts as failed. Default 1.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i32,

    /// Consecutive failures that take a ready host out of rotation. Default 3.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 1000))]
    pub failure_threshold: i32,

    /// Consecutive successes that put an unready host back. Default 1.
    #[serde(default = "default_success_threshold")]
    #[schemars(range(min = 1, max = 1000))]
    pub success_threshold: i32,

    /// Extension: probe period for this port, overriding spec.periodSeconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: Option<i32>,

    /// Extension: seconds to wait before the first probe of a new host. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub initial_delay_seconds: Option<i32>,

    /// Extension: probe this port on the hosts instead of targetPort (e.g.
    /// Patroni's REST API on 8008 for Postgres on 5432). Traffic still goes
    /// to targetPort. Needs a probe; not with additionalTargetPorts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub probe_port: Option<i32>,

    /// Extension: probe period while a host is out of rotation (Envoy's
    /// unhealthy interval). Default: the port's period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub unhealthy_period_seconds: Option<i32>,

    /// Extension: every wait between two probes is lengthened by a random
    /// share of up to this percentage of the period, so that hosts drift
    /// apart. Default 0 (no jitter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub jitter_percent: Option<i32>,

    /// Extension: after a probe that changed a host's state, probe it again
    /// after this many seconds (0: at once) to confirm the new state, then
    /// go on with the usual schedule. Default: no confirmation probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub edge_period_seconds: Option<i32>,

    /// Extension: this port's fail-open policy, field by field overriding
    /// the object's (`spec.allHostsDown`, `spec.panicThresholdPercent`).
    #[serde(flatten)]
    pub fail_open: FailOpen,
    /// Extension: for this port's hosts given as DNS names, resolve each
    /// name again at least this often, in seconds. Default: the object's
    /// `resolvePeriodSeconds`, else 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub resolve_period_seconds: Option<i32>,
}

/// Healthy when a TCP connection opens (and, with `send`/`expect`, when
/// the reply to `send` matches `expect`; with `tls`, once a TLS handshake
/// completes).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": SEND_EXPECT_NEED_ENABLE_RULE, "message": SEND_EXPECT_NEED_ENABLE_MESSAGE, "reason": "FieldValueInvalid"},
    {
        "rule": "!has(self.tls) || (has(self.enable) && self.enable)",
        "message": "tls is set but the handler is not enabled (set enable: true)",
        "fieldPath": ".tls",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct TcpSocketHandler {
    #[serde(default)]
    pub enable: bool,
    /// Extension: bytes written once connected (e.g. `{text: "PING\r\n"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<Payload>,
    /// Extension: the reply must match this within its first 10 KiB (e.g.
    /// `{text: "+PONG"}`). Without it, success once connected and sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<ReplyMatch>,
    /// Speak TLS after connecting: success then needs a completed handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
}

/// Healthy when at least one byte comes back after sending `data` (with
/// `expect`: a datagram that matches it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": SEND_EXPECT_NEED_ENABLE_RULE, "message": SEND_EXPECT_NEED_ENABLE_MESSAGE, "reason": "FieldValueInvalid"},
    {"rule": "!has(self.send) || !has(self.data)", "message": "set either data or send, not both", "fieldPath": ".send", "reason": "FieldValueForbidden"}
]))]
pub struct UdpSocketHandler {
    #[serde(default)]
    pub enable: bool,
    /// Payload sent as UTF-8 bytes (may be empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>", length(max = 8192))]
    pub data: Option<UdpData>,
    /// Extension: the payload as text or base64 bytes (instead of `data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<Payload>,
    /// Extension: a reply datagram must match this (in its first 10 KiB);
    /// others are ignored until the timeout. Without it, any reply is a
    /// success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<ReplyMatch>,
}

/// A UDP probe payload. Our CRD stores it as a string; endpoints-operator's
/// CRD stored it as a list of byte values (Go's `[]uint8`), and such
/// objects may still be in etcd after the CRD is replaced, so both forms
/// are read. Byte values are checked (0..=255) by the controller's `plan`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum UdpData {
    Text(String),
    Bytes(Vec<i64>),
}

impl From<&str> for UdpData {
    fn from(s: &str) -> Self {
        UdpData::Text(s.to_string())
    }
}

/// Healthy when `grpc.health.v1.Health/Check` answers SERVING.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.tls) || (has(self.enable) && self.enable)",
        "message": "tls is set but the handler is not enabled (set enable: true)",
        "fieldPath": ".tls",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct GrpcHandler {
    #[serde(default)]
    pub enable: bool,
    /// Service name passed to the health check; empty means the whole server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service: Option<String>,
    /// Call over TLS (ALPN h2) instead of plaintext HTTP/2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
}

/// Healthy when `GET scheme://host:targetPort/path` answers 200–399 (or
/// with `method`, `expectedStatuses` and `bodyMatch`, as they say).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.body) || (has(self.method) && self.method == 'POST')",
        "message": "body is sent only with method: POST",
        "fieldPath": ".body",
        "reason": "FieldValueForbidden"
    },
    {
        "rule": "!has(self.bodyMatch) || !has(self.method) || self.method != 'HEAD'",
        "message": "bodyMatch needs a response body, and HEAD has none",
        "fieldPath": ".bodyMatch",
        "reason": "FieldValueForbidden"
    },
    {
        // `scheme` matches http or https in any case, so 5 characters
        // is https (and costs nothing, unlike lowerAscii over 100 ports).
        "rule": "!has(self.tls) || (has(self.scheme) && size(self.scheme) == 5)",
        "message": "tls needs scheme: https",
        "fieldPath": ".tls",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct HttpGetHandler {
    /// Request path; default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^[^\s]*$"))]
    pub path: Option<String>,
    /// `http` or `https` (any case); default http. TLS certificates are not
    /// verified unless `tls` says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([hH][tT][tT][pP][sS]?)?$"))]
    pub scheme: Option<String>,
    /// Virtual host: sent as the Host header (and TLS server name). The
    /// connection always goes to the endpoint's own address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), extend("x-kubernetes-validations" = [
        {"rule": VHOST_RULE, "message": VHOST_MESSAGE, "reason": "FieldValueInvalid"}
    ]))]
    pub host: Option<String>,
    /// Extra request headers; a `Host` header sets the request host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub http_headers: Vec<HttpHeader>,
    /// Extension: GET (default), HEAD, POST or OPTIONS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = HTTP_METHODS))]
    pub method: Option<String>,
    /// Extension: request body, only with POST (set `Content-Type` in
    /// httpHeaders). Never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub body: Option<String>,
    /// Extension: the statuses that count as success, each a code (`204`)
    /// or an inclusive range (`"200-299"`). Default 200–399, as the kubelet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "expected_statuses_schema")]
    pub expected_statuses: Vec<ExpectedStatus>,
    /// Extension: the first 10 KiB of the response body must match this.
    /// Never shown: a mismatch says only "body did not match".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_match: Option<ReplyMatch>,
    /// TLS options of an `https` probe (verification, CA, server name,
    /// client certificate, minimum version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
}

/// One request header. Header values may not hold control characters
/// (tab excepted); the headers the prober itself controls are refused. A
/// `Host` header must be a host (DNS name or IP literal), optionally with
/// `:port`: the controller checks that (the object's status says why it
/// is refused), not admission, because a CEL rule over values of up to 4096
/// characters in up to 3,200 headers exceeds the apiserver's cost budget.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": OWNED_HEADERS_RULE,
        "message": OWNED_HEADERS_MESSAGE,
        "fieldPath": ".name",
        "reason": "FieldValueForbidden"
    },
    {
        "rule": "!has(self.valueFrom) || !has(self.value) || size(self.value) == 0",
        "message": "set value or valueFrom, not both",
        "fieldPath": ".valueFrom",
        "reason": "FieldValueInvalid"
    },
    {
        "rule": "!has(self.valueFrom) || self.name.lowerAscii() != 'host'",
        "message": "a Host header cannot come from a Secret: set its value (it is the virtual host, not a credential)",
        "fieldPath": ".valueFrom",
        "reason": "FieldValueForbidden"
    }
]))]
pub struct HttpHeader {
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[-!#$%&'*+.^_`|~0-9A-Za-z]+$")
    )]
    pub name: String,
    /// The value; empty when it comes from `valueFrom`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 4096), regex(pattern = r"^[^\x00-\x08\x0A-\x1F\x7F]*$"))]
    pub value: String,
    /// The value from a key of a Secret in the object's namespace (for
    /// credentials: the value never appears in status, Events or logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<HeaderValueSource>,
}

/// Refuses the request headers the prober sets itself (the probe crate's
/// `OWNED_HEADERS`, which the controller checks this list against).
const OWNED_HEADERS_RULE: &str = "!(self.name.lowerAscii() in ['connection', 'content-length', 'transfer-encoding', 'te', 'upgrade', 'keep-alive', 'proxy-connection'])";
const OWNED_HEADERS_MESSAGE: &str = "this header is set by the prober itself (Connection, Content-Length, Transfer-Encoding, TE, Upgrade, Keep-Alive and Proxy-Connection cannot be set)";

// The CEL rules below mirror the controller's `plan` checks of virtual
// hosts (a DNS name that does not end in a number, or an IP literal). In
// CEL string literals a regex backslash is written `\\`.

/// `httpGet.host`: an RFC 1123 host name of at most 253 characters whose
/// last label is not a number (URL parsers read `127.1` or `0x7f.1` as IPv4
/// addresses), or an IP literal (IPv6 bare or in brackets).
const VHOST_RULE: &str = r"isIP(self) || (self.startsWith('[') && self.endsWith(']') && isIP(self.substring(1, size(self) - 1))) || (size(self) <= 253 && self.matches('^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$') && !self.matches('(^|\\.)([0-9]+|0[xX][0-9A-Fa-f]*)$'))";
const VHOST_MESSAGE: &str = "must be a DNS name (RFC 1123, at most 253 characters, not ending in a number) or an IP address literal; no port, user or path";

// ------------------------------------------------------- probe options
// What a probe sends and expects beyond the kubelet's handlers, and how
// its HTTP statuses are judged. Every bound keeps the CEL cost small: no
// rule iterates over the characters of a long string (base64 is checked by
// the `byte` format, regular expressions by the controller's `plan`).

/// Methods an HTTP probe may use.
pub const HTTP_METHODS: [&str; 4] = ["GET", "HEAD", "POST", "OPTIONS"];
/// Longest `httpGet.body`, in characters.
pub const MAX_HTTP_BODY: usize = 4096;
/// Entries of `httpGet.expectedStatuses` at most.
pub const MAX_EXPECTED_STATUSES: usize = 16;
/// Longest `send` payload: characters of `text`, bytes of `base64`.
pub const MAX_PAYLOAD: usize = 8192;
/// Longest `expect`/`bodyMatch`: characters of `text` and `regex`, bytes
/// of `base64`.
pub const MAX_MATCH: usize = 1024;

/// `probePort` only where something is probed (the handler rule above
/// counts `enable: false` as unset; so does this one).
const PROBE_PORT_NEEDS_PROBE_RULE: &str = "!has(self.probePort) || has(self.httpGet) || (has(self.tcpSocket) && has(self.tcpSocket.enable) && self.tcpSocket.enable) || (has(self.udpSocket) && has(self.udpSocket.enable) && self.udpSocket.enable) || (has(self.grpc) && has(self.grpc.enable) && self.grpc.enable)";

const SEND_EXPECT_NEED_ENABLE_RULE: &str =
    "(!has(self.send) && !has(self.expect)) || (has(self.enable) && self.enable)";
const SEND_EXPECT_NEED_ENABLE_MESSAGE: &str =
    "send and expect need enable: true (a disabled handler is no probe)";

/// Bytes a probe sends: exactly one of `text` (sent as UTF-8; YAML
/// escapes such as `"\r\n"` work in double quotes) or `base64`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.text) != has(self.base64)", "message": "set exactly one of text and base64", "reason": "FieldValueInvalid"}
]))]
pub struct Payload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    pub text: Option<String>,
    /// Standard base64 (with padding) of at most 8192 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10924), extend("format" = "byte"))]
    pub base64: Option<String>,
}

/// What a reply must contain, in its first 10 KiB: exactly one of `text`
/// (a substring), `base64` (a byte string) or `regex` (a regular
/// expression, RE2-like syntax with no backreferences, matched anywhere;
/// matching is linear in the input). Never shown in status, Events or
/// logs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "(has(self.text) ? 1 : 0) + (has(self.base64) ? 1 : 0) + (has(self.regex) ? 1 : 0) == 1",
        "message": "set exactly one of text, base64 and regex",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct ReplyMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub text: Option<String>,
    /// Standard base64 (with padding) of 1 to 1024 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 4, max = 1368), extend("format" = "byte"))]
    pub base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub regex: Option<String>,
}

/// One entry of `httpGet.expectedStatuses`: a status code, or a range
/// `"from-to"` (inclusive). A code may also be written as a string.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum ExpectedStatus {
    Code(i64),
    Text(String),
}

/// `expectedStatuses`: int-or-string items, each checked by CEL (cheap:
/// at most 16 items of at most 7 characters; without the `maxLength` the
/// apiserver estimates the rule over strings of any length and refuses
/// the CRD).
fn expected_statuses_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": MAX_EXPECTED_STATUSES,
        "items": {
            "x-kubernetes-int-or-string": true,
            // Bounds the rule's estimated cost (it applies to strings only).
            "maxLength": 7,
            "x-kubernetes-validations": [{
                "rule": STATUS_RULE,
                "message": "must be an HTTP status (100-599) or a range \"from-to\" of them with from <= to, e.g. 204 or \"200-299\"",
                "reason": "FieldValueInvalid"
            }]
        }
    })
}

const STATUS_RULE: &str = "type(self) == int ? (self >= 100 && self <= 599) : (size(self) <= 7 && self.matches('^[1-5][0-9][0-9](-[1-5][0-9][0-9])?$') && (size(self) == 3 || int(self.substring(0, 3)) <= int(self.substring(4, 7))))";

// ---------------------------------------------------------------------------
// TLS options and references to Secrets and ConfigMaps (credentials of
// probes). Values read from them are resolved by the controller from its
// label-selected watch caches; see docs/security.md.

/// The label a Secret or ConfigMap must carry for the controller to read it
/// (its watches select on it: nothing else is cached or read).
pub const LABEL_PROBE_CREDENTIALS: &str = "kube-endpoints.io/probe-credentials";
/// The Secret keys of a client certificate (`kubernetes.io/tls` Secrets).
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_PRIVATE_KEY_KEY: &str = "tls.key";

/// TLS settings of a probe. Without `verify`, `caBundle` or `caBundleFrom`
/// the server's certificate is not verified (as the kubelet's HTTPS
/// probes); giving a CA turns verification on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(has(self.caBundle) && has(self.caBundleFrom))",
        "message": "set at most one of caBundle and caBundleFrom",
        "fieldPath": ".caBundleFrom",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct TlsOptions {
    /// Verify the server's certificate chain and name. Default: true when
    /// a CA is given (`caBundle` or `caBundleFrom`), else false. `true`
    /// without a CA verifies against the controller's system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<bool>,
    /// PEM CA certificates to verify against, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub ca_bundle: Option<String>,
    /// PEM CA certificates from a key of a ConfigMap or Secret in the
    /// object's namespace (labelled `kube-endpoints.io/probe-credentials: "true"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_from: Option<KeySource>,
    /// The TLS server name (SNI), also the name verified. Default: the
    /// virtual host (`httpGet.host` or a `Host` header) if any, else the
    /// host's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), extend("x-kubernetes-validations" = [
        {"rule": VHOST_RULE, "message": VHOST_MESSAGE, "reason": "FieldValueInvalid"}
    ]))]
    pub server_name: Option<String>,
    /// Mutual TLS: a `kubernetes.io/tls` Secret in the object's namespace
    /// (keys `tls.crt` and `tls.key`, labelled
    /// `kube-endpoints.io/probe-credentials: "true"`) whose certificate
    /// and key the probe presents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret_ref: Option<SecretReference>,
    /// Lowest TLS version offered: `"1.2"` (default) or `"1.3"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["1.2", "1.3"]))]
    pub min_version: Option<String>,
}

/// A key of a ConfigMap or of a Secret in the object's namespace: exactly
/// one of the two.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.configMapKeyRef) != has(self.secretKeyRef)",
        "message": "set exactly one of configMapKeyRef and secretKeyRef",
        "reason": "FieldValueInvalid"
    }
]))]
pub struct KeySource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyReference>,
}

/// Where a header value comes from (as `env[].valueFrom` in a Pod).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderValueSource {
    /// A key of a Secret in the object's namespace (labelled
    /// `kube-endpoints.io/probe-credentials: "true"`).
    pub secret_key_ref: KeyReference,
}

/// One key of a named ConfigMap or Secret in the object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct KeyReference {
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// A Secret in the object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretReference {
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

fn default_period() -> i32 {
    DEFAULT_PERIOD_SECONDS
}
fn default_timeout() -> i32 {
    DEFAULT_TIMEOUT_SECONDS
}
fn default_failure_threshold() -> i32 {
    DEFAULT_FAILURE_THRESHOLD
}
fn default_success_threshold() -> i32 {
    DEFAULT_SUCCESS_THRESHOLD
}
fn default_protocol() -> String {
    "TCP".to_string()
}
