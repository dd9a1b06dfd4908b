use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceSpec;
use kube_endpoints_probe::HealthState;
use serde_json::{Value, json};

use super::*;
use crate::builder::{BuildSettings, desired};
use crate::plan::plan;
use crate::testing::*;

fn settings(compat_endpoints: bool) -> BuildSettings {
    BuildSettings {
        controller_id: CONTROLLER_ID.into(),
        compat_endpoints,
    }
}

/// `object` as the apiserver holds it after our apply: with server-set
/// metadata and defaults (and `extra` merged in).
fn served<K: Serialize + serde::de::DeserializeOwned>(object: &K, extra: Value) -> K {
    let mut v = serde_json::to_value(object).expect("serialises");
    merge(
        &mut v,
        json!({"metadata": {"uid": "u-1", "resourceVersion": "42", "creationTimestamp": "2026-11-24T10:00:00Z"}}),
    );
    merge(&mut v, extra);
    serde_json::from_value(v).expect("deserialises")
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// What the cluster holds after every write of `desired` succeeded.
struct Cluster {
    service: Service,
    slices: Vec<EndpointSlice>,
    endpoints: Option<Endpoints>,
}

impl Cluster {
    fn after(desired: &Desired) -> Cluster {
        Cluster {
            service: served(
                &desired.service,
                json!({"spec": {"clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"], "sessionAffinity": "None",
                                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"}}),
            ),
            slices: desired
                .slices
                .iter()
                .map(|s| served(s, json!({"metadata": {"generation": 1}})))
                .collect(),
            endpoints: desired.endpoints.as_ref().map(|e| served(e, json!({}))),
        }
    }

    fn live(&self) -> Live<'_> {
        Live {
            service: Some(&self.service),
            endpoints: self.endpoints.as_ref(),
            slices: self.slices.iter().collect(),
        }
    }
}

/// `spec` with every host ready.
fn healthy(spec: &kube_endpoints_api::ClusterEndpointSpec) -> Desired {
    let plan = plan("wordpress", spec).expect("valid");
    let health = health_all(&plan, HealthState::Ready);
    desired(&owner(), &plan, &health, &settings(true))
}

fn healthy_wordpress(compat_endpoints: bool) -> Desired {
    let plan = wordpress_plan();
    let health = health_all(&plan, HealthState::Ready);
    desired(&owner(), &plan, &health, &settings(compat_endpoints))
}

/// (kind, name, verb) of every write in order.
fn summary(plan: &WritePlan) -> Vec<(Kind, String, &'static str)> {
    plan.writes()
        .map(|w| match w {
            Write::Apply(o) => (o.kind(), o.name(), "apply"),
            Write::Adopt(o) => (o.kind(), o.name(), "adopt"),
            Write::PrunePorts { .. } => (Kind::Service, String::new(), "prune-ports"),
            Write::Delete { kind, name } => (*kind, name.clone(), "delete"),
        })
        .collect()
}

#[test]
fn a_new_object_writes_everything_once() {
    let desired = healthy_wordpress(true);
    let plan = plan_writes(&desired, &Live::default());
    let mut expected = vec![
        (Kind::Service, "wordpress".to_string(), "apply"),
        (Kind::Service, String::new(), "prune-ports"),
    ];
    for port in ["wp-grpc", "wp-http", "wp-https", "wp-udp"] {
        expected.push((
            Kind::EndpointSlice,
            format!("wordpress-{port}-ipv4-0"),
            "apply",
        ));
    }
    expected.push((Kind::Endpoints, "wordpress".to_string(), "apply"));
    assert_eq!(summary(&plan), expected);
}

#[test]
fn nothing_changed_means_no_write() {
    for compat in [true, false] {
        let desired = healthy_wordpress(compat);
        let cluster = Cluster::after(&desired);
        let plan = plan_writes(&desired, &cluster.live());
        assert_eq!(summary(&plan), [], "compat endpoints {compat}");
    }
}

#[test]
fn one_host_added_writes_one_slice_and_the_endpoints() {
    let before = healthy_wordpress(true);
    let cluster = Cluster::after(&before);
    let mut spec = wordpress();
    spec.ports[1].hosts.push("198.18.0.9".into()); // wp-http
    let after = healthy(&spec);
    let writes = plan_writes(&after, &cluster.live());
    assert_eq!(
        summary(&writes),
        [
            (
                Kind::EndpointSlice,
                "wordpress-wp-http-ipv4-0".into(),
                "apply"
            ),
            (Kind::Endpoints, "wordpress".into(), "apply"),
        ]
    );
}

#[test]
fn one_host_leaving_rotation_writes_its_slice_and_the_endpoints() {
    let plan = wordpress_plan();
    let cluster = Cluster::after(&healthy_wordpress(true));
    let health = all_ready_but(&plan, "wp-udp", "10.33.40.151", down(5, "udp: no reply"));
    let after = desired(&owner(), &plan, &health, &settings(true));
    assert_eq!(
        summary(&plan_writes(&after, &cluster.live())),
        [
            (
                Kind::EndpointSlice,
                "wordpress-wp-udp-ipv4-0".into(),
                "apply"
            ),
            (Kind::Endpoints, "wordpress".into(), "apply"),
        ]
    );
}

#[test]
fn stale_slices_are_deleted_after_the_new_ones_are_applied() {
    let cluster = Cluster::after(&healthy_wordpress(true));
    let mut spec = wordpress();
    spec.ports.retain(|p| p.name != "wp-grpc");
    spec.ports[0].hosts = vec!["fd00::7".into()]; // wp-https moves to IPv6
    let after = healthy(&spec);
    let writes = plan_writes(&after, &cluster.live());
    assert_eq!(
        summary(&writes),
        [
            (Kind::Service, "wordpress".into(), "apply"),
            (Kind::Service, String::new(), "prune-ports"),
            (
                Kind::EndpointSlice,
                "wordpress-wp-https-ipv6-0".into(),
                "apply"
            ),
            (
                Kind::EndpointSlice,
                "wordpress-wp-grpc-ipv4-0".into(),
                "delete"
            ),
            (
                Kind::EndpointSlice,
                "wordpress-wp-https-ipv4-0".into(),
                "delete"
            ),
            (Kind::Endpoints, "wordpress".into(), "apply"),
        ]
    );
    // The Service lost a port we owned: our apply removes it, so the prune
    // finds nothing to drop in the applied Service.
    let Ok([_, Write::PrunePorts { keep }]) = writes.service.as_deref() else {
        panic!("expected an apply and a prune: {:?}", writes.service);
    };
    let applied = Cluster::after(&after).service;
    assert_eq!(pruned_ports(&applied, keep), None);
}

#[test]
fn an_adopted_service_keeps_its_ip_and_loses_foreign_ports() {
    let desired = healthy_wordpress(true);
    let handmade = existing_service(|_| {});
    let live = Live {
        service: Some(&handmade),
        ..Live::default()
    };
    let plan = plan_writes(&desired, &live);
    let service = plan.service.clone().expect("adopted, not refused");
    assert_eq!(service.len(), 2, "{service:?}");
    assert_eq!(
        service[0],
        Write::Adopt(Object::Service(desired.service.clone()))
    );
    let Write::PrunePorts { keep } = &service[1] else {
        panic!("expected a port prune, got {:?}", service[1]);
    };
    // Applied: our four ports plus the hand-made port 80, which is pruned.
    let mut applied = handmade.clone();
    let mut ports = desired
        .service
        .spec
        .clone()
        .and_then(|s| s.ports)
        .unwrap_or_default();
    ports.push(ServicePort {
        port: 80,
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    });
    applied.spec.as_mut().expect("spec").ports = Some(ports);
    let kept: Vec<i32> = pruned_ports(&applied, keep)
        .expect("a port to prune")
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(kept, [38083, 38082, 38081, 38003]);
    // Once only our ports are left there is nothing to prune.
    applied.spec.as_mut().expect("spec").ports = desired.service.spec.clone().and_then(|s| s.ports);
    assert_eq!(pruned_ports(&applied, keep), None);
}

#[test]
fn a_refused_service_is_a_refusal_not_a_write() {
    let desired = healthy_wordpress(true);
    let with_selector = service_with_selector();
    let plan = plan_writes(
        &desired,
        &Live {
            service: Some(&with_selector),
            ..Live::default()
        },
    );
    assert_eq!(
        plan.service.as_ref().map_err(|r| r.reason),
        Err("ServiceHasSelector")
    );
}

#[test]
fn switched_off_endpoints_are_removed_only_when_ours() {
    let on = healthy_wordpress(true);
    let cluster = Cluster::after(&on);
    let off = healthy_wordpress(false);
    let plan = plan_writes(&off, &cluster.live());
    assert_eq!(
        summary(&plan),
        [(Kind::Endpoints, "wordpress".into(), "delete")]
    );
    let mut foreign = cluster.endpoints.clone().expect("endpoints");
    foreign.metadata.owner_references = None;
    let live = Live {
        endpoints: Some(&foreign),
        ..cluster.live()
    };
    assert_eq!(summary(&plan_writes(&off, &live)), []);
}

#[test]
fn foreign_endpoints_are_refused_after_the_slices_are_planned() {
    let cluster = Cluster::after(&healthy_wordpress(true));
    let mut foreign = cluster.endpoints.clone().expect("endpoints");
    foreign.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: "other".into(),
        uid: "uid-9".into(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    let health = all_ready_but(&wordpress_plan(), "wp-http", "10.33.40.152", down(1, "503"));
    let after = desired(&owner(), &wordpress_plan(), &health, &settings(true));
    let live = Live {
        endpoints: Some(&foreign),
        ..cluster.live()
    };
    let plan = plan_writes(&after, &live);
    assert_eq!(
        plan.endpoints.as_ref().map_err(|r| r.reason),
        Err("OwnedByAnotherController")
    );
    assert_eq!(plan.slices.len(), 1, "{:?}", plan.slices);
}

fn existing_service(f: impl FnOnce(&mut Service)) -> Service {
    let mut svc = Service {
        metadata: ObjectMeta {
            name: Some("wordpress".into()),
            namespace: Some("default".into()),
            labels: Some(BTreeMap::from([("team".into(), "db".into())])),
            ..ObjectMeta::default()
        },
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
    };
    f(&mut svc);
    svc
}

fn service_with_selector() -> Service {
    existing_service(|s| {
        s.spec.as_mut().expect("spec").selector =
            Some(BTreeMap::from([("app".into(), "wp".into())]))
    })
}

#[test]
fn adoption_decisions() {
    let plan = wordpress_plan();
    let o = owner();
    assert_eq!(service_ownership(None, &o, false), Ownership::Create);
    assert_eq!(
        service_ownership(Some(&existing_service(|_| {})), &o, false),
        Ownership::Adopt
    );
    let ours = existing_service(|s| s.metadata.owner_references = Some(vec![o.owner_reference()]));
    assert_eq!(service_ownership(Some(&ours), &o, false), Ownership::Owned);

    let reason = |svc: Service, headless: bool| match service_ownership(Some(&svc), &o, headless) {
        Ownership::Refuse(r) => r.reason,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let with_selector = service_with_selector();
    assert_eq!(reason(with_selector, false), "ServiceHasSelector");
    let foreign = existing_service(|s| {
        s.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "other".into(),
            uid: "uid-2".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }])
    });
    assert_eq!(reason(foreign, false), "OwnedByAnotherController");
    let node_port =
        existing_service(|s| s.spec.as_mut().expect("spec").type_ = Some("NodePort".into()));
    assert_eq!(reason(node_port, false), "ServiceTypeConflict");
    assert_eq!(reason(existing_service(|_| {}), true), "ClusterIPConflict");

    // Endpoints: unowned is adopted, foreign controller refused.
    let ep = crate::builder::endpoints(&o, &plan, &BTreeMap::new());
    assert_eq!(endpoints_ownership(Some(&ep), &o), Ownership::Owned);
    let mut handmade = ep.clone();
    handmade.metadata.owner_references = None;
    assert_eq!(endpoints_ownership(Some(&handmade), &o), Ownership::Adopt);
    assert_eq!(endpoints_ownership(None, &o), Ownership::Create);
}
