//! Service passthrough: the fields of the spec copied onto the Service
//! (session affinity, internal traffic policy, traffic distribution,
//! labels, annotations, publishNotReadyAddresses), checked as the Service
//! API would check them so that a bad value is an error on the object's
//! status rather than a refused Service write.

use std::collections::BTreeMap;

use kube_endpoints_api::{ClusterEndpointSpec, MAX_SESSION_AFFINITY_SECONDS};

use super::Errors;
use super::hosts::is_label_value;

/// What the Service carries beyond its ports. The default is what every
/// earlier version wrote: none of these fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceOptions {
    /// `None` or `ClientIP`.
    pub session_affinity: Option<String>,
    /// `sessionAffinityConfig.clientIP.timeoutSeconds`.
    pub affinity_timeout_seconds: Option<i32>,
    pub internal_traffic_policy: Option<String>,
    pub traffic_distribution: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub publish_not_ready_addresses: bool,
}

/// Annotation values, in bytes, at most (all of a Service's annotations
/// together may not pass 256 KiB).
const MAX_ANNOTATION_BYTES: usize = 64 * 1024;

pub(super) fn plan_service(
    spec: &ClusterEndpointSpec,
    headless: bool,
    errors: &mut Errors,
) -> ServiceOptions {
    one_of(
        "spec.sessionAffinity",
        &spec.session_affinity,
        &["None", "ClientIP"],
        errors,
    );
    one_of(
        "spec.internalTrafficPolicy",
        &spec.internal_traffic_policy,
        &["Cluster", "Local"],
        errors,
    );
    one_of(
        "spec.trafficDistribution",
        &spec.traffic_distribution,
        &["PreferClose"],
        errors,
    );
    let timeout = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds);
    if spec.session_affinity_config.is_some()
        && spec.session_affinity.as_deref() != Some("ClientIP")
    {
        errors.push(
            "spec.sessionAffinityConfig",
            "needs sessionAffinity: ClientIP",
        );
    }
    if let Some(t) = timeout {
        errors.range(
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            t.into(),
            1,
            MAX_SESSION_AFFINITY_SECONDS.into(),
        );
    }
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    if publish && !headless {
        errors.push(
            "spec.publishNotReadyAddresses",
            "is only for a headless Service (clusterIP: None)",
        );
    }
    for (key, value) in &spec.service_labels {
        check_key("spec.serviceLabels", key, errors);
        if !value.is_empty() && !is_label_value(value) {
            errors.push(
                format!("spec.serviceLabels[{key}]"),
                format!("{value:?} must be a label value (at most 63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit)"),
            );
        }
    }
    for (key, value) in &spec.service_annotations {
        check_key("spec.serviceAnnotations", key, errors);
        if value.len() > MAX_ANNOTATION_BYTES {
            errors.push(
                format!("spec.serviceAnnotations[{key}]"),
                format!("must be at most {MAX_ANNOTATION_BYTES} bytes"),
            );
        }
    }
    ServiceOptions {
        session_affinity: spec.session_affinity.clone(),
        affinity_timeout_seconds: timeout,
        internal_traffic_policy: spec.internal_traffic_policy.clone(),
        traffic_distribution: spec.traffic_distribution.clone(),
        labels: spec.service_labels.clone(),
        annotations: spec.service_annotations.clone(),
        publish_not_ready_addresses: publish,
    }
}

fn one_of(field: &str, value: &Option<String>, allowed: &[&str], errors: &mut Errors) {
    if let Some(v) = value
        && !allowed.contains(&v.as_str())
    {
        errors.push(
            field,
            format!("must be one of {}, got {v:?}", allowed.join(", ")),
        );
    }
}

/// A label or annotation key: an optional DNS-subdomain prefix and `/`,
/// then a name of 1 to 63 characters.
fn check_key(field: &str, key: &str, errors: &mut Errors) {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty() && p.len() <= 253 && p.split('.').all(super::is_dns1123_label)
    });
    if !prefix_ok || !is_label_value(name) {
        errors.push(
            format!("{field}[{key}]"),
            "must be a qualified name: an optional DNS subdomain prefix and '/', then 1 to 63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit",
        );
    }
}
