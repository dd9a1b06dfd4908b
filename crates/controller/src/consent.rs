//! Adoption by consent: whether a Service or Endpoints of the object's name
//! that nobody owns may be taken over in place (pure).
//!
//! Adoption makes the ClusterEndpoint the object's controller: its ports
//! and endpoints are rewritten, and deleting the ClusterEndpoint deletes it.
//! So some objects are never adopted, whoever asks:
//!
//! - `default/kubernetes` (the apiserver's own Service) and anything in
//!   `kube-system` or `kube-public`;
//! - objects another tool manages: a Helm release's (`meta.helm.sh/*`
//!   annotations) or one labelled `app.kubernetes.io/managed-by` with a
//!   value that is not ours.
//!
//! Everything else is adopted by default, so that switching from hand-made
//! objects stays seamless. With `--require-adopt-annotation` only objects
//! annotated `kube-endpoints.io/adopt: "true"` are — someone allowed to
//! edit the Service must consent, not just someone allowed to create a
//! ClusterEndpoint (recommended for multi-tenant clusters).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::builder::Owner;
use crate::error::Refusal;

/// The annotation that lets a ClusterEndpoint adopt a Service (and its
/// Endpoints) under `--require-adopt-annotation`.
pub const ANNOTATION_ADOPT: &str = "kube-endpoints.io/adopt";
/// The well-known label naming the tool that manages an object.
pub const LABEL_APP_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// What Helm writes on every object of a release.
pub const ANNOTATION_HELM_RELEASE: &str = "meta.helm.sh/release-name";

/// Namespaces whose objects are never adopted.
const PROTECTED_NAMESPACES: [&str; 2] = ["kube-system", "kube-public"];

/// The operator's rules for adoption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdoptionPolicy {
    /// Adopt only objects annotated [`ANNOTATION_ADOPT`]`: "true"`.
    pub require_annotation: bool,
    /// Values of [`LABEL_APP_MANAGED_BY`] that name this controller.
    pub our_names: Vec<String>,
}

impl Default for AdoptionPolicy {
    fn default() -> Self {
        AdoptionPolicy {
            require_annotation: false,
            our_names: vec![crate::FIELD_MANAGER.to_string()],
        }
    }
}

/// Whether the unowned object `meta` (a Service or Endpoints named like
/// `owner`) may be adopted. `consented` says whether a related object
/// already carries the consent (the Endpoints of an annotated Service).
pub fn adoption(
    what: &str,
    meta: &ObjectMeta,
    owner: &Owner,
    policy: &AdoptionPolicy,
    consented: bool,
) -> Result<(), Refusal> {
    let name = format!("{what} {}/{}", owner.namespace, owner.name);
    let refuse = |reason, message: String| Err(Refusal { reason, message });
    if owner.namespace == "default" && owner.name == "kubernetes" {
        return refuse(
            "ProtectedObject",
            format!("{name} belongs to kube-apiserver and is never adopted; choose another name"),
        );
    }
    if PROTECTED_NAMESPACES.contains(&owner.namespace.as_str()) {
        return refuse(
            "ProtectedObject",
            format!(
                "{name} is in {}, whose objects are never adopted; choose another name",
                owner.namespace
            ),
        );
    }
    let annotations = meta.annotations.clone().unwrap_or_default();
    let labels = meta.labels.clone().unwrap_or_default();
    if let Some(release) = annotations.get(ANNOTATION_HELM_RELEASE) {
        return refuse(
            "ManagedByAnotherTool",
            format!(
                "{name} belongs to Helm release {release:?} ({ANNOTATION_HELM_RELEASE}) and is never adopted; choose another name or remove it from the release"
            ),
        );
    }
    if let Some(tool) = managed_by_another(&labels, policy) {
        return refuse(
            "ManagedByAnotherTool",
            format!(
                "{name} is managed by {tool:?} ({LABEL_APP_MANAGED_BY}) and is never adopted; choose another name"
            ),
        );
    }
    if policy.require_annotation && !consented && !has_consent(meta) {
        return refuse(
            "AdoptionNotAllowed",
            format!(
                "{name} exists and is not owned by a ClusterEndpoint; annotate it {ANNOTATION_ADOPT}=\"true\" to let this ClusterEndpoint adopt it, or choose another name"
            ),
        );
    }
    Ok(())
}

/// Whether `meta` carries the adoption annotation.
pub fn has_consent(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_ADOPT))
        .is_some_and(|v| v == "true")
}

fn managed_by_another<'a>(
    labels: &'a BTreeMap<String, String>,
    policy: &AdoptionPolicy,
) -> Option<&'a str> {
    labels
        .get(LABEL_APP_MANAGED_BY)
        .map(String::as_str)
        .filter(|v| !policy.our_names.iter().any(|ours| ours == v))
}

#[cfg(test)]
#[path = "consent_tests.rs"]
mod tests;
