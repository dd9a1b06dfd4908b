use std::collections::BTreeMap;

use kube_endpoints_probe::HealthState;
use serde_json::{Value, json};

use super::*;
use crate::builder::{BuildSettings, desired};
use crate::plan::plan;
use crate::testing::*;

/// The writes under the default adoption rules.
fn plan_writes(desired: &Desired, live: &Live<'_>) -> WritePlan {
    plan_writes_with(desired, live, &AdoptionPolicy::default())
}

fn assert_refusal_says(refusal: &Refusal, words: &str) {
    assert!(refusal.message.contains(words), "{}", refusal.message);
}

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

/// `spec` with every host ready, over what `cluster` holds.
fn healthy(spec: &kube_endpoints_api::ClusterEndpointSpec, cluster: &Cluster) -> Desired {
    let plan = plan("wordpress", spec).expect("valid");
    let health = health_all(&plan, HealthState::Ready);
    desired(
        &owner(),
        &plan,
        &health,
        &settings(true),
        &cluster.live().slices,
    )
}

fn healthy_wordpress(compat_endpoints: bool) -> Desired {
    let plan = wordpress_plan();
    let health = health_all(&plan, HealthState::Ready);
    desired(&owner(), &plan, &health, &settings(compat_endpoints), &[])
}

/// (kind, name, verb) of every write in order.
fn summary(plan: &WritePlan) -> Vec<(Kind, String, &'static str)> {
    plan.writes()
        .map(|w| match w {
            Write::Apply(o) => (o.kind(), o.name(), "apply"),
            Write::Create(o) => (o.kind(), o.name(), "create"),
            Write::SkipMirror { name } => (Kind::Endpoints, name.clone(), "skip-mirror"),
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
    // The Service is created (applied only after a live read finds none):
    // one that somebody else created meanwhile is then not taken over.
    let mut expected = vec![(Kind::Service, "wordpress".to_string(), "create")];
    for port in ["wp-grpc", "wp-http", "wp-https", "wp-udp"] {
        expected.push((
            Kind::EndpointSlice,
            format!("wordpress.{port}.ipv4.0"),
            "create",
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
    let after = healthy(&spec, &cluster);
    let writes = plan_writes(&after, &cluster.live());
    assert_eq!(
        summary(&writes),
        [
            (
                Kind::EndpointSlice,
                "wordpress.wp-http.ipv4.0".into(),
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
    let after = desired(
        &owner(),
        &plan,
        &health,
        &settings(true),
        &cluster.live().slices,
    );
    assert_eq!(
        summary(&plan_writes(&after, &cluster.live())),
        [
            (
                Kind::EndpointSlice,
                "wordpress.wp-udp.ipv4.0".into(),
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
    let after = healthy(&spec, &cluster);
    let writes = plan_writes(&after, &cluster.live());
    assert_eq!(
        summary(&writes),
        [
            (Kind::Service, "wordpress".into(), "apply"),
            (Kind::Service, String::new(), "prune-ports"),
            (
                Kind::EndpointSlice,
                "wordpress.wp-https.ipv6.0".into(),
                "create"
            ),
            (
                Kind::EndpointSlice,
                "wordpress.wp-grpc.ipv4.0".into(),
                "delete"
            ),
            (
                Kind::EndpointSlice,
                "wordpress.wp-https.ipv4.0".into(),
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
    // A hand-made Endpoints that is still mirrored into slices (with its
    // hosts ready, whatever their health) is labelled to stop that.
    foreign.metadata.labels = None;
    let live = Live {
        endpoints: Some(&foreign),
        ..cluster.live()
    };
    assert_eq!(
        summary(&plan_writes(&off, &live)),
        [(Kind::Endpoints, "wordpress".into(), "skip-mirror")]
    );
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
    let after = desired(
        &owner(),
        &wordpress_plan(),
        &health,
        &settings(true),
        &cluster.live().slices,
    );
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
    // Ours carried skip-mirror; another controller's need not.
    assert_eq!(plan.unmirror, None);
    foreign.metadata.labels = None;
    let live = Live {
        endpoints: Some(&foreign),
        ..cluster.live()
    };
    let plan = plan_writes(&after, &live);
    assert_eq!(
        plan.unmirror,
        Some(Write::SkipMirror {
            name: "wordpress".into()
        })
    );
    let message = plan.endpoints.expect_err("refused").message;
    assert!(message.contains("skip-mirror"), "{message}");
}

#[test]
fn a_service_refused_later_takes_our_slices_with_it() {
    let cluster = Cluster::after(&healthy_wordpress(true));
    let mut taken = cluster.service.clone();
    taken.spec.as_mut().expect("spec").selector =
        Some(BTreeMap::from([("app".into(), "x".into())]));
    let live = Live {
        service: Some(&taken),
        ..cluster.live()
    };
    let plan = plan_writes(&healthy_wordpress(true), &live);
    let refusal = plan.service.clone().expect_err("refused");
    assert_refusal_says(&refusal, "no EndpointSlices");
    let deleted: Vec<&'static str> = summary(&plan).iter().map(|(_, _, verb)| *verb).collect();
    assert_eq!(deleted, ["delete"; 4]);
}

#[test]
fn a_slice_of_our_name_is_written_only_when_it_is_ours() {
    let desired = healthy_wordpress(true);
    let o = owner();
    let mut slice = Cluster::after(&desired).slices[0].clone();
    assert_eq!(slice_conflict(&slice, &o, CONTROLLER_ID), None);
    // Orphaned (its owner was deleted with --cascade=orphan): ours to take.
    slice.metadata.owner_references = None;
    assert_eq!(slice_conflict(&slice, &o, CONTROLLER_ID), None);
    // Another object's, or another controller's: never overwritten.
    let mut other = slice.clone();
    other.metadata.owner_references = Some(vec![OwnerReference {
        api_version: o.api_version.clone(),
        kind: "ClusterEndpoint".into(),
        name: "wordpress-x".into(),
        uid: "uid-2".into(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    let refusal = slice_conflict(&other, &o, CONTROLLER_ID).expect("conflict");
    assert_eq!(refusal.reason, "SliceNameConflict");
    assert_refusal_says(&refusal, "ClusterEndpoint wordpress-x");
    let mut mirrored = slice;
    mirrored.metadata.labels = Some(BTreeMap::from([
        (
            "endpointslice.kubernetes.io/managed-by".into(),
            "endpointslicemirroring-controller.k8s.io".into(),
        ),
        ("kubernetes.io/service-name".into(), "wordpress".into()),
    ]));
    let refusal = slice_conflict(&mirrored, &o, CONTROLLER_ID).expect("conflict");
    assert_refusal_says(&refusal, "endpointslicemirroring");
}

#[test]
fn an_existing_service_of_another_primary_family_is_refused() {
    let o = owner();
    let mut spec = wordpress();
    for p in &mut spec.ports {
        p.hosts = vec!["fd00::7".into()];
    }
    let v6 = plan("wordpress", &spec).expect("valid");
    let want = crate::builder::service(&o, &v6);
    let ipv4 = existing_service(|s| {
        s.metadata.owner_references = Some(vec![o.owner_reference()]);
        s.spec.as_mut().expect("spec").ip_families = Some(vec!["IPv4".into()]);
    });
    match service_ownership(Some(&ipv4), &o, &want) {
        Ownership::Refuse(r) => {
            assert_eq!(r.reason, "IPFamilyConflict");
            assert_refusal_says(&r, "IPv6");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Adding a second family is allowed (the Service becomes dual-stack).
    spec.ports[0].hosts.push("198.18.0.7".into());
    let both = plan("wordpress", &spec).expect("valid");
    let want = crate::builder::service(&o, &both);
    assert_eq!(service_ownership(Some(&ipv4), &o, &want), Ownership::Owned);
}

fn existing_service(f: impl FnOnce(&mut Service)) -> Service {
    let mut svc = foreign_service(ObjectMeta {
        name: Some("wordpress".into()),
        namespace: Some("default".into()),
        labels: Some(BTreeMap::from([("team".into(), "db".into())])),
        ..ObjectMeta::default()
    });
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
    let clusterip = crate::builder::service(&o, &plan);
    let mut headless_svc = clusterip.clone();
    headless_svc.spec.as_mut().expect("spec").cluster_ip = Some("None".into());
    let want = |headless: bool| if headless { &headless_svc } else { &clusterip };
    assert_eq!(service_ownership(None, &o, want(false)), Ownership::Create);
    assert_eq!(
        service_ownership(Some(&existing_service(|_| {})), &o, want(false)),
        Ownership::Adopt
    );
    let ours = existing_service(|s| s.metadata.owner_references = Some(vec![o.owner_reference()]));
    assert_eq!(
        service_ownership(Some(&ours), &o, want(false)),
        Ownership::Owned
    );

    let reason =
        |svc: Service, headless: bool| match service_ownership(Some(&svc), &o, want(headless)) {
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
