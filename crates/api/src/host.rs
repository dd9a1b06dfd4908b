//! One entry of `hosts` (`spec.hosts` and `spec.ports[].hosts`): an address
//! string, as always, or an object that adds per-host fields (zone, drain,
//! priority, hostname).
//!
//! The apiserver has exactly one way to let a list item be a string or an
//! object: an item schema with no `type` and
//! `x-kubernetes-preserve-unknown-fields: true`. CEL cannot be compiled
//! against such an item (the apiserver refuses the CRD: "unable to convert
//! structural schema to CEL declarations"), and every rule that reads
//! `hosts` from a parent loses the field too. What admission checks is
//! therefore plain OpenAPI: a string item must match [`HOST_PATTERN`] (at
//! most `MAX_HOST_LENGTH` characters); an object item needs `address` (same pattern), and
//! its typed fields are checked by type, bounds and pattern. The rest (exact
//! address parsing, duplicates, unknown fields, a string or object at all,
//! hostname uniqueness, hosts present for every port, the host-port budget)
//! is checked by the controller's decode and `plan`, which name the field
//! on the object's status and in an Event.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Highest `priority` of a host (0 is a primary, 1 and up are backups,
/// promoted in ascending order).
pub const MAX_PRIORITY: i32 = 100;
/// Default `minReady` of a port: backups are promoted while fewer primaries
/// than this are ready.
pub const DEFAULT_MIN_READY: i32 = 1;

/// Host strings the apiserver accepts in `hosts` (RE2, no lookahead), as a
/// string entry or an object's `address`:
///
/// - IPv4 without 0/8, 127/8, 169.254/16, 224/4 and up; IPv6 whose first
///   group is not link-local (fe80::/10) or multicast (ff00::/8), and not
///   `::` or `::1`. Loopback, link-local, multicast and unspecified
///   addresses cannot be endpoints. A loose shape: the controller parses
///   exactly.
/// - Or a lower-case RFC 1123 DNS name whose last label starts with a
///   letter, so that no name reads as an IPv4 address to URL parsers and
///   resolvers (`127.1`, `0x7f.1`, `db.1`); the controller resolves it.
pub const HOST_PATTERN: &str = concat!(
    "^(",
    // IPv4, first octet 1-126, 128-168 or 170-223 ...
    r"(([1-9]|[1-9][0-9]|1[01][0-9]|12[0-6]|12[89]|1[3-5][0-9]|16[0-8]|1[7-9][0-9]|2[01][0-9]|22[0-3])\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])",
    // ... or 169 with a second octet other than 254.
    r"|169\.(25[0-35]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))",
    r"(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){2}",
    // IPv6 starting with a group ...
    r"|([0-9A-Fa-f]{1,3}|[0-9A-Ea-e][0-9A-Fa-f]{3}|[Ff][0-9A-Da-d][0-9A-Fa-f]{2}|[Ff][Ee][0-7C-Fc-f][0-9A-Fa-f]):[0-9A-Fa-f:.]+",
    // ... or with `::`, but not `::` or `::1` alone.
    r"|::([02-9A-Fa-f.][0-9A-Fa-f:.]*|1[0-9A-Fa-f:.]+)",
    // A DNS name whose last label starts with a letter.
    r"|([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z]([-a-z0-9]{0,61}[a-z0-9])?",
    ")$"
);
/// What admission says when a host does not match [`HOST_PATTERN`] (the
/// apiserver adds the pattern itself).
pub const HOST_MESSAGE: &str = "must be a unicast IPv4 or IPv6 address literal (e.g. 10.33.40.151 or fd00::1) or a lower-case DNS name (RFC 1123, its last label starting with a letter, e.g. db.example.com); loopback, link-local, multicast and unspecified addresses cannot be endpoints";

/// A label value (`topology.kubernetes.io/zone` is one).
pub const ZONE_PATTERN: &str = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$";
/// A DNS label (RFC 1123), as `endpoints[].hostname` must be.
pub const HOSTNAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// One host: a bare address (the form every earlier version used, meaning
/// exactly what it meant), or an address with per-host fields.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum HostEntry {
    Address(String),
    Detailed(HostDetails),
}

/// A host with per-host fields.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostDetails {
    /// The address, as a string entry would give it.
    pub address: String,
    /// The zone the host is in: written as `endpoints[].zone`; with every
    /// ready host in a zone, also as zone hints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Out of rotation on purpose: listed `ready: false, terminating: true`
    /// (`serving` keeps the probe's verdict), so connections drain.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drain: bool,
    /// 0 (default): a primary. 1 and up: a backup, ready only while fewer
    /// than the port's `minReady` primaries are ready (lower numbers first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// A DNS label written as `endpoints[].hostname` (a headless Service
    /// then resolves `<hostname>.<service>.<namespace>.svc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

impl HostEntry {
    /// The address, whichever the form.
    pub fn address(&self) -> &str {
        match self {
            HostEntry::Address(a) => a,
            HostEntry::Detailed(d) => &d.address,
        }
    }

    /// The per-host fields; defaults for a bare address.
    pub fn details(&self) -> HostDetails {
        match self {
            HostEntry::Address(a) => HostDetails {
                address: a.clone(),
                ..HostDetails::default()
            },
            HostEntry::Detailed(d) => d.clone(),
        }
    }
}

impl From<&str> for HostEntry {
    fn from(s: &str) -> Self {
        HostEntry::Address(s.to_string())
    }
}

impl From<String> for HostEntry {
    fn from(s: String) -> Self {
        HostEntry::Address(s)
    }
}

/// A bare address equals its string (an object entry never does).
impl PartialEq<String> for HostEntry {
    fn eq(&self, other: &String) -> bool {
        matches!(self, HostEntry::Address(a) if a == other)
    }
}

/// By hand rather than `#[serde(untagged)]`: an untagged enum reports only
/// "did not match any variant", while this keeps the path into the object
/// (`spec.ports[0].hosts[2].zone: invalid type ...`) that decode reports.
impl<'de> Deserialize<'de> for HostEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = HostEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "an address string or an object {address, zone, drain, priority, hostname}",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HostEntry, E> {
                Ok(HostEntry::Address(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<HostEntry, A::Error> {
                HostDetails::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(HostEntry::Detailed)
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}

/// The schema of a `hosts` list: items are strings or objects (see the
/// module's comment for what admission can and cannot check).
pub(crate) fn host_list_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": crate::MAX_HOSTS,
        "items": {
            "x-kubernetes-preserve-unknown-fields": true,
            "description": "An address (IPv4 or IPv6 literal) or DNS name, or an object {address, zone, drain, priority, hostname}.",
            // Both apply to strings only, `required` to objects only.
            "maxLength": crate::MAX_HOST_LENGTH,
            "pattern": HOST_PATTERN,
            "required": ["address"],
            "properties": {
                "address": {"type": "string", "maxLength": crate::MAX_HOST_LENGTH, "pattern": HOST_PATTERN,
                    "description": "The host's unicast IPv4 or IPv6 address literal or DNS name (required in the object form)."},
                "zone": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": ZONE_PATTERN,
                    "description": "Zone of the host: written as endpoints[].zone, and as a zone hint when every ready host has a zone and every zone a ready host."},
                "drain": {"type": "boolean",
                    "description": "Out of rotation on purpose: listed ready: false, serving: <probe verdict>, terminating: true. See `kube-endpoints drain`."},
                "priority": {"type": "integer", "format": "int32", "minimum": 0, "maximum": MAX_PRIORITY,
                    "description": "0 (default): a primary. 1 and up: a backup, ready only while fewer than the port's minReady hosts of lower priority are ready."},
                "hostname": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": HOSTNAME_PATTERN,
                    "description": "A DNS label, unique within the object, written as endpoints[].hostname."}
            }
        }
    })
}
