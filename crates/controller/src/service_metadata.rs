//! The labels and annotations the spec asks for on the Service
//! (`serviceLabels`, `serviceAnnotations`) are merged, never imposed: a
//! key the live Service has with another value, set by another field
//! manager, is left to that manager (pure). Our applies are forced (we own
//! the Service's ports and type), so without this a forced apply would take
//! such a key over.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::FIELD_MANAGER;

/// `desired` without the labels and annotations that would overwrite
/// another manager's value on `live`.
pub fn yield_foreign(desired: &Service, live: Option<&Service>) -> Service {
    let Some(live) = live else {
        return desired.clone();
    };
    let mut out = desired.clone();
    let meta = &live.metadata;
    out.metadata.labels = keep_ours(
        desired.metadata.labels.as_ref(),
        meta.labels.as_ref(),
        meta,
        "f:labels",
    );
    out.metadata.annotations = keep_ours(
        desired.metadata.annotations.as_ref(),
        meta.annotations.as_ref(),
        meta,
        "f:annotations",
    );
    out
}

fn keep_ours(
    desired: Option<&BTreeMap<String, String>>,
    live: Option<&BTreeMap<String, String>>,
    meta: &ObjectMeta,
    field: &str,
) -> Option<BTreeMap<String, String>> {
    let kept: BTreeMap<String, String> = desired?
        .iter()
        .filter(|(key, value)| {
            let theirs = live.and_then(|l| l.get(*key)).is_some_and(|v| v != *value);
            !(theirs && owned_by_another(meta, field, key))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!kept.is_empty()).then_some(kept)
}

/// What the Service cache keeps of managed fields: who owns which label
/// and annotation key and which passthrough field of the spec (see
/// [`crate::dropped_fields`]); the rest is never read, and dropping it
/// saves much of each cached object's memory.
pub fn trim_managed_fields(service: &mut Service) {
    let Some(entries) = service.metadata.managed_fields.take() else {
        return;
    };
    let kept: Vec<_> = entries
        .into_iter()
        .filter_map(|mut e| {
            let fields = &e.fields_v1.as_ref()?.0;
            let pick = |part: &str, keys: &[&str]| {
                let from = fields.get(part)?.as_object()?;
                let picked: serde_json::Map<_, _> = keys
                    .iter()
                    .filter_map(|k| Some(((*k).to_string(), from.get(*k)?.clone())))
                    .collect();
                (!picked.is_empty()).then_some(picked)
            };
            let mut trimmed = serde_json::Map::new();
            if let Some(m) = pick("f:metadata", &["f:labels", "f:annotations"]) {
                trimmed.insert("f:metadata".into(), m.into());
            }
            if let Some(s) = pick("f:spec", &crate::dropped_fields::PASSTHROUGH_SPEC_FIELDS) {
                trimmed.insert("f:spec".into(), s.into());
            }
            if trimmed.is_empty() {
                return None;
            }
            e.fields_v1 = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
                serde_json::Value::Object(trimmed),
            ));
            Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                    manager: e.manager,
                    fields_v1: e.fields_v1,
                    ..Default::default()
                },
            )
        })
        .collect();
    service.metadata.managed_fields = (!kept.is_empty()).then_some(kept);
}

/// Whether a manager other than ours owns `metadata.<field>.<key>`.
fn owned_by_another(meta: &ObjectMeta, field: &str, key: &str) -> bool {
    meta.managed_fields.iter().flatten().any(|entry| {
        entry.manager.as_deref() != Some(FIELD_MANAGER)
            && entry
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:metadata"))
                .and_then(|m| m.get(field))
                .is_some_and(|m| m.get(format!("f:{key}")).is_some())
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use serde_json::json;

    use super::*;
    use crate::testing::{labelled_service as service, managed};

    fn manager(name: &str, labels: &[&str]) -> ManagedFieldsEntry {
        let fields: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|l| (format!("f:{l}"), json!({})))
            .collect();
        managed(name, json!({"f:metadata": {"f:labels": fields}}))
    }

    #[test]
    fn another_managers_value_is_not_overwritten_ours_is() {
        let desired = service(&[("team", "db"), ("tier", "data"), ("new", "x")], vec![]);
        let live = service(
            &[("team", "old"), ("tier", "gold")],
            vec![
                manager(FIELD_MANAGER, &["team"]),
                manager("someone-else", &["tier"]),
            ],
        );
        let out = yield_foreign(&desired, Some(&live));
        let labels = out.metadata.labels.expect("labels");
        assert_eq!(
            labels.get("team").map(String::as_str),
            Some("db"),
            "ours: updated"
        );
        assert_eq!(labels.get("tier"), None, "theirs: left alone");
        assert_eq!(labels.get("new").map(String::as_str), Some("x"));
        // The same value is shared, not fought over.
        let same = service(
            &[("tier", "data")],
            vec![manager("someone-else", &["tier"])],
        );
        let out = yield_foreign(&desired, Some(&same));
        assert_eq!(
            out.metadata
                .labels
                .expect("labels")
                .get("tier")
                .map(String::as_str),
            Some("data")
        );
        assert_eq!(yield_foreign(&desired, None), desired);
        // What the cache keeps is enough to decide.
        let mut cached = live.clone();
        trim_managed_fields(&mut cached);
        let kept = cached.metadata.managed_fields.clone().expect("kept");
        assert_eq!(kept.len(), 2, "{kept:?}");
        let out = yield_foreign(&desired, Some(&cached));
        assert_eq!(out.metadata.labels.expect("labels").get("tier"), None);
    }
}
