use k8s_openapi::api::core::v1::ServiceSpec;
use k8s_openapi::api::discovery::v1::Endpoint;
use serde_json::json;

use super::*;
use crate::testing::{labelled_service, managed};

fn service(labels: &[(&str, &str)], affinity: Option<&str>, ours: Value) -> Service {
    let mut service = labelled_service(labels, vec![managed(FIELD_MANAGER, ours)]);
    service.spec = Some(ServiceSpec {
        session_affinity: affinity.map(Into::into),
        ..ServiceSpec::default()
    });
    service
}

#[test]
fn a_passthrough_field_or_label_we_no_longer_set_needs_an_apply() {
    let ours =
        json!({"f:metadata": {"f:labels": {"f:team": {}}}, "f:spec": {"f:sessionAffinity": {}}});
    let live = service(&[("team", "db"), ("theirs", "x")], Some("ClientIP"), ours);
    let same = service(&[("team", "db")], Some("ClientIP"), json!({}));
    assert!(!service_drops_owned(&same, &live));
    let no_label = service(&[], Some("ClientIP"), json!({}));
    assert!(service_drops_owned(&no_label, &live));
    let no_affinity = service(&[("team", "db")], None, json!({}));
    assert!(service_drops_owned(&no_affinity, &live));
    // A field somebody else owns is not ours to remove.
    let theirs = service(
        &[("team", "db")],
        Some("ClientIP"),
        json!({"f:metadata": {"f:labels": {"f:team": {}}}}),
    );
    assert!(!service_drops_owned(&no_affinity, &theirs));
}

fn slice(endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        endpoints,
        ..EndpointSlice::default()
    }
}

fn endpoint(zone: Option<&str>, hostname: Option<&str>) -> Endpoint {
    Endpoint {
        addresses: vec!["198.18.0.1".into()],
        zone: zone.map(Into::into),
        hostname: hostname.map(Into::into),
        ..Endpoint::default()
    }
}

#[test]
fn a_zone_or_hostname_taken_off_needs_an_apply() {
    let live = slice(vec![endpoint(Some("a"), Some("db"))]);
    assert!(!slice_drops_fields(&live, &live));
    assert!(slice_drops_fields(
        &slice(vec![endpoint(None, Some("db"))]),
        &live
    ));
    assert!(slice_drops_fields(
        &slice(vec![endpoint(Some("a"), None)]),
        &live
    ));
    assert!(!slice_drops_fields(
        &live,
        &slice(vec![endpoint(None, None)])
    ));
}
