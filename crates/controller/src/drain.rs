//! `kube-endpoints drain|undrain OBJECT HOST`: set or clear `drain` on
//! every entry of a host in a ClusterEndpoint (`spec.hosts` and each
//! `spec.ports[].hosts`), and record who drained it in the
//! `kube-endpoints.io/drained-by` annotation (the status and the
//! `HostDrained` Event say who).
//!
//! [`edit`] is pure (JSON in, merge patch out); [`drain`] reads the object,
//! asks the apiserver who the caller is (a SelfSubjectReview), and sends
//! the patch with the object's resourceVersion as a precondition, so that
//! a concurrent edit is never overwritten (a conflict is retried).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use serde_json::{Map, Value, json};

use crate::host_report::ANNOTATION_DRAINED_BY;

/// Why a drain or undrain failed.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("ClusterEndpoint {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    #[error("host {host} is not listed in ClusterEndpoint {namespace}/{name}")]
    NotListed {
        host: String,
        namespace: String,
        name: String,
    },
    #[error("ClusterEndpoint {namespace}/{name} has no spec")]
    NoSpec { namespace: String, name: String },
    #[error("cannot {what}: {source}")]
    Api { what: String, source: kube::Error },
    #[error("ClusterEndpoint {namespace}/{name} kept changing; try again")]
    Conflict { namespace: String, name: String },
}

/// What an edit does.
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    /// Send this merge patch.
    Patch(Value),
    /// Every entry of the host is already as asked.
    Unchanged,
}

/// The merge patch that drains (`drain: true`) or undrains `host` in the
/// object `object` (its JSON), recording `user` as who drained it. A
/// string entry becomes `{address, drain: true}`; an undrained entry with
/// no other field becomes a string again. `None` when the host is not
/// listed at all.
pub fn edit(object: &Value, host: &str, drain: bool, user: Option<&str>) -> Option<Edit> {
    let spec = object.get("spec")?;
    let mut found = false;
    let mut changed = false;
    let mut patch_spec = Map::new();
    if let Some(hosts) = spec.get("hosts").and_then(Value::as_array) {
        let (list, f, c) = edit_list(hosts, host, drain);
        (found, changed) = (found || f, changed || c);
        if c {
            patch_spec.insert("hosts".into(), Value::Array(list));
        }
    }
    if let Some(ports) = spec.get("ports").and_then(Value::as_array) {
        let mut any = false;
        let ports: Vec<Value> = ports
            .iter()
            .map(|port| {
                let mut port = port.clone();
                if let Some(hosts) = port.get("hosts").and_then(Value::as_array) {
                    let (list, f, c) = edit_list(hosts, host, drain);
                    found |= f;
                    any |= c;
                    if c {
                        port["hosts"] = Value::Array(list);
                    }
                }
                port
            })
            .collect();
        if any {
            changed = true;
            patch_spec.insert("ports".into(), Value::Array(ports));
        }
    }
    if !found {
        return None;
    }
    let key = canonical(host);
    let mut by: BTreeMap<String, String> = object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(ANNOTATION_DRAINED_BY))
        .and_then(Value::as_str)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default();
    let before = by.clone();
    match (drain, user) {
        // Who drained it first stays recorded while it stays drained.
        (true, Some(user)) if changed || !by.contains_key(&key) => {
            by.insert(key, user.to_string());
        }
        (false, _) => {
            by.remove(&key);
        }
        _ => {}
    }
    if !changed && by == before {
        return Some(Edit::Unchanged);
    }
    let annotation = if by.is_empty() {
        Value::Null
    } else {
        Value::String(serde_json::to_string(&by).unwrap_or_default())
    };
    let mut patch = json!({
        "metadata": {
            "resourceVersion": object.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
            "annotations": {ANNOTATION_DRAINED_BY: annotation},
        }
    });
    if !patch_spec.is_empty() {
        patch["spec"] = Value::Object(patch_spec);
    }
    Some(Edit::Patch(patch))
}

/// A host as the status writes it: an IP address in its canonical form,
/// anything else as given.
fn canonical(host: &str) -> String {
    host.parse::<IpAddr>()
        .map_or_else(|_| host.to_string(), |ip| ip.to_string())
}

/// The entry's address is `host` (compared as IP addresses when both are).
fn same_host(address: &str, host: &str) -> bool {
    match (address.parse::<IpAddr>(), host.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => address == host,
    }
}

/// One hosts list with `host`'s entries set to `drain`; whether the host
/// was found, and whether anything changed.
fn edit_list(hosts: &[Value], host: &str, drain: bool) -> (Vec<Value>, bool, bool) {
    let mut found = false;
    let mut changed = false;
    let list = hosts
        .iter()
        .map(|entry| {
            let address = match entry {
                Value::String(s) => s.as_str(),
                Value::Object(o) => o.get("address").and_then(Value::as_str).unwrap_or_default(),
                _ => return entry.clone(),
            };
            if !same_host(address, host) {
                return entry.clone();
            }
            found = true;
            let mut object = match entry {
                Value::Object(o) => o.clone(),
                _ => Map::from_iter([("address".to_string(), Value::String(address.into()))]),
            };
            let was = object
                .get("drain")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if was == drain {
                return entry.clone();
            }
            changed = true;
            if drain {
                object.insert("drain".into(), Value::Bool(true));
            } else {
                object.remove("drain");
            }
            if object.len() == 1 {
                // Only the address left: the string form again.
                return Value::String(address.into());
            }
            Value::Object(object)
        })
        .collect();
    (list, found, changed)
}

/// Who the client is, as the apiserver authenticates it; `None` when it
/// cannot tell (an apiserver without SelfSubjectReview, or no permission).
pub async fn whoami(client: &Client) -> Option<String> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .ok()?;
    review.status?.user_info?.username
}

/// Drain (or undrain) `host` in the ClusterEndpoint `namespace/name` of
/// the API resource `resource`; returns what was done, for the user.
pub async fn drain(
    client: Client,
    resource: &kube::core::ApiResource,
    namespace: &str,
    name: &str,
    host: &str,
    drain: bool,
) -> Result<String, DrainError> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    let user = if drain { whoami(&client).await } else { None };
    let what = if drain { "drained" } else { "undrained" };
    // A conflict means somebody changed the object between our read and
    // our patch: read again and redo the edit.
    for _ in 0..5 {
        let object = api
            .get_opt(name)
            .await
            .map_err(|source| DrainError::Api {
                what: format!("read ClusterEndpoint {namespace}/{name}"),
                source,
            })?
            .ok_or_else(|| DrainError::NotFound {
                namespace: namespace.into(),
                name: name.into(),
            })?;
        let value = serde_json::to_value(&object).map_err(|_| DrainError::NoSpec {
            namespace: namespace.into(),
            name: name.into(),
        })?;
        if value.get("spec").is_none() {
            return Err(DrainError::NoSpec {
                namespace: namespace.into(),
                name: name.into(),
            });
        }
        let patch = match edit(&value, host, drain, user.as_deref()) {
            None => {
                return Err(DrainError::NotListed {
                    host: host.into(),
                    namespace: namespace.into(),
                    name: name.into(),
                });
            }
            Some(Edit::Unchanged) => {
                return Ok(format!(
                    "host {host} of ClusterEndpoint {namespace}/{name} is already {what}"
                ));
            }
            Some(Edit::Patch(patch)) => patch,
        };
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                let by = user
                    .as_deref()
                    .map(|u| format!(" by {u}"))
                    .unwrap_or_default();
                return Ok(format!(
                    "host {host} of ClusterEndpoint {namespace}/{name} {what}{by}"
                ));
            }
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(source) => {
                return Err(DrainError::Api {
                    what: format!("patch ClusterEndpoint {namespace}/{name}"),
                    source,
                });
            }
        }
    }
    Err(DrainError::Conflict {
        namespace: namespace.into(),
        name: name.into(),
    })
}

#[cfg(test)]
#[path = "drain_tests.rs"]
mod tests;
