//! `status` of ClusterEndpoint: overall phase, seed-compatible conditions, and
//! per-port health with the unhealthy hosts and why.
//!
//! Nothing here carries a periodic heartbeat or a latency (a condition's
//! heartbeat moves only when it changes), so equal health gives an equal
//! status and the controller can skip the write.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition types, as the predecessor reported them.
pub const CONDITION_INITIALIZED: &str = "Initialized";
pub const CONDITION_SYNC_SERVICE: &str = "SyncServiceReady";
pub const CONDITION_SYNC_ENDPOINT: &str = "SyncEndpointReady";
pub const CONDITION_READY: &str = "Ready";
/// Whether every listed host is allowed by the controller's address policy.
pub const CONDITION_HOSTS_ALLOWED: &str = "HostsAllowed";
/// Whether every host given as a DNS name resolved at its last attempt
/// (present only on objects that list names).
pub const CONDITION_NAMES_RESOLVED: &str = "NamesResolved";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterEndpointStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Healthy when every probed host-port is ready; Pending until every host
    /// has a first verdict; UnHealthy otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Healthy", "UnHealthy", "Pending"]))]
    pub phase: Option<Phase>,
    /// Ready host-ports over all host-ports, e.g. `3/4` (the READY column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub ports: Vec<PortStatus>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Healthy,
    UnHealthy,
    Pending,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Healthy => "Healthy",
            Phase::UnHealthy => "UnHealthy",
            Phase::Pending => "Pending",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    pub reason: String,
    pub message: String,
    /// RFC 3339 time of the last change of `status`.
    pub last_transition_time: String,
    /// Kept for compatibility with endpoints-operator; written only when the
    /// condition itself is written, never as a periodic heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortStatus {
    pub name: String,
    /// `tcp`, `http`, `udp`, `grpc`, or `none` for a static (not probed) port.
    pub probe: String,
    pub ready: i32,
    pub total: i32,
    /// The unhealthy hosts, in address order, at most 50;
    /// `unhealthyOmitted` counts the rest, so that a large outage cannot
    /// grow the object past the size etcd accepts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // No `maxItems`: a controller rolled back to a version that lists every
    // host must still be able to write its status.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["host"]))]
    pub unhealthy: Vec<UnhealthyHost>,
    /// Unhealthy hosts not listed in `unhealthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_omitted: Option<i32>,
    /// Hosts the controller's address policy refuses: never probed, never
    /// written to an EndpointSlice or Endpoints (counted in `total`, never
    /// in `ready`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["host"]))]
    pub denied: Vec<DeniedHost>,
    /// TLS probes: the leaf certificate each host presented at its last
    /// completed handshake, earliest expiry first, at most 20;
    /// `certificatesOmitted` counts the rest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["host"]))]
    pub certificates: Vec<HostCertificate>,
    /// Hosts with a certificate not listed in `certificates`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates_omitted: Option<i32>,
    /// Hosts given as DNS names: the addresses each resolved to, and
    /// whether its last resolution failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub names: Vec<NameStatus>,
    /// Hosts drained (`drain: true`), in address order, at most 50, with
    /// who drained them when `kube-endpoints drain` recorded it;
    /// `drainedOmitted` counts the rest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["host"]))]
    pub drained: Vec<DrainedHost>,
    /// Drained hosts not listed in `drained`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained_omitted: Option<i32>,
    /// Backups (priority 1 and up) in rotation now, because fewer than
    /// `minReady` primaries are ready; in address order, at most 50.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub backups_in_rotation: Vec<String>,
}

/// The most drained hosts and backups in rotation listed per port.
pub const MAX_HOST_ROLES_LISTED: usize = 50;

/// A drained host.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainedHost {
    pub host: String,
    /// Who drained it (the user `kube-endpoints drain` ran as), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// One host given as a DNS name and what it resolves to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NameStatus {
    pub name: String,
    /// The addresses (A and AAAA) of the last successful resolution, in
    /// address order; kept while resolution fails; empty until the name
    /// resolved once.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// RFC 3339 time these addresses were first seen (unset until the name
    /// resolved once). Not moved by resolutions that change nothing, so an
    /// unchanging name causes no status writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    /// Why the last resolution failed, if it did (then `addresses` are
    /// the last good ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// RFC 3339 time resolution started failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_since: Option<String>,
}

/// The most certificates listed per port in status.
pub const MAX_CERTIFICATES_LISTED: usize = 20;

/// The expiry of the TLS leaf certificate one host presented.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostCertificate {
    pub host: String,
    /// RFC 3339 time the certificate expires (its notAfter).
    pub not_after: String,
    /// The certificate expires within the controller's warning window
    /// (`--cert-expiry-warning-days`); a `CertificateExpiring` Event said so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expires_soon: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeniedHost {
    pub host: String,
    /// Which range denies it, e.g. `10.0.0.1 is inside the Service range
    /// 10.0.0.0/24 (denied by the address policy)`.
    pub message: String,
}

/// The most unhealthy hosts listed per port in status.
pub const MAX_UNHEALTHY_LISTED: usize = 50;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnhealthyHost {
    pub host: String,
    /// RFC 3339 time the host left rotation.
    pub since: String,
    /// Why the last probe failed; never a response body.
    pub message: String,
}

// Conditions listed only while the exception they name holds (their
// absence is the normal state).
/// Present (True) while some port keeps failing hosts in rotation by its
/// fail-open policy (reason `AllHostsDown` or `PanicThreshold`).
pub const CONDITION_FAILING_OPEN: &str = "FailingOpen";
/// Present (True) while the controller's fleet guard holds failing hosts of
/// the object in rotation (reason `FleetGuardFrozen`).
pub const CONDITION_FLEET_GUARD: &str = "FleetGuard";
