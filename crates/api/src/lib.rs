//! The `ClusterEndpoint` (`cep`) custom resource.
//!
//! The types here are the single source of the CRD: `kube-endpoints crd` prints
//! [`crd_for_group`] as YAML, and the admission-time rules (OpenAPI bounds and CEL
//! `x-kubernetes-validations`) sit next to the fields they guard, so a bad
//! object is rejected by `kubectl apply` with a message naming the field.
//!
//! The same schema is served under several API groups (ours, and the
//! predecessor's `sealos.io` / `sealyun.com`), so the controller works on
//! [`DynClusterEndpoint`], whose group is chosen at run time.

#![forbid(unsafe_code)]

mod host;
mod spec;
mod status;

pub use host::*;
pub use spec::*;
pub use status::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, ValidationRule,
};
use kube::CustomResourceExt;
use kube::core::{ApiResource, GroupVersionKind};

/// Our own API group.
pub const GROUP: &str = "khulnasoft-lab.github.io";
/// The group of endpoints-operator ≥ 0.2, served in place for migration.
pub const SEALOS_GROUP: &str = "sealos.io";
/// The group of endpoints-operator 0.1 (top-level `spec.hosts`).
pub const SEALYUN_GROUP: &str = "sealyun.com";
pub const VERSION: &str = "v1beta1";
pub const KIND: &str = "ClusterEndpoint";
pub const PLURAL: &str = "clusterendpoints";

/// A ClusterEndpoint whose API group is known only at run time.
pub type DynClusterEndpoint = kube::core::Object<ClusterEndpointSpec, ClusterEndpointStatus>;

/// The API resource of ClusterEndpoint in `group`.
pub fn api_resource(group: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, VERSION, KIND), PLURAL)
}

/// The CRD for `group`: the schema generated from the Rust types, renamed.
pub fn crd_for_group(group: &str) -> CustomResourceDefinition {
    let mut crd = ClusterEndpoint::crd();
    crd.metadata.name = Some(format!("{PLURAL}.{group}"));
    crd.spec.group = group.to_string();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            // The object's name becomes the Service's name, which must be a
            // DNS-1035 label; only the root schema can see metadata.name.
            schema
                .x_kubernetes_validations
                .get_or_insert_with(Vec::new)
                .push(ValidationRule {
                    rule: "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 63".into(),
                    message: Some("metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, at most 63 characters) because it names the Service".into()),
                    reason: Some("FieldValueInvalid".into()),
                    ..ValidationRule::default()
                });
        }
    }
    crd
}

#[cfg(test)]
#[path = "lib_tests.rs"]
mod tests;
