use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube_endpoints_api::UdpData;
use kube_endpoints_probe::{Probe, UdpProbe};
use serde_json::json;

use super::*;
use crate::plan::plan;

fn object(spec: Value) -> DynamicObject {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "sealos.io",
        "v1beta1",
        "ClusterEndpoint",
    ));
    let mut o = DynamicObject::new("db", &resource).within("default");
    o.data = json!({ "spec": spec });
    o
}

#[test]
fn our_own_form_decodes_as_is() {
    let d = decode(&object(json!({
        "ports": [{"name": "pg", "port": 5432, "targetPort": 5432, "hosts": ["198.18.0.2"],
                   "udpSocket": {"enable": true, "data": "ping"}}]
    })));
    let spec = d.spec.expect("decodes");
    assert_eq!(spec.ports[0].name, "pg");
    assert_eq!(
        spec.ports[0]
            .udp_socket
            .as_ref()
            .and_then(|u| u.data.clone()),
        Some(UdpData::from("ping"))
    );
    assert!(!d.foreign_form);
}

#[test]
fn the_predecessors_unnamed_port_and_byte_list_are_read() {
    let d = decode(&object(json!({
        "hosts": ["198.18.0.2"],
        "ports": [{"port": 53, "targetPort": 53, "protocol": "UDP",
                   "udpSocket": {"enable": true, "data": [0, 1, 255, 10]}}]
    })));
    assert!(d.foreign_form);
    let spec = d.spec.expect("decodes");
    let plan = plan("db", &spec).expect("valid");
    let port = &plan.ports[0];
    assert_eq!(
        (port.name.as_str(), port.service_port.as_str()),
        ("udp-53", ""),
        "keyed by protocol and port, the Service port stays unnamed"
    );
    assert_eq!(
        port.probe,
        Some(Probe::Udp(UdpProbe {
            data: vec![0, 1, 255, 10],
            expect: None
        })),
        "sent as those bytes"
    );
}

#[test]
fn out_of_range_bytes_are_a_field_error() {
    let d = decode(&object(json!({
        "ports": [{"name": "a", "port": 53, "targetPort": 53, "hosts": ["198.18.0.2"],
                   "udpSocket": {"enable": true, "data": [1, 256]}}]
    })));
    let errors = plan("db", &d.spec.expect("decodes")).expect_err("invalid");
    assert_eq!(errors.0[0].field, "spec.ports[0].udpSocket.data[1]");
}

#[test]
fn unnamed_ports_of_a_multi_port_object_are_still_an_error() {
    let d = decode(&object(json!({
        "ports": [{"port": 80, "targetPort": 80, "hosts": ["198.18.0.2"]},
                  {"name": "b", "port": 81, "targetPort": 81, "hosts": ["198.18.0.2"]}]
    })));
    let errors = d.spec.expect_err("name missing");
    assert_eq!(errors.0[0].field, "spec.ports[0]");
    assert!(errors.0[0].message.contains("name"), "{errors}");
    assert!(d.foreign_form);
}

#[test]
fn a_wrong_type_names_the_field_and_other_objects_are_unaffected() {
    let d = decode(&object(json!({
        "ports": [{"name": "a", "port": "eighty", "targetPort": 80, "hosts": ["198.18.0.2"]}]
    })));
    let errors = d.spec.expect_err("does not decode");
    assert_eq!(errors.0[0].field, "spec.ports[0].port");
    assert!(
        errors.0[0].message.starts_with("cannot be read"),
        "{errors}"
    );
}

#[test]
fn missing_ports_decode_and_are_left_to_plan() {
    let d = decode(&object(json!({"hosts": ["198.18.0.2"]})));
    let errors = plan("db", &d.spec.expect("decodes")).expect_err("no ports");
    assert_eq!(errors.0[0].field, "spec.ports");
}

#[test]
fn no_spec_at_all_is_reported_on_spec() {
    let mut o = object(json!({}));
    o.data = json!({});
    let errors = decode(&o).spec.expect_err("no spec");
    assert_eq!(errors.0[0].field, "spec");
}

#[test]
fn the_status_is_read_when_it_decodes() {
    let mut o = object(json!({"ports": []}));
    o.data["status"] = json!({"phase": "Healthy", "observedGeneration": 3});
    assert_eq!(
        decode(&o).status.and_then(|s| s.observed_generation),
        Some(3)
    );
    o.data["status"] = json!({"phase": 7});
    assert_eq!(decode(&o).status, None);
}

/// Hosts as objects: a bad per-host field (which admission lets through,
/// as the items of `hosts` are untyped) is reported naming the field; the
/// string form and a mix still decode.
#[test]
fn host_objects_decode_and_bad_ones_name_the_field() {
    let d = decode(&object(json!({
        "ports": [{"name": "pg", "port": 5432, "targetPort": 5432,
                   "hosts": ["198.18.0.1", {"address": "198.18.0.2", "zone": "a", "drain": true}]}]
    })));
    let spec = d.spec.expect("decodes");
    assert_eq!(
        spec.ports[0].hosts[0],
        kube_endpoints_api::HostEntry::Address("198.18.0.1".into())
    );
    assert!(spec.ports[0].hosts[1].details().drain);
    for (host, field) in [
        (
            json!({"address": "198.18.0.2", "zones": "a"}),
            "spec.ports[0].hosts[2].zones",
        ),
        (
            json!({"address": "198.18.0.2", "priority": "high"}),
            "spec.ports[0].hosts[2].priority",
        ),
        (json!(42), "spec.ports[0].hosts[2]"),
    ] {
        let d = decode(&object(json!({
            "ports": [{"name": "pg", "port": 5432, "targetPort": 5432,
                       "hosts": ["198.18.0.1", "198.18.0.3", host]}]
        })));
        let errors = d.spec.expect_err("refused").0;
        assert_eq!(errors[0].field, field, "{errors:?}");
    }
}
