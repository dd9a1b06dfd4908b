//! Fixtures shared by the unit tests of the pure modules.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_endpoints_api::{ClusterEndpoint, ClusterEndpointSpec, ClusterEndpointStatus, Condition};
use kube_endpoints_probe::{Health, HealthState, TargetId};

use crate::builder::Owner;
use crate::plan::{Plan, PortPlan, plan};
use crate::status::{StatusInput, SyncOutcome, Synced, status};

/// `examples/wordpress.yaml`: four ports (TCP, HTTP, UDP, gRPC) on two
/// placeholder hosts (never probed here).
pub const WORDPRESS: &str = include_str!("../../../examples/wordpress.yaml");

/// `examples/legacy.yaml`: the form of endpoints-operator 0.1, hosts at the
/// top level and a port without probe settings.
pub const LEGACY: &str = include_str!("../../../examples/legacy.yaml");

pub fn parse(yaml: &str) -> ClusterEndpoint {
    let docs = crate::yaml::documents(yaml).expect("test manifest is YAML");
    let [doc] = docs.as_slice() else {
        panic!("one document expected, got {}", docs.len());
    };
    serde_json::from_value(doc.clone()).expect("test manifest is a ClusterEndpoint")
}

/// The spec of the wordpress example.
pub fn wordpress() -> ClusterEndpointSpec {
    parse(WORDPRESS).spec
}

pub fn wordpress_plan() -> Plan {
    plan("wordpress", &wordpress()).expect("the example is valid")
}

/// A Ceph RGW farm: six hosts behind two ports.
pub fn rgw_plan() -> Plan {
    let hosts: Vec<String> = (50..56).map(|i| format!("198.18.7.{i}")).collect();
    let spec: ClusterEndpointSpec = serde_json::from_value(serde_json::json!({
        "ports": [
            {"name": "rgw-8080", "port": 8080, "targetPort": 8080, "hosts": hosts, "tcpSocket": {"enable": true}},
            {"name": "rgw-8081", "port": 8081, "targetPort": 8081, "hosts": hosts, "httpGet": {"path": "/"}},
        ]
    }))
    .expect("spec deserialises");
    plan("ocs-external-rgw-lb", &spec).expect("valid")
}

pub const CONTROLLER_ID: &str = "kube-endpoints.test";

pub fn owner() -> Owner {
    Owner {
        api_version: "khulnasoft-lab.github.io/v1beta1".into(),
        kind: "ClusterEndpoint".into(),
        name: "wordpress".into(),
        namespace: "default".into(),
        uid: "uid-1".into(),
    }
}

/// A fixed point in time, `secs` after an arbitrary epoch.
pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

/// Every target of `plan` in `state` since `at(0)`.
pub fn health_all(plan: &Plan, state: HealthState) -> BTreeMap<TargetId, Health> {
    plan.targets()
        .into_keys()
        .map(|id| {
            let message = if state == HealthState::NotReady {
                "tcp connect: connection refused"
            } else {
                ""
            };
            (
                id,
                Health {
                    state,
                    since: at(0),
                    message: message.into(),
                },
            )
        })
        .collect()
}

/// The target `port`/`host`.
pub fn target(port: &str, host: &str) -> TargetId {
    TargetId {
        port: port.into(),
        host: host.parse().expect("ip"),
    }
}

/// The condition of `type_` in `status`.
pub fn condition<'a>(status: &'a ClusterEndpointStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

/// Every target of `plan` ready but `port`/`host`, which has `health`.
pub fn all_ready_but(
    plan: &Plan,
    port: &str,
    host: &str,
    health: Health,
) -> BTreeMap<TargetId, Health> {
    let mut all = health_all(plan, HealthState::Ready);
    all.insert(target(port, host), health);
    all
}

/// Not ready since `at(since)`, saying `message`.
pub fn down(since: u64, message: &str) -> Health {
    Health {
        state: HealthState::NotReady,
        since: at(since),
        message: message.into(),
    }
}

/// The port of `plan` named `name`.
pub fn port<'a>(plan: &'a Plan, name: &str) -> &'a PortPlan {
    plan.ports
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no port {name}"))
}

/// A condition's (status, reason).
pub fn state(c: &Condition) -> (&str, &str) {
    (c.status.as_str(), c.reason.as_str())
}

/// A Service as someone else (a person, another controller) created it:
/// ClusterIP `10.0.0.42` serving port 80, with `metadata`.
pub fn foreign_service(metadata: ObjectMeta) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some("10.0.0.42".into()),
            ports: Some(vec![ServicePort {
                port: 80,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The status of an object whose Service and Endpoints were both written
/// for `plan`.
pub fn synced_status(
    generation: i64,
    plan: &Plan,
    health: &BTreeMap<TargetId, Health>,
    previous: Option<&ClusterEndpointStatus>,
    now: &str,
) -> ClusterEndpointStatus {
    status(&StatusInput {
        generation: Some(generation),
        spec: Ok(Synced {
            plan,
            service: SyncOutcome::Done,
            endpoints: SyncOutcome::Done,
            fail_open: Vec::new(),
        }),
        health,
        previous,
        now,
    })
}

/// A Service with `labels`, whose fields `managers` own.
pub fn labelled_service(
    labels: &[(&str, &str)],
    managers: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry>,
) -> Service {
    Service {
        metadata: ObjectMeta {
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            managed_fields: Some(managers),
            ..ObjectMeta::default()
        },
        ..Service::default()
    }
}

/// A managed-fields entry: `manager` owns `fields` (fieldsV1).
pub fn managed(
    manager: &str,
    fields: serde_json::Value,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
        manager: Some(manager.into()),
        fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
            fields,
        )),
        ..Default::default()
    }
}
