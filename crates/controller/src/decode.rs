//! Decode: one stored ClusterEndpoint, read as untyped JSON by the watch,
//! into our types. Pure.
//!
//! Objects are decoded one by one, so that one that does not decode is
//! reported on its own status while every other object is served (a typed
//! watch fails the whole list for one bad item). endpoints-operator's CRD
//! accepted forms ours does not, and such objects stay in etcd as they
//! were stored after our CRD replaces it; these are read as it read them:
//!
//! - a single port without a name (as in a Kubernetes Service),
//! - `udpSocket.data` as a list of byte values (its Go `[]uint8`),
//! - no `ports` at all (reported by `plan` as a missing port).

use kube::core::DynamicObject;
use kube_endpoints_api::{ClusterEndpointSpec, ClusterEndpointStatus};
use serde_json::Value;

use crate::plan::{FieldError, InvalidSpec};

/// One object, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// The spec, or why it does not decode (the field and the problem).
    pub spec: Result<ClusterEndpointSpec, InvalidSpec>,
    /// The status as we wrote it last; `None` when there is none, or it
    /// is not ours to read.
    pub status: Option<ClusterEndpointStatus>,
    /// The object is stored in a form only endpoints-operator's CRD
    /// accepts (or in no form at all). Server-side apply cannot take such
    /// an object (it types the whole object against our schema), so its
    /// status is written with a merge patch.
    pub foreign_form: bool,
}

/// Decode `object`'s spec and status.
pub fn decode(object: &DynamicObject) -> Decoded {
    let status = object
        .data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    let mut spec = object.data.get("spec").cloned().unwrap_or(Value::Null);
    let legacy = normalise(&mut spec);
    let decoded: Result<ClusterEndpointSpec, _> = serde_path_to_error::deserialize(&spec);
    let spec = decoded.map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "spec".to_string()
        } else {
            format!("spec.{path}")
        };
        InvalidSpec(vec![FieldError {
            field,
            message: format!("cannot be read: {}", e.inner()),
        }])
    });
    Decoded {
        foreign_form: legacy || spec.is_err(),
        spec,
        status,
    }
}

/// Rewrite endpoints-operator's forms into ours where ours has a place
/// for them; whether anything was in such a form.
fn normalise(spec: &mut Value) -> bool {
    let Some(spec) = spec.as_object_mut() else {
        return false;
    };
    let mut legacy = false;
    let ports = spec
        .entry("ports")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(ports) = ports.as_array_mut() else {
        return false;
    };
    let single = ports.len() == 1;
    for port in ports.iter_mut().filter_map(Value::as_object_mut) {
        if single && port.get("name").is_none_or(Value::is_null) {
            port.insert("name".into(), Value::String(String::new()));
            legacy = true;
        }
        let data = port.get("udpSocket").and_then(|u| u.get("data"));
        if data.is_some_and(Value::is_array) {
            legacy = true;
        }
    }
    legacy
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
