//! Write on change also when a field we set is no longer wanted (pure).
//!
//! The write-only-on-change test ([`crate::diff::contains`]) asks whether
//! the live object already holds every field we want; a field we wrote
//! before and now leave out (a zone or hostname taken off a host, zone hints
//! withdrawn, a label or the session affinity taken out of the spec) is not
//! seen by it, and would stay. Server-side apply removes such a field once
//! our apply leaves it out: these checks say when that apply is due.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::Value;

use crate::FIELD_MANAGER;

/// The Service fields copied from the spec (see `plan::ServiceOptions`),
/// as managed-fields keys.
pub const PASSTHROUGH_SPEC_FIELDS: [&str; 5] = [
    "f:sessionAffinity",
    "f:sessionAffinityConfig",
    "f:internalTrafficPolicy",
    "f:trafficDistribution",
    "f:publishNotReadyAddresses",
];

/// Whether `live` holds a passthrough field, label or annotation that our
/// field manager owns and `desired` no longer sets.
pub fn service_drops_owned(desired: &Service, live: &Service) -> bool {
    let ours = live
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|e| e.manager.as_deref() == Some(FIELD_MANAGER))
        .filter_map(|e| e.fields_v1.as_ref().map(|f| &f.0));
    let desired_spec = serde_json::to_value(&desired.spec).unwrap_or(Value::Null);
    let keys = |m: &Option<BTreeMap<String, String>>| m.clone().unwrap_or_default();
    let (labels, annotations) = (
        keys(&desired.metadata.labels),
        keys(&desired.metadata.annotations),
    );
    for fields in ours {
        let spec = fields.get("f:spec");
        for field in PASSTHROUGH_SPEC_FIELDS {
            let name = &field[2..];
            if spec.and_then(|s| s.get(field)).is_some()
                && desired_spec.get(name).is_none_or(Value::is_null)
            {
                return true;
            }
        }
        let meta = fields.get("f:metadata");
        for (field, wanted) in [("f:labels", &labels), ("f:annotations", &annotations)] {
            let owned = meta.and_then(|m| m.get(field)).and_then(Value::as_object);
            if owned.is_some_and(|o| {
                o.keys()
                    .filter_map(|k| k.strip_prefix("f:"))
                    .any(|k| !wanted.contains_key(k))
            }) {
                return true;
            }
        }
    }
    false
}

/// Whether an endpoint of `live` carries a zone, hostname or hints that
/// its counterpart in `desired` (same address) does not have.
pub fn slice_drops_fields(desired: &EndpointSlice, live: &EndpointSlice) -> bool {
    let wanted: BTreeMap<&str, _> = desired
        .endpoints
        .iter()
        .filter_map(|e| Some((e.addresses.first()?.as_str(), e)))
        .collect();
    live.endpoints.iter().any(|l| {
        let Some(d) = l.addresses.first().and_then(|a| wanted.get(a.as_str())) else {
            return false;
        };
        (l.zone.is_some() && d.zone.is_none())
            || (l.hostname.is_some() && d.hostname.is_none())
            || (l.hints.is_some() && d.hints.is_none())
    })
}

/// Whether an address of `live` carries a hostname its counterpart in
/// `desired` does not have.
pub fn endpoints_drop_fields(desired: &Endpoints, live: &Endpoints) -> bool {
    let hostnames = |e: &Endpoints| -> BTreeMap<String, bool> {
        e.subsets
            .iter()
            .flatten()
            .flat_map(crate::builder::subset_addresses)
            .map(|a| (a.ip.clone(), a.hostname.is_some()))
            .collect()
    };
    let wanted = hostnames(desired);
    hostnames(live)
        .into_iter()
        .any(|(ip, has)| has && wanted.get(&ip) == Some(&false))
}

#[cfg(test)]
#[path = "dropped_fields_tests.rs"]
mod tests;
