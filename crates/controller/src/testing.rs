//! Fixtures shared by the unit tests of the pure modules.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube_endpoints_api::{ClusterEndpoint, ClusterEndpointSpec};
use kube_endpoints_probe::{Health, HealthState, TargetId};

use crate::builder::Owner;
use crate::plan::{Plan, plan};

/// `examples/wordpress.yaml`: four ports (TCP, HTTP, UDP, gRPC) on two
/// placeholder hosts (never probed here).
pub const WORDPRESS: &str = include_str!("../../../examples/wordpress.yaml");

/// The legacy form of endpoints-operator 0.1: hosts at the top level, a port
/// without any probe settings.
pub const LEGACY: &str = r#"
apiVersion: sealyun.com/v1beta1
kind: ClusterEndpoint
metadata:
  name: wordpress
  namespace: default
spec:
  hosts:
  - 172.18.191.215
  periodSeconds: 10
  ports:
  - failureThreshold: 3
    name: https
    port: 38082
    protocol: TCP
    successThreshold: 1
    targetPort: 80
    tcpSocket:
      enable: true
    timeoutSeconds: 1
  - httpGet:
      path: /
      scheme: http
    name: http
    port: 38081
    protocol: TCP
    targetPort: 80
"#;

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

/// `health` with one target set to `state`.
pub fn with(
    mut health: BTreeMap<TargetId, Health>,
    port: &str,
    host: &str,
    state: HealthState,
    since: SystemTime,
    message: &str,
) -> BTreeMap<TargetId, Health> {
    let id = TargetId {
        port: port.into(),
        host: host.parse().expect("ip"),
    };
    health.insert(
        id,
        Health {
            state,
            since,
            message: message.into(),
        },
    );
    health
}
